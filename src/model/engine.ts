// Text generation, batched: the engine that chat, evaluation and RL rollouts sample from.
//
// The algorithm (docs/generation.md walks through it):
//   1. Prefill. P prompts of different lengths are LEFT-padded to one length Lp and run
//      through the model once, as a (P, Lp) batch. Their keys and values go into a KV cache
//      preallocated for R = P * G rows (G = samplesPerPrompt): each prompt's keys are copied
//      into its G rows, so the prompt is computed once and "forked" (row = p * G + s).
//   2. Decode. Every step feeds one token per row, (R, 1), writes one position of keys and
//      values into the cache in place (T.writeSlice) and reads back (R, V) logits. Pad keys
//      are masked per row; with RoPE, scores depend only on relative positions, so a padded
//      row computes the same as it would alone (up to float rounding).
//   3. Per row, on the host: sample (temperature, top-k, top-p, each row its own RNG stream),
//      or take the next FORCED token queued by `afterToken` (how tool results are injected;
//      forced tokens are marked and get no sampling log-prob); stop tokens, token limits and
//      finished flags; a UTF-8-safe text stream.
//
// Simplifications, stated:
//   - All rows share one position counter (they are left-aligned to the longest prompt), so
//     when the cache reaches maxSeqLen every unfinished row ends with finish 'length'. No
//     sliding window: a window would change what the model conditioned on mid-sample, which
//     RL's log-probs must not hide.
//   - Finished rows keep riding along in the batch (fed a pad token, their results ignored)
//     until every row has finished: simple, and the batch shape never changes.
//   - Padded batches use the composed attention (the fused kernels take no per-row mask);
//     a batch without padding (one prompt, or equal lengths) uses the fused kernel where the
//     backend has one.
//
// generateNaive is the reference: the whole sequence through the model for every token, one
// row at a time, with the same sampler and RNG streams. test/engine.test.ts checks the two
// agree, on the CPU and on WebGPU.
import * as T from '../tensor/index.ts';
import { NotFiniteError, UserError } from '../util/errors.ts';
import { GPT, type KVCache } from './gpt.ts';

// ---------------------------------------------------------------------------------------
// options and results
// ---------------------------------------------------------------------------------------

/** How to sample one token from a row of logits. */
export interface SamplingOptions {
  temperature: number; // 0 = greedy (arg-max); 1 = the model's distribution
  topK: number; // 0 = no limit; else keep the K most likely tokens
  topP: number; // 1 = no limit; else keep the smallest set of most likely tokens whose probability reaches P
  suppress?: number[]; // token ids never sampled (e.g. chat specials in a base model)
}

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number; // new tokens per row, forced ones included
  seed: number; // row (p, s) samples from its own stream derived from (seed, p, s)
  stop: number[]; // token ids that end their row (kept in the output, with finish 'stop')
  samplesPerPrompt?: number; // G: rows per prompt (default 1)
  /**
   * Called after every SAMPLED token (not after forced ones) with the row's tokens so far;
   * ids it returns are fed into that row next, in order, instead of sampling. An END_ROW
   * among them ends the row (finish 'stop') when the queue reaches it: how an environment
   * whose episode is over stops its row without the model having to say so.
   */
  afterToken?: (row: number, generated: number[]) => number[] | undefined;
  /** Text as it is generated, never splitting a UTF-8 character (needs decodeBytes). */
  onText?: (row: number, text: string) => void;
  /** Every token as it is chosen (stop tokens excluded). */
  onToken?: (row: number, id: number) => void;
  /** Aborting ends every unfinished row with finish 'aborted' at the next step. */
  signal?: AbortSignal;
  /** The tokenizer's bytes for ids (Tokenizer.decodeBytes), for onText. */
  decodeBytes?: (ids: number[]) => Uint8Array;
  /**
   * Yield to the event loop (a macrotask, setTimeout 0) every N decode steps; absent or 0 =
   * never. Why: on the CPU backend every await in the loop is an already-resolved promise (a
   * microtask), so a whole generation runs without I/O getting a turn, and a server cannot
   * notice a closed socket (and fire `signal`) until it ends. A timer costs ~1 ms in Node,
   * so it is opt-in: a server sets 1, batch jobs (RL, evals) leave it off.
   */
  yieldEvery?: number;
}

