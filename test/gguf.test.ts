// GGUF export, checked two ways:
//   1. byte by byte: a tiny reader written here (independently of src/io/gguf.ts) parses the
//      header, metadata, tensor table and aligned data back;
//   2. by real llama.cpp (node-llama-cpp 3.21.1, CPU build): our tokenizer ids, our logits
//      and our greedy generations, on a checkpoint trained in the test.
// node-llama-cpp is a devDependency: where its prebuilt binary cannot load, the llama.cpp
// tests skip with a warning on a user's machine, and fail when MINICHAT_REQUIRE_LLAMA_CPP is
// set (CI sets it in .ci/run), so a broken install cannot pass silently.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpu } from '../src/backend/cpu.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint.ts';
import {
  encodeGGUF, encodeModelGGUF, f16ToF32, f32ToF16, interleaveRopeRows, preTokenizerName, quantizeQ8_0, type GGUFDtype, type GGUFValue,
} from '../src/io/gguf.ts';
import { Engine } from '../src/model/engine.ts';
import { GPT, type GPTConfig } from '../src/model/gpt.ts';
import { adapterParams, attachLora } from '../src/model/lora.ts';
import * as T from '../src/tensor/index.ts';
import { PATTERNS, renderForCompletion, trainTokenizer, type Tokenizer } from '../src/tokenizer/index.ts';
import { SFT_DEFAULTS, sft } from '../src/train/sft.ts';
import { tempDir } from './tmp.ts';

const bin = new URL('../bin/minichat.mjs', import.meta.url).pathname;
const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });

// ---------------------------------------------------------------------------------------
// a tiny GGUF reader, for the tests only
// ---------------------------------------------------------------------------------------

interface Parsed {
  version: number;
  meta: Map<string, unknown>;
  tensors: { name: string; ne: number[]; type: number; offset: number }[];
  dataStart: number;
  bytes: Uint8Array;
}

function parseGGUF(bytes: Uint8Array): Parsed {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const u32 = () => ((at += 4), v.getUint32(at - 4, true));
  const u64 = () => ((at += 8), Number(v.getBigUint64(at - 8, true)));
  const str = () => {
    const n = u64();
    at += n;
    return new TextDecoder().decode(bytes.subarray(at - n, at));
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 4: return u32();
      case 5: return ((at += 4), v.getInt32(at - 4, true));
      case 6: return ((at += 4), v.getFloat32(at - 4, true));
      case 7: return bytes[at++] === 1;
      case 8: return str();
      case 10: return u64();
      case 9: {
        const of = u32(), n = u64();
        return Array.from({ length: n }, () => value(of));
      }
      default: throw new Error(`test reader: value type ${type} not expected`);
    }
  };
  expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('GGUF');
  at = 4;
  const version = u32(), nTensors = u64(), nMeta = u64();
  const meta = new Map<string, unknown>();
  for (let i = 0; i < nMeta; i++) {
    const key = str();
    meta.set(key, value(u32()));
  }
  const tensors = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const ne = Array.from({ length: nd }, () => u64());
    tensors.push({ name, ne, type: u32(), offset: u64() });
  }
  const align = (meta.get('general.alignment') as number | undefined) ?? 32;
  return { version, meta, tensors, dataStart: Math.ceil(at / align) * align, bytes };
}

/** A tensor's values back as float32, from the parsed file. */
function tensorValues(p: Parsed, name: string): Float32Array {
  const t = p.tensors.find((x) => x.name === name)!;
  const n = t.ne.reduce((a, b) => a * b, 1);
  const v = new DataView(p.bytes.buffer, p.bytes.byteOffset + p.dataStart + t.offset);
  const out = new Float32Array(n);
  if (t.type === 0) for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true);
  else if (t.type === 1) for (let i = 0; i < n; i++) out[i] = f16ToF32(v.getUint16(2 * i, true));
  else if (t.type === 8) {
    for (let b = 0; b < n / 32; b++) {
      const d = f16ToF32(v.getUint16(34 * b, true));
      for (let i = 0; i < 32; i++) out[32 * b + i] = d * v.getInt8(34 * b + 2 + i);
    }
  } else throw new Error(`test reader: tensor type ${t.type}`);
  return out;
}

