// The batched generation engine (src/model/engine.ts) against its references: the in-place
// writeSlice against plain loops, the batched KV-cache path against one-prompt-at-a-time and
// against the naive path (a full forward per token), its log-probs against one full forward
// pass; then the per-row machinery: forking, forced tokens, stops, UTF-8 streaming, abort,
// flat memory. The same agreement is checked on WebGPU (SwiftShader in CI; tiny shapes).
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { Engine, type GenerateOptions, type RowOutput, generateNaive, rawLogprob, sampleRow } from '../src/model/engine.ts';
import { GPT, type GPTConfig, presetConfig } from '../src/model/gpt.ts';
import * as T from '../src/tensor/index.ts';
import { UserError } from '../src/util/errors.ts';
import { webgpuOrSkip } from './gpu-device.ts';

const gpu = await webgpuOrSkip('engine webgpu tests');
afterAll(() => gpu?.destroy());

/** Small enough for exhaustive checks; vocab > 256 so the UTF-8 test can use byte ids. */
const micro = (o: Partial<GPTConfig> = {}): GPTConfig =>
  presetConfig('tiny', { vocabSize: 300, hiddenSize: 16, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, intermediateSize: 24, maxSeqLen: 64, ...o });

/**
 * A random model with lively outputs: at the default init (std 0.02, tied head) greedy
 * decoding just repeats the last token, which would hide a wrong mask or position. An untied
 * head and 10x larger matrices make rows diverge within a few tokens.
 */
function lively(cfg: GPTConfig, seed: number, backend?: Backend): GPT {
  const m = new GPT({ ...cfg, tieEmbeddings: false }, new T.Rng(seed), backend);
  for (const p of m.params.values()) if (p.rank === 2) p.assign(T.noGrad(() => T.mulScalar(p, 10)));
  return m;
}

/** Prompts of different lengths, so the batch is left-padded. */
const PROMPTS = [[5], [10, 11, 12, 13, 14], [7, 8, 9], [20, 21, 22, 23, 24, 25, 26, 27]];

const greedy = (o: Partial<GenerateOptions> = {}): GenerateOptions => ({ maxTokens: 12, temperature: 0, topK: 0, topP: 1, seed: 3, stop: [], ...o });

const tokensOf = (rows: RowOutput[]) => rows.map((r) => r.tokens);

/** log softmax of every position of one full forward pass over ids, on the host. */
async function fullLogprobs(m: GPT, ids: number[]): Promise<Float32Array[]> {
  const V = m.config.vocabSize;
  const all = await T.noGrad(() => T.tidy(async () => m.forward(T.tensor(ids, [1, ids.length], { dtype: 'int32', backend: m.backend })).data()));
  return Array.from({ length: ids.length }, (_, t) => Float32Array.from(all.subarray(t * V, (t + 1) * V)));
}

// ---------------------------------------------------------------------------------------
// writeSlice: the in-place primitive the cache is written with
// ---------------------------------------------------------------------------------------

/** The reference: dst[..., start + k, ...] = src[..., k, ...] by index arithmetic. */
function writeSliceRef(dst: Float32Array, dShape: number[], src: Float32Array, sShape: number[], axis: number, start: number): Float32Array {
  const out = dst.slice();
  const sStr = sShape.map((_, i) => sShape.slice(i + 1).reduce((a, b) => a * b, 1));
  const dStr = dShape.map((_, i) => dShape.slice(i + 1).reduce((a, b) => a * b, 1));
  for (let i = 0; i < src.length; i++) {
    let d = 0;
    for (let a = 0; a < sShape.length; a++) {
      const c = Math.floor(i / sStr[a]) % sShape[a];
      d += (a === axis ? c + start : c) * dStr[a];
    }
    out[d] = src[i];
  }
  return out;
}

const rng = new T.Rng(7);
const writeCases: [number[], number, number, number][] = [
  // dst shape, axis, src length on that axis, start
  [[2, 3, 10, 4], 2, 1, 0],
  [[2, 3, 10, 4], 2, 3, 7],
  [[5, 4], 0, 2, 3],
  [[3, 4, 5], 2, 5, 0],
  [[3, 4, 5], 1, 2, 1],
];