/** Returned by afterToken (after any forced ids) to end that row there; never a real token. */
export const END_ROW = -1;

/** One generated row. Arrays run parallel to `tokens`. */
export interface RowOutput {
  prompt: number; // index into the prompts
  sample: number; // 0 .. G-1
  tokens: number[]; // generated ids (the stop token included when finish is 'stop')
  /**
   * log-prob of each token under the distribution it was sampled from (after suppress,
   * temperature, top-k and top-p, renormalised). Greedy (temperature 0) reports the raw
   * log-prob instead, since the arg-max "distribution" would give 0 for everything. NaN for
   * forced tokens: they were not sampled.
   */
  logprobs: number[];
  /** log-prob of each token under the model's own softmax (temperature 1, nothing cut), forced tokens included. */
  rawLogprobs: number[];
  forced: boolean[]; // true where the token was fed by afterToken (never train on these)
  finish: 'stop' | 'length' | 'aborted';
}

// ---------------------------------------------------------------------------------------
// sampling
// ---------------------------------------------------------------------------------------

export interface Sampled {
  id: number;
  logprob: number; // under the sampling distribution (raw when greedy)
  rawLogprob: number; // under softmax(logits)
}

/** log softmax(logits)[id], in float64. */
export function rawLogprob(logits: ArrayLike<number>, id: number): number {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > m) m = logits[i];
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += Math.exp(logits[i] - m);
  return logits[id] - m - Math.log(s);
}

/**
 * Sample one token from one row of logits: suppress → temperature → top-k → top-p →
 * renormalise → draw. Returns its id and both log-probs.
 */
export function sampleRow(logits: ArrayLike<number>, o: SamplingOptions, rng: T.Rng): Sampled {
  const V = logits.length;
  // -Infinity is a masked token; NaN or +Infinity means the weights have diverged, and would
  // otherwise surface as a confusing failure of the draw below
  for (let i = 0; i < V; i++) if (!(logits[i] < Infinity)) throw new NotFiniteError(`the model's logits are not finite (${logits[i]}): its weights have diverged`);
  const banned = new Set(o.suppress ?? []);
  if (o.temperature <= 0) {
    let best = -1;
    for (let i = 0; i < V; i++) if (!banned.has(i) && (best < 0 || logits[i] > logits[best])) best = i;
    const raw = rawLogprob(logits, best);
    return { id: best, logprob: raw, rawLogprob: raw };
  }
  // candidates, most likely first when a cut needs the order (ties: lower id first)
  let ids: number[] = [];
  for (let i = 0; i < V; i++) if (!banned.has(i) && logits[i] !== -Infinity) ids.push(i);
  if ((o.topK > 0 && o.topK < ids.length) || o.topP < 1) ids.sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK > 0 && o.topK < ids.length) ids = ids.slice(0, o.topK);
  let m = -Infinity;
  for (const i of ids) m = Math.max(m, logits[i]);
  let w = ids.map((i) => Math.exp((logits[i] - m) / o.temperature));
  if (o.topP < 1) {
    // nucleus (Holtzman et al. 2019): the shortest prefix whose mass reaches topP, at least one token
    const total = w.reduce((a, b) => a + b, 0);
    let acc = 0, n = 0;
    while (n < w.length && (n === 0 || acc < o.topP * total)) acc += w[n++];
    ids = ids.slice(0, n);
    w = w.slice(0, n);
  }
  const k = rng.categorical(w);
  const total = w.reduce((a, b) => a + b, 0);
  return { id: ids[k], logprob: Math.log(w[k] / total), rawLogprob: rawLogprob(logits, ids[k]) };
}

/** Pick the next token from one row of logits (the single-stream sampler; topP off). */
export function sampleToken(logits: ArrayLike<number>, o: { temperature: number; topK: number; rng: T.Rng; suppress?: number[]; topP?: number }): number {
  return sampleRow(logits, { temperature: o.temperature, topK: o.topK, topP: o.topP ?? 1, suppress: o.suppress }, o.rng).id;
}