describe('GGUF writer, read back byte by byte', () => {
  it('header, metadata of every type, tensor table and 32-byte aligned data round-trip', () => {
    const rng = new T.Rng(5);
    const a = Float32Array.from(rng.normalArray(3 * 5, 1)); // 60 bytes: the next tensor needs padding
    const b = Float32Array.from(rng.normalArray(2 * 64, 1));
    const c = Float32Array.from(rng.normalArray(4 * 32, 1));
    const meta: [string, GGUFValue][] = [
      ['general.architecture', { type: 'string', value: 'qwen3' }],
      ['x.u32', { type: 'u32', value: 4000000000 }],
      ['x.i32', { type: 'i32', value: -7 }],
      ['x.f32', { type: 'f32', value: 0.5 }],
      ['x.u64', { type: 'u64', value: 2 ** 40 + 3 }],
      ['x.bool', { type: 'bool', value: true }],
      ['x.unicode', { type: 'string', value: 'café 東京 ␣' }],
      ['x.strings', { type: 'array', of: 'string', value: ['a', '', 'Ġb'] }],
      ['x.ints', { type: 'array', of: 'i32', value: [1, -2, 3] }],
    ];
    const bytes = encodeGGUF(meta, [
      { name: 'a', shape: [3, 5], dtype: 'f32', data: a },
      { name: 'b', shape: [2, 64], dtype: 'f16', data: b },
      { name: 'c', shape: [4, 32], dtype: 'q8_0', data: c },
    ]);
    const p = parseGGUF(bytes);
    expect(p.version).toBe(3);
    expect([...p.meta]).toEqual(meta.map(([k, v]) => [k, v.value]));
    // dims fastest-varying first; offsets from the data section, each a multiple of 32
    expect(p.tensors).toEqual([
      { name: 'a', ne: [5, 3], type: 0, offset: 0 },
      { name: 'b', ne: [64, 2], type: 1, offset: 64 },
      { name: 'c', ne: [32, 4], type: 8, offset: 64 + 256 },
    ]);
    expect(p.dataStart % 32).toBe(0);
    expect(bytes.length).toBe(p.dataStart + 64 + 256 + 4 * 34 + 24); // q8_0: 4 blocks of 34 bytes, padded to 160
    expect(Array.from(tensorValues(p, 'a'))).toEqual(Array.from(a)); // f32: exact
    const back16 = tensorValues(p, 'b');
    for (let i = 0; i < b.length; i++) expect(Math.abs(back16[i] - b[i])).toBeLessThanOrEqual(Math.abs(b[i]) * 2 ** -11); // half an f16 ulp
    const back8 = tensorValues(p, 'c');
    for (let r = 0; r < 4; r++) {
      const row = c.subarray(32 * r, 32 * r + 32);
      const d = Math.max(...Array.from(row, Math.abs)) / 127;
      // within half a quantisation step, plus the f16 rounding of the scale (|q| <= 127)
      for (let i = 0; i < 32; i++) expect(Math.abs(back8[32 * r + i] - row[i])).toBeLessThanOrEqual(d / 2 + 127 * d * 2 ** -11);
    }
  });

  it('f32 → f16 rounds to nearest even, with subnormals, overflow and NaN', () => {
    const cases: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001], [Infinity, 0x7c00], [-Infinity, 0xfc00],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0.1, 0x2e66], [1 / 3, 0x3555],
    ];
    for (const [x, h] of cases) expect([x, f32ToF16(x)]).toEqual([x, h]);
    expect(f32ToF16(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16(NaN) & 0x3ff).not.toBe(0);
    expect(f16ToF32(0x3555)).toBeCloseTo(1 / 3, 3);
  });

  it('q8_0 keeps the largest value of each block exact up to the scale and zero blocks zero', () => {
    const x = new Float32Array(64);
    x[3] = -2.54; x[10] = 1.27;
    const q = quantizeQ8_0(x);
    const v = new DataView(q.buffer);
    expect(f16ToF32(v.getUint16(0, true))).toBeCloseTo(0.02, 4);
    expect(v.getInt8(2 + 3)).toBe(-127);
    expect(v.getInt8(2 + 10)).toBe(64); // 1.27 / 0.02 = 63.5: half away from zero, as C's roundf
    expect(Array.from(q.subarray(34))).toEqual(new Array(34).fill(0));
  });

  it('interleaves q/k rows per head for llama RoPE: (x_i, x_{i+HS/2}) become rows 2i, 2i+1', () => {
    // 2 heads of size 4, one column: row r holds r
    const w = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(Array.from(interleaveRopeRows(w, 8, 1, 4))).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  });

  it('names the llama.cpp pre-tokenizer whose regex is ours, and refuses a custom one', () => {
    expect(preTokenizerName(PATTERNS.cl100k_base)).toBe('llama-bpe');
    expect(preTokenizerName(PATTERNS.gpt2)).toBe('gpt-2');
    expect(preTokenizerName(PATTERNS.o200k_base)).toBe('gpt-4o');
    expect(() => preTokenizerName('\\w+|\\s+')).toThrow(/not one of the built-in ones/);
  });
});

