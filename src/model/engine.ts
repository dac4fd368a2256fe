// Text generation: sampling with temperature and top-k, and a KV cache so each new token
// costs one position of compute instead of the whole prefix.
//
// Two paths, kept side by side (as nanochat keeps Engine.generate next to model.generate):
//   - generateNaive: re-runs the full prefix for every token. Obviously correct; slow.
//   - generate: one prefill pass over the prompt, then one position per step with the
//     cache. test/model.test.ts checks that both produce the same tokens.
// When the context fills up (maxSeqLen), both slide a window: the naive path keeps the last
// maxSeqLen tokens; the cached path re-prefills from the last maxSeqLen/2 tokens.
import * as T from '../tensor/index.ts';
import { GPT } from './gpt.ts';

export interface SampleOptions {
  maxTokens: number; // how many new tokens to produce
  temperature: number; // 0 = greedy (arg-max); 1 = the model's distribution
  topK: number; // 0 = no limit; else sample among the K most likely tokens
  rng: T.Rng; // the sampler's own generator (never the training one)
  stopAt?: number[]; // token ids that end generation (not included in the output)
  suppress?: number[]; // token ids never sampled (e.g. chat specials in a base model)
}

/** Pick the next token from one row of logits. */
export function sampleToken(logits: ArrayLike<number>, o: Pick<SampleOptions, 'temperature' | 'topK' | 'rng' | 'suppress'>): number {
  if (o.suppress?.length) {
    const l = Float32Array.from(logits);
    for (const id of o.suppress) l[id] = -Infinity;
    logits = l;
  }
  const V = logits.length;
  if (o.temperature <= 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  let ids = Array.from({ length: V }, (_, i) => i).filter((i) => logits[i] !== -Infinity);
  if (o.topK > 0 && o.topK < V) {
    ids.sort((a, b) => logits[b] - logits[a] || a - b);
    ids = ids.slice(0, o.topK);
  }
  let m = -Infinity;
  for (const i of ids) m = Math.max(m, logits[i]);
  const w = ids.map((i) => Math.exp((logits[i] - m) / o.temperature));
  return ids[o.rng.categorical(w)];
}

async function lastRow(logits: T.Tensor): Promise<Float32Array> {
  const V = logits.shape[1];
  const all = await logits.data();
  return Float32Array.from(all.subarray(all.length - V));
}

/** Reference generation: the whole (windowed) context through the model for every token. */
export async function generateNaive(model: GPT, prompt: number[], o: SampleOptions): Promise<number[]> {
  const out: number[] = [];
  const ctx = [...prompt];
  for (let i = 0; i < o.maxTokens; i++) {
    const window = ctx.slice(-model.config.maxSeqLen);
    const row = await T.noGrad(() =>
      T.tidy(async () => lastRow(model.forward(T.tensor(window, [1, window.length], { dtype: 'int32', backend: model.backend })))),
    );
    const next = sampleToken(row, o);
    if (o.stopAt?.includes(next)) break;
    out.push(next);
    ctx.push(next);
  }
  return out;
}

/** Generation with a KV cache. Same tokens as generateNaive for the same rng state. */
export async function generate(model: GPT, prompt: number[], o: SampleOptions, onToken?: (id: number) => void): Promise<number[]> {
  if (prompt.length === 0) throw new Error('generate: the prompt must hold at least one token (e.g. BOS)');
  const maxT = model.config.maxSeqLen;
  const out: number[] = [];
  const ctx = [...prompt];
  let cache = model.newCache();
  // prefill: the prompt (its last maxT tokens) in one pass
  const feed = async (ids: number[]) =>
    T.noGrad(() => T.tidy(async () => lastRow(model.forward(T.tensor(ids, [1, ids.length], { dtype: 'int32', backend: model.backend }), cache))));
  let row = await feed(ctx.slice(-maxT));
  try {
    for (let i = 0; i < o.maxTokens; i++) {
      const next = sampleToken(row, o);
      if (o.stopAt?.includes(next)) break;
      out.push(next);
      ctx.push(next);
      onToken?.(next);
      if (i === o.maxTokens - 1) break;
      if (cache.length + 1 > maxT) {
        // the window is full: restart the cache from the most recent half of the context
        GPT.disposeCache(cache);
        cache = model.newCache();
        row = await feed(ctx.slice(-Math.floor(maxT / 2)));
      } else {
        row = await feed([next]);
      }
    }
  } finally {
    GPT.disposeCache(cache);
  }
  return out;
}