/**
 * Row (p, s)'s own generator, derived from (seed, p, s) only: a row's samples do not depend
 * on which other rows share its batch, on maxRows, or on the naive/batched path.
 */
export function rowRng(seed: number, prompt: number, sample: number): T.Rng {
  let h = (seed >>> 0) ^ 0x2545f491;
  for (const x of [prompt, sample]) {
    h = Math.imul(h ^ (x >>> 0), 0x9e3779b1) >>> 0;
    h = (h ^ (h >>> 15)) >>> 0;
  }
  return new T.Rng(h);
}

// ---------------------------------------------------------------------------------------
// per-row state
// ---------------------------------------------------------------------------------------

/**
 * Incremental UTF-8 text for one row: a streaming TextDecoder holds back the bytes of a
 * character split across tokens until its last byte arrives, so no U+FFFD is ever emitted
 * for valid text (a token boundary inside "é" or an emoji is common with byte-level BPE).
 */
class TextStream {
  private dec = new TextDecoder('utf-8', { ignoreBOM: true }); // a generated U+FEFF is text, not a byte-order mark
  constructor(private decodeBytes: (ids: number[]) => Uint8Array) {}
  push(id: number): string {
    return this.dec.decode(this.decodeBytes([id]), { stream: true });
  }
  /** What is left at the end (a replacement character only if the bytes really were cut). */
  end(): string {
    return this.dec.decode();
  }
}

/** What the engine tracks per row while generating. */
class Row {
  readonly out: RowOutput;
  readonly queue: number[] = []; // forced tokens waiting to be fed
  finished = false;
  readonly text: TextStream | null;
  constructor(readonly index: number, p: number, s: number, readonly rng: T.Rng, o: GenerateOptions) {
    this.out = { prompt: p, sample: s, tokens: [], logprobs: [], rawLogprobs: [], forced: [], finish: 'length' };
    this.text = o.onText && o.decodeBytes ? new TextStream(o.decodeBytes) : null;
  }

  /** Take this row's next token: a queued forced token, or a sample from its logits. */
  step(logits: ArrayLike<number>, o: GenerateOptions): void {
    if (this.queue[0] === END_ROW) return this.finish('stop', o); // the hook ended this row
    const forced = this.queue.length > 0;
    const pick = forced
      ? { id: this.queue.shift()!, logprob: NaN, rawLogprob: NaN }
      : sampleRow(logits, o, this.rng);
    if (forced) pick.rawLogprob = rawLogprob(logits, pick.id);
    const out = this.out;
    out.tokens.push(pick.id);
    out.logprobs.push(pick.logprob);
    out.rawLogprobs.push(pick.rawLogprob);
    out.forced.push(forced);
    if (!forced && o.stop.includes(pick.id)) return this.finish('stop', o);
    o.onToken?.(this.index, pick.id);
    const text = this.text?.push(pick.id);
    if (text) o.onText!(this.index, text);
    if (!forced) {
      const more = o.afterToken?.(this.index, out.tokens);
      if (more?.length) this.queue.push(...more);
    }
    if (out.tokens.length >= o.maxTokens) this.finish('length', o);
  }

  finish(why: RowOutput['finish'], o: GenerateOptions): void {
    if (this.finished) return;
    this.finished = true;
    this.out.finish = why;
    const rest = this.text?.end();
    if (rest) o.onText!(this.index, rest);
  }
}

