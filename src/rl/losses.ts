// The policy-gradient loss of GRPO and DAPO, as one tensor expression over a batch of N
// sampled sequences padded to L tokens, so autograd gives the gradient for free.
//
// Per token t of row i (PPO's clipped surrogate, Schulman et al., 2017):
//
//   ratio = exp(logp − oldLogp)                       (current policy / sampling policy)
//   ℓ     = −min(ratio·A_i, clip(ratio, 1−epsLow, 1+epsHigh)·A_i)  +  β·KL_k3
//   KL_k3 = exp(ref − logp) − (ref − logp) − 1        (Schulman's k3 estimator: unbiased for
//                                                      KL(π‖ref) under samples from π, ≥ 0)
//
// The min makes the objective pessimistic: once the ratio has moved past the clip edge in
// the direction the advantage rewards, the token's gradient is zero, which keeps one batch
// from pushing the policy far from the one that sampled it.
//
// Each DAPO change (Yu et al., 2025) is its own option, so it can be switched off alone:
//   - clip-higher: epsHigh > epsLow (DAPO uses 0.28 vs 0.2), so a low-probability token
//     with positive advantage can grow more before clipping; keeps exploration alive.
//   - token-level aggregation: 'token-mean' weighs every trained token of the batch the same,
//     where GRPO's 'sequence-mean' averages within each sequence first, so a long sequence's
//     tokens each count less (and long wrong answers are under-penalised).
//   - no KL term: beta = 0.
// (Dynamic sampling and overlong shaping act on the batch and the rewards: sampling.ts and
// overlongPenalty below.) 'constant' aggregation is Dr. GRPO's: sum over tokens divided by
// N·L, a constant independent of the sequences' lengths.
//
// The mask says which tokens are trained: 1 on response tokens the model generated, 0 on
// prompt, padding and forced tool-result tokens (the policy did not choose those).
import * as T from '../tensor/index.ts';
import { check } from '../util/errors.ts';

export type Aggregation = 'sequence-mean' | 'token-mean' | 'constant';

export interface PolicyLossOptions {
  /** Lower clip range: ratio is clipped below at 1 − epsLow. */
  epsLow?: number;
  /** Upper clip range: ratio is clipped above at 1 + epsHigh (DAPO clip-higher: 0.28). */
  epsHigh?: number;
  /** How per-token losses become one number (see the header). */
  aggregation?: Aggregation;
  /** KL coefficient against the reference policy; 0 turns the term off. */
  beta?: number;
}

export const POLICY_LOSS_DEFAULTS: Required<PolicyLossOptions> = {
  epsLow: 0.2,
  epsHigh: 0.2,
  aggregation: 'sequence-mean',
  beta: 0,
};

/** DAPO's settings: clip-higher, token-level mean, no KL. */
export const DAPO_LOSS: Required<PolicyLossOptions> = { epsLow: 0.2, epsHigh: 0.28, aggregation: 'token-mean', beta: 0 };

export interface PolicyLossInputs {
  /** Log-probs of the sampled tokens under the current policy, with autograd. (N, L) */
  logp: T.Tensor;
  /** The same under the policy that sampled them. (N*L) host */
  oldLogp: ArrayLike<number>;
  /** One advantage per row. (N) host */
  advantages: ArrayLike<number>;
  /** 1 for trained tokens, 0 elsewhere. (N*L) host */
  mask: ArrayLike<number>;
  /** Reference policy log-probs, needed when beta > 0. (N*L) host */
  refLogp?: ArrayLike<number>;
  /** A host copy of logp for the stats; read from logp when absent (CPU backends only:
   *  on WebGPU pass `await logp.data()`, since a synchronous read is impossible there). */
  logpHost?: ArrayLike<number>;
}

