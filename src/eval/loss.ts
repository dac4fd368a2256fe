// Validation loss and bits per byte, and the unigram baseline they are judged against.
// Browser-safe: used by the CLI's pretraining and by the demo page.
//
// Bits per byte (bpb) divides the total loss in bits by the number of UTF-8 bytes the
// predicted tokens stand for. Unlike loss per token it does not depend on the tokenizer,
// so runs with different vocabularies compare fairly (as in nanochat's base_eval).
import type { GPT } from '../model/gpt.ts';
import * as T from '../tensor/index.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { evalBatches, type TokenArray } from '../data/loader.ts';
import { UserError } from '../util/errors.ts';

/** UTF-8 bytes each token stands for (0 for special tokens), for bits-per-byte. */
export function tokenByteLengths(tok: Tokenizer): Int32Array {
  const out = new Int32Array(tok.vocabSize);
  const special = new Set(Object.values(tok.specials));
  for (let id = 0; id < tok.vocabSize; id++) out[id] = special.has(id) ? 0 : tok.tokenBytes(id).length;
  return out;
}

/**
 * Validation loss (nats per token) and bits per byte over up to `maxBatches` sequential
 * batches. Predictions of special tokens (BOS) are left out of both, so bpb measures text.
 */
export async function evaluate(
  model: GPT, tokens: TokenArray, B: number, Tn: number, maxBatches: number, bytesPerToken: Int32Array,
): Promise<{ loss: number; bpb: number; tokens: number }> {
  let nats = 0, count = 0, bytes = 0;
  for (const batch of evalBatches(tokens, B, Tn, maxBatches)) {
    const targets = Array.from(batch.y, (t) => (bytesPerToken[t] === 0 ? -1 : t));
    const n = targets.filter((t) => t !== -1).length;
    if (n === 0) continue;
    const mean = await T.noGrad(() =>
      T.tidy(async () => model.loss(T.tensor(batch.x, [batch.B, Tn], { dtype: 'int32', backend: model.backend }), targets).item()),
    );
    nats += mean * n;
    count += n;
    for (const t of targets) if (t !== -1) bytes += bytesPerToken[t];
  }
  if (count === 0) throw new UserError('validation data holds no text tokens to evaluate');
  return { loss: nats / count, bpb: nats / Math.LN2 / bytes, tokens: count };
}

/** Cross-entropy of the unigram (token frequency) model on val: the "learned nothing" baseline. */
export function unigramLoss(train: TokenArray, val: TokenArray, V: number): number {
  const counts = new Float64Array(V).fill(1); // add-one smoothing
  for (const t of train) counts[t]++;
  const total = counts.reduce((a, b) => a + b, 0);
  let nats = 0;
  for (let i = 1; i < val.length; i++) nats -= Math.log(counts[val[i]] / total);
  return nats / Math.max(1, val.length - 1);
}