// ---------------------------------------------------------------------------------------
// against llama.cpp
// ---------------------------------------------------------------------------------------

/** Every one-digit sum as a conversation, and some text with unicode and whitespace runs. */
function sums(): string[] {
  const lines: string[] = [];
  for (let a = 0; a < 10; a++) {
    for (let b = 0; b < 10; b++) lines.push(JSON.stringify({ messages: [{ role: 'user', content: `What is ${a} + ${b}?` }, { role: 'assistant', content: `The sum of ${a} and ${b} is ${a + b}.` }] }));
  }
  return lines;
}
const UNICODE = 'Naïve café — 東京タワー, “quotes”… émigré   three spaces,\t\ttabs\n\n\nnewlines; 12345 digits; don\'t WE\'LL 🙂 ';
const PROBE = 'A naïve émigré  in 東京:\t\t“ok”…\n\n  12345678 🙂🙂 don\'t   ';

type NodeLlama = typeof import('node-llama-cpp');
type Llama = Awaited<ReturnType<NodeLlama['getLlama']>>;
type Token = import('node-llama-cpp').Token;

/** llama.cpp through node-llama-cpp (CPU build), or null to skip (see the file header). */
async function llamaOrSkip(): Promise<Llama | null> {
  try {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    return await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  } catch (e) {
    if (process.env.MINICHAT_REQUIRE_LLAMA_CPP) throw e;
    console.warn(`llama.cpp tests skipped: node-llama-cpp did not load (${(e as Error).message})`);
    return null;
  }
}