export interface PolicyLossStats {
  /** Fraction of trained tokens whose objective took the clipped branch (zero gradient). */
  clipFraction: number;
  /** Mean over trained tokens of the k3 estimate of KL(old‖new): how far the policy moved. */
  approxKL: number;
  /** Mean ratio over trained tokens (1 on the first step after sampling). */
  meanRatio: number;
}

export function policyLoss(inp: PolicyLossInputs, opts: PolicyLossOptions = {}): { loss: T.Tensor; stats: PolicyLossStats } {
  const o = { ...POLICY_LOSS_DEFAULTS, ...opts };
  check(inp.logp.rank === 2, `policyLoss: logp must be (N, L), got [${inp.logp.shape}]`);
  const [N, L] = inp.logp.shape;
  check(inp.oldLogp.length === N * L, `policyLoss: oldLogp has ${inp.oldLogp.length} values, expected N*L = ${N * L}`);
  check(inp.mask.length === N * L, `policyLoss: mask has ${inp.mask.length} values, expected N*L = ${N * L}`);
  check(inp.advantages.length === N, `policyLoss: ${inp.advantages.length} advantages for ${N} rows`);
  check(o.epsLow >= 0 && o.epsLow < 1 && o.epsHigh >= 0, `policyLoss: need 0 <= epsLow < 1 and epsHigh >= 0`);
  check(o.beta >= 0, `policyLoss: beta must be >= 0, got ${o.beta}`);
  check(o.beta === 0 || inp.refLogp?.length === N * L, 'policyLoss: beta > 0 needs refLogp with N*L values');

  const backend = inp.logp.backend;
  const host = (data: ArrayLike<number>, shape: number[]) => T.tensor(data, shape, { backend });
  const c = (v: number) => T.scalar(v, { backend });

  // Masked positions (padding, prompt) may hold anything in the host arrays, even −Infinity,
  // and exp of a large difference overflows; inf·0 would then turn the loss into NaN. So the
  // host arrays are zeroed there and the log-ratio multiplied by the mask: masked tokens get
  // ratio 1 and k3 = 0, exactly, with zero gradient.
  const m = host(inp.mask, [N, L]); // (N, L)
  const masked = (xs: ArrayLike<number>) => Float64Array.from({ length: N * L }, (_, j) => (inp.mask[j] === 0 ? 0 : xs[j]));
  const logpM = T.mul(inp.logp, m); // (N, L)
  const ratio = T.exp(T.sub(logpM, host(masked(inp.oldLogp), [N, L]))); // (N, L)
  const A = host(inp.advantages, [N, 1]); // (N, 1), broadcast along L
  const lo = c(1 - o.epsLow), hi = c(1 + o.epsHigh);
  // clip(ratio, lo, hi) with `where`, so the clipped entries are constants (zero gradient)
  const clipped = T.where(T.lt(ratio, lo), lo, T.where(T.gt(ratio, hi), hi, ratio)); // (N, L)
  const surr = T.mul(ratio, A), surrClipped = T.mul(clipped, A); // (N, L)
  const objective = T.where(T.lt(surrClipped, surr), surrClipped, surr); // min, (N, L)
  let perToken = T.neg(objective); // (N, L)
  if (o.beta > 0) {
    const d = T.sub(host(masked(inp.refLogp!), [N, L]), logpM); // ref − logp, (N, L)
    const k3 = T.sub(T.sub(T.exp(d), d), c(1)); // (N, L)
    perToken = T.add(perToken, T.mulScalar(k3, o.beta));
  }
  const weights = aggregationWeights(inp.mask, N, L, o.aggregation);
  const loss = T.sumAll(T.mul(perToken, host(weights, [N, L]))); // ()
  const stats = policyStats(inp.logpHost ?? inp.logp.dataSync(), inp.oldLogp, inp.advantages, inp.mask, N, L, o);
  return { loss, stats };
}

/**
 * Per-token weights w such that loss = Σ w·ℓ. Masked-out tokens weigh 0; rows with no
 * trained token are left out of the sequence count.
 *   token-mean:     w = m / Σ m
 *   sequence-mean:  w = m / (len_i · rows with len_i > 0)
 *   constant:       w = m / (N · L)
 */
