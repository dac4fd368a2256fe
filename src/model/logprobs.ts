// Log-probabilities of given tokens under the model: what RL's policy loss, the world-model
// loss and multiple-choice evaluation all need.
//
// For a batch of sequences ids (N, L), position t predicts token t+1, so
//   out[n, t] = log p(ids[n, t+1] | ids[n, 0..t])        out: (N, L-1)
// computed as logSoftmax(logits) picked at each target. The pick is a gather from the
// flattened (N·(L-1)·V, 1) table at row i·V + target_i, so the gradient flows back through
// gather's rule (a scatter-add) into the logits — the same trick as the composed
// cross-entropy in src/tensor/composed.ts.
import * as T from '../tensor/index.ts';
import type { GPT } from './gpt.ts';

/** (N, L-1) log-probs of ids[:, 1:] given their prefixes; differentiable. */
export function tokenLogprobs(model: GPT, ids: Int32Array, N: number, L: number): T.Tensor {
  if (ids.length !== N * L) throw new Error(`tokenLogprobs: ${ids.length} ids for (${N}, ${L})`);
  if (L < 2) throw new Error('tokenLogprobs: sequences need at least 2 tokens');
  const x = new Int32Array(N * (L - 1));
  const picks = new Int32Array(N * (L - 1));
  const V = model.config.vocabSize;
  for (let n = 0; n < N; n++) {
    for (let t = 0; t < L - 1; t++) {
      const i = n * (L - 1) + t;
      x[i] = ids[n * L + t];
      picks[i] = i * V + ids[n * L + t + 1];
    }
  }
  const logits = model.forward(T.tensor(x, [N, L - 1], { dtype: 'int32', backend: model.backend })); // (N*(L-1), V)
  const logp = T.reshape(T.logSoftmax(logits, -1), [N * (L - 1) * V, 1]);
  const picked = T.gather(logp, T.tensor(picks, [picks.length], { dtype: 'int32', backend: model.backend })); // (N*(L-1), 1)
  return T.reshape(picked, [N, L - 1]);
}