/** Softmax of one row of logits, in float64. */
function softmax(row: ArrayLike<number>): number[] {
  const m = Math.max(...Array.from(row));
  const e = Array.from(row, (x) => Math.exp(x - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

/** Our next-token probabilities after every prefix of ids: (ids.length, V). */
async function ourProbs(model: GPT, ids: number[]): Promise<number[][]> {
  const V = model.config.vocabSize;
  const logits = await T.noGrad(() => T.tidy(async () => model.forward(T.tensor(ids, [1, ids.length], { dtype: 'int32', backend: cpu })).data()));
  return ids.map((_, i) => softmax(logits.subarray(i * V, (i + 1) * V)));
}

describe('GGUF in llama.cpp (node-llama-cpp)', () => {
  let llama: Llama | null = null;
  let root = '';
  let run = ''; // the SFT run directory
  let tok: Tokenizer;
  let model: GPT;

  beforeAll(async () => {
    llama = await llamaOrSkip();
    if (!llama) return;
    // A chat model trained in a few seconds: the tokenizer has merges inside multi-byte
    // characters and whitespace runs, and the SFT makes the next-token distribution peaked,
    // so greedy decoding is not decided by float rounding between two near-equal logits.
    root = tempDir('mc-gguf-');
    const data = join(root, 'sums.jsonl');
    writeFileSync(data, sums().join('\n') + '\n');
    tok = await trainTokenizer([sums().join(' '), UNICODE.repeat(20)], { vocabSize: 360 });
    const config: GPTConfig = {
      vocabSize: tok.vocabSize, hiddenSize: 64, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 16, intermediateSize: 128,
      maxSeqLen: 96, ropeTheta: 10000, rmsNormEps: 1e-6, tieEmbeddings: true, qkNorm: true, mlp: 'swiglu', logitSoftcap: 0,
    };
    const init = T.noGrad(() => new GPT(config, new T.Rng(1), cpu));
    await saveCheckpoint(join(root, 'init', 'checkpoint'), { model: init, tokenizer: tok, optimizerState: null, state: null });
    init.dispose();
    run = join(root, 'sft');
    await sft(
      { ...SFT_DEFAULTS, init: join(root, 'init'), out: run, data, steps: 60, batchSize: 8, seqLen: 32, lr: 1e-2, evalEvery: 1000, ckptEvery: 1000, valFraction: 0, backend: cpu },
      { log: () => {} },
    );
    model = (await loadCheckpoint(run, { backend: cpu })).model;
  });
  afterAll(async () => {
    model?.dispose();
    await llama?.dispose();
  });

  /** Write `m` as GGUF of `dtype` and load it with llama.cpp; a context with an f32 KV cache. */
  async function load(m: GPT, dtype: GGUFDtype, name: string) {
    const path = join(root, name);
    writeFileSync(path, await encodeModelGGUF(m, tok, { dtype }));
    const lm = await llama!.loadModel({ modelPath: path });
    // llama.cpp keeps keys and values in f16 by default; f32 makes the comparison one of the
    // weights alone (an f16 cache alone moves the probabilities by ~1e-4)
    const ctx = await lm.createContext({ contextSize: m.config.maxSeqLen, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', flashAttention: false });
    return { lm, ctx, path };
  }

  /** llama.cpp's next-token probabilities after every prefix of ids (no sampling filters). */
  async function theirProbs(ctx: Awaited<ReturnType<typeof load>>['ctx'], ids: number[], V: number): Promise<number[][]> {
    const seq = ctx.getSequence();
    const out = await seq.controlledEvaluate((ids as Token[]).map((t) => [t, { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } }]));
    seq.dispose();
    return out.map((o) => Array.from({ length: V }, (_, i) => o!.next.probabilities!.get(i as Token) ?? 0));
  }

  const maxDiff = (a: number[][], b: number[][]) => Math.max(...a.map((row, i) => Math.max(...row.map((x, j) => Math.abs(x - b[i][j])))));

  it('the tokenizer inside gives our ids on text with unicode and whitespace runs', async (t) => {
    if (!llama) return t.skip();
    const { lm, ctx } = await load(model, 'f32', 'tok.gguf');
    const ours = tok.encodeOrdinary(PROBE);
    expect(ours.some((id) => id > 255 && /[^\x00-\x7f]/.test(tok.decode([id])))).toBe(true); // a merged multi-byte token is exercised
    expect(lm.tokenize(PROBE)).toEqual(ours);
    expect(lm.tokenize(UNICODE)).toEqual(tok.encodeOrdinary(UNICODE));
    // specials: their text is parsed to the control ids when asked, and decodes back
    expect(lm.tokenize('<|user_start|>hi<|user_end|>', true)).toEqual([tok.specials['<|user_start|>'], ...tok.encodeOrdinary('hi'), tok.specials['<|user_end|>']]);
    expect(lm.detokenize(ours as Token[])).toBe(PROBE);
    expect(lm.tokens.bos).toBe(tok.bosId);
    expect(lm.tokens.eos).toBe(tok.specials['<|assistant_end|>']);
    await ctx.dispose();
    await lm.dispose();
  });

  it('f32: greedy generation of 32 tokens equals ours; f16 and q8_0 within a stated tolerance', async (t) => {
    if (!llama) return t.skip();
    const prompt = renderForCompletion(tok, [{ role: 'user', content: 'What is 3 + 4?' }]);
    const [ourRow] = await new Engine(model).generate([prompt], { maxTokens: 32, temperature: 0, topK: 0, topP: 1, seed: 0, stop: [] });
    expect(ourRow.tokens.length).toBe(32);
    const f32 = await load(model, 'f32', 'f32.gguf');
    // token by token through llama.cpp's own greedy sampler; controlledEvaluate (unlike
    // evaluate) does not end at the end-of-generation token, so both sides run 32 steps
    const seq = f32.ctx.getSequence();
    const greedy = { generateNext: { token: true, options: { temperature: 0 } } };
    const theirs: number[] = [];
    let out = await seq.controlledEvaluate([...(prompt.slice(0, -1) as Token[]), [prompt.at(-1) as Token, greedy]]);
    while (theirs.length < 32) {
      const next = out.at(-1)!.next.token!;
      theirs.push(next);
      if (theirs.length < 32) out = await seq.controlledEvaluate([[next, greedy]]);
    }
    expect(theirs).toEqual(ourRow.tokens);
    // a reply of the trained shape (its sum need not be right), so the comparison is not one of noise
    expect(tok.decode(ourRow.tokens.slice(0, ourRow.tokens.indexOf(tok.specials['<|assistant_end|>'])))).toMatch(/^The sum of \d and \d is \d+\.$/);
    seq.dispose();

    // Probabilities along the whole sequence (prompt + the 32 generated tokens).
    const ids = [...prompt, ...ourRow.tokens].slice(0, model.config.maxSeqLen);
    const V = model.config.vocabSize;
    const ours = await ourProbs(model, ids);
    // f32: the same weights; what differs is summation order and ggml's vectorised exp and
    // SiLU. Measured 1.1e-5 here (3e-8 on an untrained model with flat probabilities); the
    // bound 5e-5 is still 100x below what f16 weights do and 700x below a wrong RoPE layout.
    const d32 = maxDiff(await theirProbs(f32.ctx, ids, V), ours);
    expect(d32).toBeLessThan(5e-5);
    // f16 rounds each weight by up to 2^-11 relative; q8_0 by up to half of max|row block|/127.
    // Propagated through two layers these move the logits by ~1e-3 (f16) and ~1e-2 (q8_0), so
    // probabilities by at most about as much: tolerances 5e-3 and 5e-2 (measured here: 8.3e-4
    // and 2.1e-2). Greedy is also
    // compared: with a peaked model the top token must not change at any position.
    for (const [dtype, tol] of [['f16', 5e-3], ['q8_0', 5e-2]] as const) {
      const q = await load(model, dtype, `${dtype}.gguf`);
      const probs = await theirProbs(q.ctx, ids, V);
      const d = maxDiff(probs, ours);
      expect(d, dtype).toBeLessThan(tol);
      const argmax = (r: number[]) => r.indexOf(Math.max(...r));
      expect(probs.map(argmax), dtype).toEqual(ours.map(argmax));
      await q.ctx.dispose();
      await q.lm.dispose();
    }
    await f32.ctx.dispose();
    await f32.lm.dispose();
  });

  it('llama (no QK-norm, untied head): the q/k permutation gives our logits', async (t) => {
    if (!llama) return t.skip();
    const config: GPTConfig = { ...model.config, qkNorm: false, tieEmbeddings: false };
    const m = T.noGrad(() => new GPT(config, new T.Rng(7), cpu));
    // Random weights of std 0.02 give near-uniform attention, which no RoPE layout could
    // change; scaled up 8x, attention depends on positions and a wrong q/k layout shows
    // (without the permutation the probabilities differ by ~4e-2).
    T.noGrad(() => {
      for (const p of m.params.values()) if (p.rank === 2) p.assign(T.mulScalar(p, 8));
    });
    const { lm, ctx, path } = await load(m, 'f32', 'llama.gguf');
    expect(parseGGUF(readFileSync(path)).meta.get('general.architecture')).toBe('llama');
    const ids = [tok.bosId, ...tok.encodeOrdinary(PROBE)];
    expect(maxDiff(await theirProbs(ctx, ids, config.vocabSize), await ourProbs(m, ids))).toBeLessThan(1e-5);
    await ctx.dispose();
    await lm.dispose();
    m.dispose();
  });

  it('minichat export --format gguf --merge-lora: a LoRA checkpoint runs in llama.cpp as it does in minichat', async (t) => {
    if (!llama) return t.skip();
    const loaded = await loadCheckpoint(run, { backend: cpu });
    const m = loaded.model;
    attachLora(m, { rank: 4, alpha: 8 }, new T.Rng(3));
    const rng = new T.Rng(4);
    T.noGrad(() => {
      for (const p of adapterParams(m)) p.param.assign(T.tensor(rng.normalArray(p.param.size, 0.2), p.param.shape, { backend: cpu }));
    });
    const lora = join(root, 'lora');
    await saveCheckpoint(join(lora, 'checkpoint'), { model: m, tokenizer: tok, optimizerState: null, state: null });
    const out = join(root, 'lora.gguf');
    expect(cli('export', '--ckpt', lora, '--format', 'gguf', '--out', out).stderr).toMatch(/has LoRA adapters: pass --merge-lora/);
    const r = cli('export', '--ckpt', lora, '--format', 'gguf', '--merge-lora', '--out', out);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/as GGUF \(qwen3, f32/);
    const lm = await llama.loadModel({ modelPath: out });
    const ctx = await lm.createContext({ contextSize: m.config.maxSeqLen, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', flashAttention: false });
    const ids = [tok.bosId, ...tok.encodeOrdinary(PROBE)];
    const ours = await ourProbs(m, ids); // the adapters applied on the fly, unmerged
    const base = await ourProbs(model, ids);
    expect(maxDiff(ours, base)).toBeGreaterThan(1e-2); // the adapters do change the model
    expect(maxDiff(await theirProbs(ctx, ids, m.config.vocabSize), ours)).toBeLessThan(1e-5);
    await ctx.dispose();
    await lm.dispose();
    m.dispose();
  });

  it('export refuses what it cannot write, in one line each', async (t) => {
    if (!llama) return t.skip();
    const notOurs = join(root, 'notes.gguf');
    writeFileSync(notOurs, 'my notes');
    const cases: [string[], RegExp][] = [
      [['--format', 'gguf', '--out', notOurs], /notes\.gguf exists and was not written by minichat export/],
      [['--format', 'gguf', '--out', tempDir('mc-gguf-dir-')], /is a directory: --out names the \.gguf file/],
      [['--format', 'gguf', '--out', root], /is \(or holds, or is inside\) the checkpoint being exported/],
      [['--format', 'hf', '--dtype', 'f16', '--out', join(root, 'hf')], /--dtype applies to --format gguf only/],
      [['--format', 'gguf', '--dtype', 'bf16', '--out', join(root, 'x.gguf')], /expected one of f32, f16, q8_0/],
    ];
    for (const [args, msg] of cases) {
      const r = cli('export', '--ckpt', run, ...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).not.toMatch(/^\s+at /m); // no stack trace
      expect(r.stderr.trim().split('\n')[0], args.join(' ')).toMatch(msg); // the reason on the first line
      expect(r.stderr).toMatch(msg);
    }
    expect(readFileSync(notOurs, 'utf8')).toBe('my notes'); // untouched
    // an earlier export is ours to replace
    const out = join(root, 'again.gguf');
    expect(cli('export', '--ckpt', run, '--format', 'gguf', '--dtype', 'f16', '--out', out).status).toBe(0);
    expect(cli('export', '--ckpt', run, '--format', 'gguf', '--dtype', 'q8_0', '--out', out).status).toBe(0);
    expect(parseGGUF(readFileSync(out)).meta.get('general.file_type')).toBe(7);
  });
});
