// Log-probabilities of given tokens under the model: what RL's policy loss, the world-model
// loss and multiple-choice evaluation all need.
//
// For a batch of sequences ids (N, L), position t predicts token t+1, so
//   out[n, t] = log p(ids[n, t+1] | ids[n, 0..t])        out: (N, L-1)
// Each one is logits[target] − logsumexp(logits) of its position's row: the fused
// targetLogprobs op (src/tensor/fused.ts) computes that per row and keeps only the logits and
// one float per row for the backward, where the composed log-softmax (the reference, with
// `fused: false`) keeps several (rows, V) intermediates alive — the largest tensors of an RL
// step (bench/RESULTS.md, "RL step memory").
//
// `only` (RL: the mask of sampled tokens) says which positions are wanted. The others are
// returned as 0, and their logits are never made: the transformer still runs on every
// position, but the LM head and the log-probs only on the M wanted rows (GPT.logitsAt), and
// the M values are scattered back into (N, L-1) (scatterAdd, whose gradient is a gather).
import * as T from '../tensor/index.ts';
import type { GPT } from './gpt.ts';

export interface TokenLogprobsOptions {
  /** (N, L-1): only positions where this is nonzero are computed; the rest are 0. Default: all. */
  only?: ArrayLike<number>;
  /** Use the fused log-prob kernel where FUSED_POLICY has it (default: the model's `fused`);
   *  false: the composed log-softmax + gather, the reference it is tested against. */
  fused?: boolean;
}

/** (N, L-1) log-probs of ids[:, 1:] given their prefixes; differentiable. */
export function tokenLogprobs(model: GPT, ids: Int32Array, N: number, L: number, opts: TokenLogprobsOptions = {}): T.Tensor {
  if (ids.length !== N * L) throw new Error(`tokenLogprobs: ${ids.length} ids for (${N}, ${L})`);
  if (L < 2) throw new Error('tokenLogprobs: sequences need at least 2 tokens');
  const P = N * (L - 1);
  if (opts.only && opts.only.length !== P) throw new Error(`tokenLogprobs: only has ${opts.only.length} values for (${N}, ${L - 1}) positions`);
  const fused = opts.fused ?? model.fused;
  const x = new Int32Array(P); // inputs: ids[:, :-1]
  const rows: number[] = [], targets: number[] = []; // wanted positions and their next tokens
  for (let n = 0; n < N; n++) {
    for (let t = 0; t < L - 1; t++) {
      const i = n * (L - 1) + t;
      x[i] = ids[n * L + t];
      if (opts.only && opts.only[i] === 0) continue;
      rows.push(i);
      targets.push(ids[n * L + t + 1]);
    }
  }
  const be = model.backend;
  const input = T.tensor(x, [N, L - 1], { dtype: 'int32', backend: be });
  if (rows.length === P) return T.reshape(T.targetLogprobsAuto(model.forward(input), targets, fused), [N, L - 1]);
  if (rows.length === 0) {
    // nothing wanted: zeros, still computed from the model so that a loss built on them has a
    // gradient (of zero) rather than no graph at all
    const all = Array.from({ length: P }, (_, i) => ids[Math.floor(i / (L - 1)) * L + (i % (L - 1)) + 1]);
    return T.mulScalar(T.reshape(T.targetLogprobsAuto(model.forward(input), all, fused), [N, L - 1]), 0);
  }
  const M = rows.length;
  const at = T.tensor(rows, [M], { dtype: 'int32', backend: be });
  const logp = T.targetLogprobsAuto(model.logitsAt(input, at), targets, fused); // (M)
  return T.reshape(T.scatterAdd(T.reshape(logp, [M, 1]), at, P), [N, L - 1]); // (N, L-1), 0 where not wanted
}