export function aggregationWeights(mask: ArrayLike<number>, N: number, L: number, aggregation: Aggregation): Float32Array {
  const w = new Float32Array(N * L);
  const lens = new Array<number>(N).fill(0);
  for (let i = 0; i < N; i++) for (let t = 0; t < L; t++) {
    const m = mask[i * L + t];
    check(m === 0 || m === 1, `policyLoss: mask values must be 0 or 1, got ${m}`);
    lens[i] += m;
  }
  const total = lens.reduce((a, b) => a + b, 0);
  const rows = lens.filter((n) => n > 0).length;
  for (let i = 0; i < N; i++) for (let t = 0; t < L; t++) {
    const m = mask[i * L + t];
    if (m === 0) continue;
    if (aggregation === 'token-mean') w[i * L + t] = 1 / total;
    else if (aggregation === 'sequence-mean') w[i * L + t] = 1 / (lens[i] * rows);
    else if (aggregation === 'constant') w[i * L + t] = 1 / (N * L);
    else check(false, `policyLoss: unknown aggregation '${aggregation as string}'`);
  }
  return w;
}

/** The loss's diagnostics, on the host, over trained tokens only. */
export function policyStats(
  logp: ArrayLike<number>,
  oldLogp: ArrayLike<number>,
  advantages: ArrayLike<number>,
  mask: ArrayLike<number>,
  N: number,
  L: number,
  opts: PolicyLossOptions = {},
): PolicyLossStats {
  const o = { ...POLICY_LOSS_DEFAULTS, ...opts };
  let n = 0, clipped = 0, kl = 0, ratioSum = 0;
  for (let i = 0; i < N; i++) for (let t = 0; t < L; t++) {
    const j = i * L + t;
    if (mask[j] === 0) continue;
    const d = logp[j] - oldLogp[j], r = Math.exp(d), A = advantages[i];
    n++;
    ratioSum += r;
    // the clipped branch is the one taken when the ratio is past the edge the advantage favours
    if ((A > 0 && r > 1 + o.epsHigh) || (A < 0 && r < 1 - o.epsLow)) clipped++;
    // KL(old‖new) from samples of the old policy: k3 with the roles of the two swapped
    kl += k3(logp[j], oldLogp[j]);
  }
  if (n === 0) return { clipFraction: 0, approxKL: 0, meanRatio: 1 };
  return { clipFraction: clipped / n, approxKL: kl / n, meanRatio: ratioSum / n };
}

/** k3 estimate of KL(π‖ref) from one sample: exp(ref − logp) − (ref − logp) − 1 ≥ 0. */
export function k3(refLogp: number, logp: number): number {
  const d = refLogp - logp;
  // expm1(d) − d instead of exp(d) − 1 − d: for d near 0 the latter cancels to rounding noise
  // (even slightly negative values); the clamp keeps the documented ≥ 0 exact
  return Math.max(0, Math.expm1(d) - d);
}

/**
 * Overlong reward shaping (DAPO §3.4): a soft penalty for completions that approach the
 * length limit, instead of the noisy signal of a truncated answer's reward 0. Added to the
 * task reward.
 *
 *   0                                   if length <= Lmax − Lcache
 *   ((Lmax − Lcache) − length) / Lcache   if Lmax − Lcache < length <= Lmax   (0 down to −1)
 *   −1                                  if length > Lmax
 */
export function overlongPenalty(length: number, Lmax: number, Lcache: number): number {
  check(Lcache > 0 && Lcache <= Lmax, `overlongPenalty: need 0 < Lcache <= Lmax, got Lcache=${Lcache}, Lmax=${Lmax}`);
  const soft = Lmax - Lcache;
  if (length <= soft) return 0;
  if (length <= Lmax) return (soft - length) / Lcache;
  return -1;
}