function checkOptions(model: GPT, prompts: number[][], o: GenerateOptions): number {
  const G = o.samplesPerPrompt ?? 1;
  if (!(Number.isInteger(G) && G >= 1)) throw new UserError(`generate: samplesPerPrompt must be a positive integer, got ${G}`);
  if (!(Number.isInteger(o.maxTokens) && o.maxTokens >= 0)) throw new UserError(`generate: maxTokens must be a non-negative integer, got ${o.maxTokens}`);
  if (!(o.temperature >= 0)) throw new UserError(`generate: temperature must be >= 0, got ${o.temperature}`);
  if (!(o.topP > 0 && o.topP <= 1)) throw new UserError(`generate: topP must be in (0, 1], got ${o.topP}`);
  if (o.yieldEvery !== undefined && !(Number.isInteger(o.yieldEvery) && o.yieldEvery >= 0)) throw new UserError(`generate: yieldEvery must be a non-negative integer, got ${o.yieldEvery}`);
  const { vocabSize: V, maxSeqLen } = model.config;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new UserError(`generate: prompt ${i} is empty; it must hold at least one token (e.g. BOS)`);
    if (p.length > maxSeqLen) throw new UserError(`generate: prompt ${i} has ${p.length} tokens; the model's maxSeqLen is ${maxSeqLen}`);
    for (const id of p) if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new UserError(`generate: prompt ${i} holds token ${id}, outside [0, ${V})`);
  });
  return G;
}

// ---------------------------------------------------------------------------------------
// the engine
// ---------------------------------------------------------------------------------------

export class Engine {
  /** Most rows decoded together; more prompts are run in successive batches of whole prompts. */
  readonly maxRows: number;

  constructor(readonly model: GPT, o: { maxRows?: number } = {}) {
    this.maxRows = o.maxRows ?? 64;
    if (!(Number.isInteger(this.maxRows) && this.maxRows >= 1)) throw new UserError(`Engine: maxRows must be a positive integer, got ${o.maxRows}`);
  }

  /** Generate for every prompt G = samplesPerPrompt rows; results in row order (row = p * G + s). */
  async generate(prompts: number[][], o: GenerateOptions): Promise<RowOutput[]> {
    const G = checkOptions(this.model, prompts, o);
    if (G > this.maxRows) throw new UserError(`generate: samplesPerPrompt ${G} exceeds the engine's maxRows ${this.maxRows}`);
    const perBatch = Math.floor(this.maxRows / G);
    const out: RowOutput[] = [];
    for (let p0 = 0; p0 < prompts.length; p0 += perBatch) {
      out.push(...(await this.batch(prompts.slice(p0, p0 + perBatch), p0, G, o)));
    }
    return out;
  }

  /** No state is held between calls (each batch owns its cache); kept for symmetry with backends. */
  dispose(): void {}

  /** One batch: prompts p0 .. p0+P-1, G rows each. */
  private async batch(prompts: number[][], p0: number, G: number, o: GenerateOptions): Promise<RowOutput[]> {
    const model = this.model, V = model.config.vocabSize;
    const P = prompts.length, R = P * G;
    const rows = Array.from({ length: R }, (_, r) => {
      const p = p0 + Math.floor(r / G), s = r % G;
      return new Row(p * G + s, p, s, rowRng(o.seed, p, s), o);
    });
    if (o.maxTokens === 0) return rows.map((r) => r.out);
    const Lp = Math.max(...prompts.map((p) => p.length));
    const pads = prompts.map((p) => Lp - p.length);
    const cache = model.newCache(R, Math.min(model.config.maxSeqLen, Lp + o.maxTokens), rows.map((_, r) => pads[Math.floor(r / G)]));
    try {
      // prefill: (P, Lp) left-padded with token 0 (masked), last position's logits per prompt
      const ids = prompts.flatMap((p, i) => [...new Array(pads[i]).fill(0), ...p]);
      let logits = await forwardLast(model, cache, ids, P, Lp); // (P, V) on the host
      let perRow = G; // after the prefill, G rows read each prompt's logits; then one each
      for (let step = 0; ; step++) {
        if (o.yieldEvery && step % o.yieldEvery === 0) await new Promise((r) => setTimeout(r, 0)); // let I/O (a disconnect) in
        if (o.signal?.aborted) {
          rows.forEach((r) => r.finish('aborted', o));
          break;
        }
        rows.forEach((r, i) => {
          const l = Math.floor(i / perRow);
          if (!r.finished) r.step(logits.subarray(l * V, (l + 1) * V), o);
        });
        if (rows.every((r) => r.finished)) break;
        if (cache.length >= cache.maxLen) {
          rows.forEach((r) => r.finish('length', o)); // the context is full
          break;
        }
        // decode: each row's newest token (finished rows feed 0 and are ignored)
        const next = rows.map((r) => (r.finished ? 0 : r.out.tokens.at(-1)!));
        logits = await forwardLast(model, cache, next, R, 1); // (R, V)
        perRow = 1;
      }
    } finally {
      GPT.disposeCache(cache);
    }
    return rows.map((r) => r.out);
  }
}