function checkWriteSlice(be: Backend) {
  return async () => {
    for (const [shape, axis, n, start] of writeCases) {
      const sShape = shape.map((d, i) => (i === axis ? n : d));
      const d0 = rng.normalArray(shape.reduce((a, b) => a * b), 1), s0 = rng.normalArray(sShape.reduce((a, b) => a * b), 1);
      const dst = T.tensor(d0, shape, { backend: be }), src = T.tensor(s0, sShape, { backend: be });
      const before = be.bytesInUse();
      const r = T.writeSlice(dst, src, axis, start);
      expect(r).toBe(dst); // in place: the same tensor, no new storage
      expect(be.bytesInUse()).toBe(before);
      // exact: a copy
      expect(Array.from(await dst.data())).toEqual(Array.from(writeSliceRef(d0, shape, s0, sShape, axis, start)));
      dst.dispose();
      src.dispose();
    }
  };
}

describe('CPU expand copies contiguous runs (the fast path the KV heads and the fork use)', () => {
  it('equals the per-element reference on shapes with long and short trailing runs', () => {
    const cases: [number[], number[]][] = [
      [[2, 3, 1, 5, 16], [2, 3, 4, 5, 16]], // grouped-query: KV heads repeated, runs of 80
      [[3, 1, 2, 4, 8], [3, 5, 2, 4, 8]], // a fork: each prompt copied into 5 rows
      [[1, 40], [3, 40]],
      [[4, 1], [4, 20]], // runs of 1: the index path
      [[2, 17], [2, 17]], // nothing broadcast
    ];
    for (const [xs, os] of cases) {
      const x = rng.normalArray(xs.reduce((a, b) => a * b), 1);
      const got = cpu.expand(cpu.upload(x, 'float32'), xs, os) as unknown as Float32Array;
      const want = new Float32Array(got.length);
      const ostr = os.map((_, i) => os.slice(i + 1).reduce((a, b) => a * b, 1));
      const xstr = xs.map((_, i) => xs.slice(i + 1).reduce((a, b) => a * b, 1));
      for (let i = 0; i < want.length; i++) {
        let src = 0;
        for (let a = 0; a < os.length; a++) src += (xs[a] === 1 ? 0 : Math.floor(i / ostr[a]) % os[a]) * xstr[a];
        want[i] = x[src];
      }
      expect(Array.from(got), `[${xs}] -> [${os}]`).toEqual(Array.from(want));
    }
  });
});

describe('writeSlice (CPU)', () => {
  it('writes src into dst along every kind of axis, in place, exactly like the reference loops', checkWriteSlice(cpu));

  it('refuses to run while gradients are recorded, and bad ranges or shapes', () => {
    const dst = T.zeros([2, 4]), src = T.tensor([1, 2], [2, 1], { requiresGrad: true });
    expect(() => T.writeSlice(dst, src, 1, 0)).toThrow(/inference-only op with no gradient/);
    T.noGrad(() => T.writeSlice(dst, src, 1, 3)); // fine without the tape
    expect(dst.toArraySync()).toEqual([0, 0, 0, 1, 0, 0, 0, 2]);
    const s2 = T.tensor([1, 2], [2, 1]);
    expect(() => T.writeSlice(dst, s2, 1, 4)).toThrow(/range \[4, 5\) is not inside axis 1 of length 4/);
    expect(() => T.writeSlice(dst, T.zeros([3, 1]), 1, 0)).toThrow(/differs from dst/);
  });
});

// ---------------------------------------------------------------------------------------
// the engine on the CPU
// ---------------------------------------------------------------------------------------

