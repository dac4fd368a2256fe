// Composed ops: built only from primitives, so their gradients come for free from the rules
// in grad.ts. These are the readable definitions; a backend may later add a fused kernel for
// one of them, tested against the version here.
import * as O from './ops.ts';
import { type Tensor, detach } from './tensor.ts';

/** Mean along an axis. */
export function mean(x: Tensor, axis: number, keepdim = false): Tensor {
  const a = O.normAxis('mean', axis, x.rank);
  return O.mulScalar(O.sum(x, a, keepdim), 1 / x.shape[a]);
}

/** Sum of every element, as a scalar (shape []). */
export function sumAll(x: Tensor): Tensor {
  return O.reshape(O.sum(O.reshape(x, [-1]), 0), []);
}

/** Mean of every element, as a scalar. */
export function meanAll(x: Tensor): Tensor {
  return O.mulScalar(sumAll(x), 1 / x.size);
}

/** SiLU (swish): x * sigmoid(x). */
export function silu(x: Tensor): Tensor {
  return O.mul(x, O.sigmoid(x));
}

/** ReLU squared (the MLP activation of modded-nanogpt / nanochat). */
export function relu2(x: Tensor): Tensor {
  const r = O.relu(x);
  return O.mul(r, r);
}

/** Softmax along an axis. The max is subtracted (and detached) for numerical safety. */
export function softmax(x: Tensor, axis = -1): Tensor {
  const m = detach(O.max(x, axis, true));
  const e = O.exp(O.sub(x, m));
  return O.div(e, O.sum(e, axis, true));
}

/** log(softmax(x)) computed as x - max - log(sum(exp(x - max))). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  const m = detach(O.max(x, axis, true));
  const shifted = O.sub(x, m);
  return O.sub(shifted, O.log(O.sum(O.exp(shifted), axis, true)));
}

/**
 * Mean cross-entropy of logits (N, V) against integer targets (N), skipping rows whose
 * target equals `ignoreIndex`. Targets are host integers: the picked log-probabilities are
 * gathered from the flattened (N*V, 1) table at i*V + target[i].
 * Returns a scalar; 0 when every row is ignored.
 */
export function crossEntropy(logits: Tensor, targets: ArrayLike<number>, ignoreIndex = -1): Tensor {
  if (logits.rank !== 2) throw new O.ShapeError(`crossEntropy: logits must be (N, V), got [${logits.shape}]`);
  const [N, V] = logits.shape;
  if (targets.length !== N) throw new O.ShapeError(`crossEntropy: ${targets.length} targets for ${N} rows of logits`);
  const picks: number[] = [];
  for (let i = 0; i < N; i++) {
    const t = targets[i];
    if (t === ignoreIndex) continue;
    if (!(Number.isInteger(t) && t >= 0 && t < V)) throw new O.ShapeError(`crossEntropy: target ${t} at row ${i} is outside [0, ${V})`);
    picks.push(i * V + t);
  }
  const logp = O.reshape(logSoftmax(logits, -1), [N * V, 1]);
  const idx = O.tensor(picks, [picks.length], { dtype: 'int32', backend: logits.backend });
  const picked = O.gather(logp, idx); // (P, 1)
  return O.mulScalar(sumAll(picked), -1 / Math.max(1, picks.length));
}

/**
 * Log-probability of each row's target, logits (M, V) and integer targets (M) -> (M):
 * logSoftmax(logits)[i, target_i], picked from the flattened (M*V, 1) table at i*V + target_i
 * as in crossEntropy (no ignore value here: every row has a target). RL's policy loss needs
 * these one per sampled token; targetLogprobsFused computes the same without the (M, V)
 * intermediates.
 */
export function targetLogprobs(logits: Tensor, targets: ArrayLike<number>): Tensor {
  if (logits.rank !== 2) throw new O.ShapeError(`targetLogprobs: logits must be (M, V), got [${logits.shape}]`);
  const [M, V] = logits.shape;
  if (targets.length !== M) throw new O.ShapeError(`targetLogprobs: ${targets.length} targets for ${M} rows of logits`);
  const picks = new Int32Array(M);
  for (let i = 0; i < M; i++) {
    const t = targets[i];
    if (!(Number.isInteger(t) && t >= 0 && t < V)) throw new O.ShapeError(`targetLogprobs: target ${t} at row ${i} is outside [0, ${V})`);
    picks[i] = i * V + t;
  }
  const logp = O.reshape(logSoftmax(logits, -1), [M * V, 1]);
  const picked = O.gather(logp, O.tensor(picks, [M], { dtype: 'int32', backend: logits.backend })); // (M, 1)
  return O.reshape(picked, [M]);
}

/** RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight (weight optional). */
export function rmsnorm(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  const ms = mean(O.mul(x, x), -1, true);
  const y = O.mul(x, O.rsqrt(O.addScalar(ms, eps)));
  return weight ? O.mul(y, weight) : y;
}

/**
 * Rotary position embedding tables for positions [start, start+T) and head size HS:
 * cos, sin of shape (T, HS), each frequency repeated in both halves (the "rotate half"
 * layout of GPT-NeoX, Llama and Qwen3). Frequencies theta^(-2i/HS).
 */
export function ropeTables(T: number, HS: number, theta: number, start = 0, backend = undefined as Tensor['backend'] | undefined) {
  if (HS % 2 !== 0) throw new O.ShapeError(`rope: head size ${HS} must be even`);
  const half = HS / 2;
  const cos = new Float32Array(T * HS), sin = new Float32Array(T * HS);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const angle = (start + t) * theta ** (-(2 * i) / HS);
      const c = Math.cos(angle), s = Math.sin(angle);
      cos[t * HS + i] = cos[t * HS + i + half] = c;
      sin[t * HS + i] = sin[t * HS + i + half] = s;
    }
  }
  return { cos: O.tensor(cos, [T, HS], { backend }), sin: O.tensor(sin, [T, HS], { backend }) };
}

/**
 * Apply RoPE to x (..., T, HS) with tables (T, HS):
 *   out = x * cos + rotate_half(x) * sin,   rotate_half([x1, x2]) = [-x2, x1].
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const HS = x.shape.at(-1)!, half = HS / 2;
  const x1 = O.slice(x, -1, 0, half), x2 = O.slice(x, -1, half, HS);
  const rotated = O.concat([O.neg(x2), x1], -1);
  return O.add(O.mul(x, cos), O.mul(rotated, sin));
}

/** A (T, S) float mask: 1 where query t may attend to key s (s <= t + offset), else 0. */
export function causalMask(T: number, S: number, backend?: Tensor['backend']): Tensor {
  const m = new Float32Array(T * S);
  const offset = S - T; // queries are the last T of S positions (KV cache)
  for (let t = 0; t < T; t++) for (let s = 0; s <= t + offset && s < S; s++) m[t * S + s] = 1;
  return O.tensor(m, [T, S], { backend });
}

/**
 * Scaled dot-product attention. q: (B, NH, T, HS); k, v: (B, NKV, S, HS) with NH a
 * multiple of NKV (grouped-query attention: query head h reads KV head floor(h / (NH/NKV))).
 * With `causal`, query t sees keys s <= t + (S - T). Returns (B, NH, T, HS).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, causal = true): Tensor {
  const [B, NH, T, HS] = q.shape;
  const NKV = k.shape[1], S = k.shape[2];
  if (NH % NKV !== 0) throw new O.ShapeError(`attention: ${NH} query heads is not a multiple of ${NKV} KV heads`);
  const rep = (x: Tensor) => {
    if (NKV === NH) return x;
    const e = O.expand(O.reshape(x, [B, NKV, 1, S, HS]), [B, NKV, NH / NKV, S, HS]);
    return O.reshape(e, [B, NH, S, HS]);
  };
  const att = O.mulScalar(O.matmul(q, rep(k), { transB: true }), 1 / Math.sqrt(HS)); // (B, NH, T, S)
  const masked = causal
    ? O.where(causalMask(T, S, q.backend), att, O.scalar(-Infinity, { backend: q.backend }))
    : att;
  return O.matmul(softmax(masked, -1), rep(v)); // (B, NH, T, HS)
}

/** Every composed op, for the test that makes sure each has a gradient check. */
export const COMPOSED_OPS = [
  'mean', 'sumAll', 'meanAll', 'silu', 'relu2', 'softmax', 'logSoftmax', 'crossEntropy', 'targetLogprobs', 'rmsnorm', 'rope', 'attention',
] as const;