/** Run (B, Tn) ids through the model with the cache; the last position's logits, (B, V), on the host. */
async function forwardLast(model: GPT, cache: KVCache, ids: number[], B: number, Tn: number): Promise<Float32Array> {
  const V = model.config.vocabSize;
  return T.noGrad(() =>
    T.tidy(async () => {
      const idx = T.tensor(ids, [B, Tn], { dtype: 'int32', backend: model.backend });
      let logits = model.forward(idx, cache); // (B*Tn, V)
      if (Tn > 1) logits = T.reshape(T.slice(T.reshape(logits, [B, Tn, V]), 1, Tn - 1, Tn), [B, V]);
      return Float32Array.from(await logits.data());
    }),
  );
}

/**
 * The reference: for every token, the whole sequence (prompt + generated) through the model,
 * no cache, no padding, one row at a time. Same options, same RNG streams, same results as
 * Engine.generate (up to float rounding in the logits).
 */
export async function generateNaive(model: GPT, prompts: number[][], o: GenerateOptions): Promise<RowOutput[]> {
  const G = checkOptions(model, prompts, o);
  const out: RowOutput[] = [];
  for (let p = 0; p < prompts.length; p++) {
    for (let s = 0; s < G; s++) {
      const row = new Row(p * G + s, p, s, rowRng(o.seed, p, s), o);
      while (!row.finished && o.maxTokens > 0) {
        if (o.signal?.aborted) {
          row.finish('aborted', o);
          break;
        }
        const ctx = [...prompts[p], ...row.out.tokens];
        if (ctx.length > model.config.maxSeqLen) {
          row.finish('length', o);
          break;
        }
        const logits = await T.noGrad(() =>
          T.tidy(async () => {
            const all = await model.forward(T.tensor(ctx, [1, ctx.length], { dtype: 'int32', backend: model.backend })).data();
            return Float32Array.from(all.subarray(all.length - model.config.vocabSize));
          }),
        );
        row.step(logits, o);
      }
      out.push(row.out);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// the single-prompt wrapper (pretraining samples, the demo page, `minichat generate`)
// ---------------------------------------------------------------------------------------

export interface SampleOptions {
  maxTokens: number; // how many new tokens to produce
  temperature: number; // 0 = greedy (arg-max); 1 = the model's distribution
  topK: number; // 0 = no limit; else sample among the K most likely tokens
  topP?: number; // 1 (default) = no limit
  rng: T.Rng; // the sampler's own generator (never the training one); one draw seeds the engine
  stopAt?: number[]; // token ids that end generation (not included in the output)
  suppress?: number[]; // token ids never sampled (e.g. chat specials in a base model)
}

/**
 * One prompt, one sample, through the batched engine. Returns the generated ids without the
 * stop token; stops early when the context (maxSeqLen) is full. A prompt longer than the
 * context is cut to its last maxSeqLen tokens (as this wrapper always did; the engine itself
 * refuses such a prompt).
 */
export async function generate(model: GPT, prompt: number[], o: SampleOptions, onToken?: (id: number) => void): Promise<number[]> {
  const [row] = await new Engine(model, { maxRows: 1 }).generate([prompt.slice(-model.config.maxSeqLen)], {
    maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, topP: o.topP ?? 1, suppress: o.suppress,
    seed: o.rng.nextU32(), stop: o.stopAt ?? [], onToken: onToken && ((_, id) => onToken(id)),
  });
  return row.finish === 'stop' ? row.tokens.slice(0, -1) : row.tokens;
}