describe('engine (CPU)', () => {
  const m = lively(micro(), 4);
  afterAll(() => m.dispose());

  it('batched greedy = one prompt at a time = the naive path, for prompts of different lengths', async () => {
    const batched = await new Engine(m).generate(PROMPTS, greedy());
    const single = [];
    for (const p of PROMPTS) single.push(...(await new Engine(m).generate([p], greedy())));
    const naive = await generateNaive(m, PROMPTS, greedy());
    expect(tokensOf(batched)).toEqual(tokensOf(naive));
    expect(tokensOf(single)).toEqual(tokensOf(naive));
    expect(batched.every((r) => r.tokens.length === 12 && r.finish === 'length')).toBe(true);
    // not a degenerate model that repeats one token everywhere
    expect(new Set(batched.flatMap((r) => r.tokens)).size).toBeGreaterThan(20);
  });

  it('sampled rows do not depend on batch composition: batched = maxRows 3 = naive (same per-row streams)', async () => {
    const o: GenerateOptions = { maxTokens: 10, temperature: 0.9, topK: 50, topP: 0.9, seed: 11, stop: [], samplesPerPrompt: 2 };
    const a = await new Engine(m).generate(PROMPTS, o);
    const b = await new Engine(m, { maxRows: 3 }).generate(PROMPTS, o); // one prompt (2 rows) per batch
    const n = await generateNaive(m, PROMPTS, o);
    expect(tokensOf(a)).toEqual(tokensOf(n));
    expect(tokensOf(b)).toEqual(tokensOf(n));
    expect(a.map((r) => [r.prompt, r.sample])).toEqual(PROMPTS.flatMap((_, p) => [[p, 0], [p, 1]]));
    // sampled log-probs agree too; float rounding in the padded batch vs single rows: 1e-4
    for (let r = 0; r < a.length; r++) {
      for (let i = 0; i < a[r].tokens.length; i++) expect(Math.abs(a[r].logprobs[i] - n[r].logprobs[i])).toBeLessThan(1e-4);
    }
  });

  it('log-probs at temperature 1 (no cuts) equal those of one full forward pass over the same tokens', async () => {
    const rows = await new Engine(m).generate(PROMPTS, { maxTokens: 10, temperature: 1, topK: 0, topP: 1, seed: 5, stop: [] });
    for (const r of rows) {
      const ids = [...PROMPTS[r.prompt], ...r.tokens];
      const lp = await fullLogprobs(m, ids);
      r.tokens.forEach((id, i) => {
        const want = rawLogprob(lp[PROMPTS[r.prompt].length - 1 + i], id);
        // float32 logits from a different batch shape and padding: rounding ~1e-6; 1e-4 leaves room
        expect(Math.abs(r.rawLogprobs[i] - want)).toBeLessThan(1e-4);
        expect(Math.abs(r.logprobs[i] - want)).toBeLessThan(1e-4); // sampling dist == model dist here
      });
    }
  });

  it('the sampling log-prob is taken after the cuts: with top-k 1 every token has log-prob 0', async () => {
    const rows = await new Engine(m).generate(PROMPTS.slice(0, 2), { maxTokens: 5, temperature: 0.7, topK: 1, topP: 1, seed: 5, stop: [] });
    for (const r of rows) {
      expect(r.logprobs.every((x) => x === 0)).toBe(true);
      expect(r.rawLogprobs.every((x) => x < 0)).toBe(true); // the model itself is never certain
    }
  });

  it('a forked prompt gives G identical greedy rows, and G different sampled ones', async () => {
    const g = await new Engine(m).generate([PROMPTS[1]], greedy({ samplesPerPrompt: 4 }));
    expect(g).toHaveLength(4);
    for (const r of g) expect(r.tokens).toEqual(g[0].tokens);
    const s = await new Engine(m).generate([PROMPTS[1]], { maxTokens: 8, temperature: 1, topK: 0, topP: 1, seed: 2, stop: [], samplesPerPrompt: 4 });
    expect(new Set(s.map((r) => r.tokens.join())).size).toBeGreaterThan(1);
  });

  it('forced tokens land in their row, are marked, get NaN sampling log-probs, and the row continues from them', async () => {
    const afterToken = (row: number, gen: number[]) => (row === 1 && gen.length === 2 ? [100, 101, 102] : undefined);
    const o = greedy({ afterToken });
    const rows = await new Engine(m).generate(PROMPTS, o);
    const r1 = rows[1];
    expect(r1.tokens.slice(2, 5)).toEqual([100, 101, 102]);
    expect(r1.forced).toEqual(r1.tokens.map((_, i) => i >= 2 && i < 5));
    expect(r1.logprobs.slice(2, 5).every(Number.isNaN)).toBe(true);
    expect(r1.rawLogprobs.every(Number.isFinite)).toBe(true); // the model's log-prob of a forced token is still reported
    for (const r of [rows[0], rows[2], rows[3]]) expect(r.forced.some(Boolean)).toBe(false);
    // the other rows are untouched, and the continuation matches the naive path given the same callback
    const plain = await new Engine(m).generate(PROMPTS, greedy());
    expect(tokensOf([rows[0], rows[2], rows[3]])).toEqual(tokensOf([plain[0], plain[2], plain[3]]));
    expect(tokensOf(rows)).toEqual(tokensOf(await generateNaive(m, PROMPTS, o)));
    expect(r1.tokens).not.toEqual(plain[1].tokens);
  });

  it('a stop token ends only its own row (and is kept, with its log-prob)', async () => {
    const plain = await new Engine(m).generate(PROMPTS, greedy());
    // a token row 0 generates at step 3 that no other row generates at all
    const i = plain[0].tokens.findIndex((t, k) => k >= 2 && plain.slice(1).every((r) => !r.tokens.includes(t)));
    expect(i).toBeGreaterThanOrEqual(0);
    const stopId = plain[0].tokens[i];
    const rows = await new Engine(m).generate(PROMPTS, greedy({ stop: [stopId] }));
    expect(rows[0].finish).toBe('stop');
    expect(rows[0].tokens).toEqual(plain[0].tokens.slice(0, plain[0].tokens.indexOf(stopId) + 1));
    expect(rows[0].logprobs).toHaveLength(rows[0].tokens.length);
    for (let r = 1; r < rows.length; r++) {
      expect(rows[r].finish).toBe('length');
      expect(rows[r].tokens).toEqual(plain[r].tokens);
    }
  });

  it('the text stream never emits a replacement character when multi-byte characters are split across tokens', async () => {
    // ids < 256 are raw bytes; every other id is the letter "a". Sampling is confined to
    // letters, and after the first token the row is forced the text's bytes one token each.
    const text = 'héllo 😀 日本語 ñ';
    const bytes = Array.from(new TextEncoder().encode(text));
    const decodeBytes = (ids: number[]) => Uint8Array.from(ids.map((id) => (id < 256 ? id : 0x61)));
    const chunks: string[] = [];
    await new Engine(m).generate([[1]], greedy({
      maxTokens: 1 + bytes.length, suppress: Array.from({ length: 256 }, (_, i) => i), decodeBytes,
      afterToken: (_, gen) => (gen.length === 1 ? bytes : undefined),
      onText: (row, t) => chunks.push(t),
    }));
    expect(chunks.join('')).toBe('a' + text);
    expect(chunks.some((c) => c.includes('\uFFFD'))).toBe(false);
    expect(chunks.length).toBeGreaterThan(10); // streamed, not emitted once at the end
  });

  it('aborting stops every row at the next step', async () => {
    const ac = new AbortController();
    const rows = await new Engine(m).generate(PROMPTS, greedy({ maxTokens: 40, signal: ac.signal, onToken: (row, _) => row === 0 && ac.abort() }));
    for (const r of rows) {
      expect(r.finish).toBe('aborted');
      expect(r.tokens).toHaveLength(1); // the step in flight completes for every row, then nothing more
    }
  });

  it('cache memory stays flat over a long generation', async () => {
    const seen: number[] = [];
    const rows = await new Engine(m).generate(PROMPTS, greedy({ maxTokens: 50, onToken: (row) => row === 0 && seen.push(cpu.bytesInUse()) }));
    expect(rows[0].tokens).toHaveLength(50);
    // from the 2nd step on, only the preallocated cache is live between steps: no growth at all
    expect(new Set(seen.slice(1)).size).toBe(1);
  });

  it('a row that would pass maxSeqLen ends with finish "length"', async () => {
    const s = lively(micro({ maxSeqLen: 10 }), 4);
    const rows = await new Engine(s).generate([[1, 2, 3], [4]], greedy({ maxTokens: 30 }));
    // the batch is aligned to the longest prompt (3): 7 fed tokens fill the 10 positions, 8 generated
    expect(rows.map((r) => [r.tokens.length, r.finish])).toEqual([[8, 'length'], [8, 'length']]);
    expect(tokensOf(rows)).toEqual(tokensOf(await generateNaive(s, [[1, 2, 3], [4]], greedy({ maxTokens: 8 }))));
    s.dispose();
  });

  it('user mistakes are one-line UserErrors', async () => {
    const e = new Engine(m);
    await expect(e.generate([[]], greedy())).rejects.toThrow(UserError);
    await expect(e.generate([[1]], greedy({ topP: 0 }))).rejects.toThrow(/topP must be in \(0, 1\]/);
    await expect(e.generate([[1, 999]], greedy())).rejects.toThrow(/prompt 0 holds token 999/);
    await expect(new Engine(m, { maxRows: 2 }).generate([[1]], greedy({ samplesPerPrompt: 3 }))).rejects.toThrow(/exceeds the engine's maxRows 2/);
  });
});

describe('sampleRow', () => {
  it('top-p keeps the smallest prefix reaching p and renormalises', () => {
    const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
    const r = new T.Rng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const s = sampleRow(logits, { temperature: 1, topK: 0, topP: 0.8 }, r);
      seen.add(s.id);
      // kept: 0.5 + 0.3 = 0.8; renormalised probabilities 0.625 and 0.375 (float32 logits: 1e-6)
      expect(Math.abs(s.logprob - Math.log(s.id === 0 ? 0.625 : 0.375))).toBeLessThan(1e-6);
      expect(Math.abs(s.rawLogprob - Math.log([0.5, 0.3][s.id]))).toBeLessThan(1e-6);
    }
    expect([...seen].sort()).toEqual([0, 1]);
  });
});

// ---------------------------------------------------------------------------------------
// WebGPU: the same agreement on the GPU (SwiftShader in CI: tiny shapes)
// ---------------------------------------------------------------------------------------

describe.skipIf(!gpu)('engine (WebGPU)', () => {
  it('writeSlice writes in place exactly like the reference loops', async () => checkWriteSlice(gpu!)());

  it('batched greedy (padded: composed attention; equal lengths: fused) = the naive path; log-probs match the CPU', async () => {
    const cfg = micro();
    const g = lively(cfg, 4, gpu!), c = lively(cfg, 4, cpu);
    try {
      const o = greedy({ maxTokens: 6 });
      const prompts = PROMPTS.slice(0, 3);
      const batched = await new Engine(g).generate(prompts, o);
      expect(tokensOf(batched)).toEqual(tokensOf(await generateNaive(g, prompts, o)));
      const onCpu = await new Engine(c).generate(prompts, o);
      expect(tokensOf(batched)).toEqual(tokensOf(onCpu));
      // GPU vs CPU logits: different summation order; 1e-4 on log-probs of ~-5.7
      batched.forEach((r, i) => r.rawLogprobs.forEach((x, k) => expect(Math.abs(x - onCpu[i].rawLogprobs[k])).toBeLessThan(1e-4)));
      const same = [[1, 2, 3], [4, 5, 6]]; // no padding: the fused attention kernel
      expect(tokensOf(await new Engine(g).generate(same, o))).toEqual(tokensOf(await generateNaive(g, same, o)));
    } finally {
      g.dispose();
      c.dispose();
    }
  });
});
