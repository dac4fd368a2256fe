// Threads are the default on the wasm backend (src/cli/common.ts, resolveThreads): what the
// default resolves to, and that training with worker threads gives the SAME bytes as without.
//
// Why bit for bit: only matmul is split, into bands of whole rows that each start on a
// multiple of the kernel's row tile (wasm.ts, `split`), so every output element is computed
// by the same instructions in the same order whatever the thread count. Every other op runs on
// the main thread. So losses and weights after N steps must be identical, not merely close;
// any difference is a bug (a band computed twice or not at all), not rounding.
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_THREADS_CAP, resolveThreads } from '../src/cli/common.ts';
import { createWasmBackend, type WasmBackend } from '../src/backend/wasm.ts';
import { BatchLoader } from '../src/data/loader.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import { buildOptimizer } from '../src/optim/index.ts';
import * as T from '../src/tensor/index.ts';
import { Trainer, languageModelLoss } from '../src/train/trainer.ts';
import { UserError } from '../src/util/errors.ts';
import { cpu } from '../src/backend/cpu.ts';

describe('resolveThreads: flag, then MINICHAT_THREADS, then min(cores, 8) on wasm', () => {
  it('the default follows the core count, capped, on wasm only', () => {
    expect(resolveThreads('wasm', undefined, undefined, 1)).toBe(1);
    expect(resolveThreads('wasm', undefined, undefined, 2)).toBe(2);
    expect(resolveThreads('wasm', undefined, undefined, 6)).toBe(6);
    expect(resolveThreads('wasm', undefined, undefined, 64)).toBe(DEFAULT_THREADS_CAP);
    expect(DEFAULT_THREADS_CAP).toBe(8);
    expect(resolveThreads('wasm', undefined, '', 4)).toBe(4); // an empty variable counts as unset
    // backends without worker threads silently get 1 when nobody asked for more
    expect(resolveThreads('cpu', undefined, undefined, 16)).toBe(1);
    expect(resolveThreads('webgpu', undefined, undefined, 16)).toBe(1);
  });

  it('the env var overrides the default, the flag overrides both', () => {
    expect(resolveThreads('wasm', undefined, '3', 16)).toBe(3);
    expect(resolveThreads('wasm', undefined, '12', 2)).toBe(12); // asked for: not capped
    expect(resolveThreads('wasm', 1, '3', 16)).toBe(1);
    expect(resolveThreads('wasm', 5, undefined, 2)).toBe(5);
    expect(resolveThreads('wasm', 2, 'junk', 16)).toBe(2); // the flag wins: the variable is not even read
    expect(resolveThreads('cpu', 1, undefined, 16)).toBe(1);
    expect(resolveThreads('cpu', undefined, '1', 16)).toBe(1);
  });

  it('threads the user asked for on a backend without them, or a bad variable, are one clear UserError', () => {
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(UserError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(err(() => resolveThreads('cpu', 2, undefined, 16))).toBe('--threads 2 applies to --backend wasm only (the cpu backend has no worker threads)');
    expect(err(() => resolveThreads('webgpu', undefined, '4', 16))).toBe('MINICHAT_THREADS=4 applies to --backend wasm only (the webgpu backend has no worker threads)');
    for (const bad of ['0', '-1', '1.5', 'two', '2x', '1e3']) {
      expect(err(() => resolveThreads('wasm', undefined, bad, 16))).toBe(`MINICHAT_THREADS must be a positive integer, got "${bad}"`);
    }
  });
});

describe('training with worker threads gives the one-thread bytes', () => {
  const made: WasmBackend[] = [];
  afterAll(() => {
    T.setDefaultBackend(cpu);
    for (const b of made) b.destroy();
  });

  // Big enough that the MLP, attention projections and LM head matmuls (B·T = 128 rows) split:
  // 128 × 64 × 256 = 2²¹ multiply-adds, above THREADS_MIN_MACS = 2¹⁹.
  const config = presetConfig('tiny', { vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 16, intermediateSize: 256, maxSeqLen: 64 });
  const B = 2, Tn = 64, STEPS = 4;
  const trng = new T.Rng(23);
  const tokens = Uint16Array.from({ length: 20_000 }, (_, i) => (i * 13 + trng.int(7)) % 256);

  async function train(threads: number, kind: 'adamw' | 'muon') {
    const b = await createWasmBackend({ threads });
    made.push(b);
    T.setDefaultBackend(b);
    const m = new GPT(config, new T.Rng(5), b);
    const opt = buildOptimizer(m.trainableParams(), { kind, lr: 1e-2, weightDecay: 0.1 });
    const schedule = { lr: 1e-2, warmupSteps: 1, totalSteps: STEPS, warmdownFraction: 0.5, finalFraction: 0 };
    const trainer = new Trainer(m, opt.paramGroups.map((g) => ({ ...g, schedule })), new BatchLoader(tokens, B, Tn, 7), { gradAccum: 1, gradClip: 1 });
    const losses: number[] = [];
    for (let s = 0; s < STEPS; s++) losses.push((await trainer.trainStep(languageModelLoss)).loss);
    const weights = new Map([...m.params].map(([name, p]) => [name, Float32Array.from(p.dataSync())]));
    T.noGrad(() => Object.values(opt.stateDict()).forEach((t) => t.dispose()));
    m.dispose();
    return { losses, weights, jobs: b.threadPool.jobs };
  }

  for (const kind of ['adamw', 'muon'] as const) {
    it(`${kind}: ${STEPS} steps, 1 vs 2 threads: identical losses and weights (compared as bits)`, async () => {
      const one = await train(1, kind), two = await train(2, kind);
      expect(one.jobs).toBe(0);
      expect(two.jobs).toBeGreaterThan(10 * STEPS); // the helper really computed bands
      expect(one.losses.every(Number.isFinite)).toBe(true);
      expect(two.losses).toEqual(one.losses); // toEqual on numbers is Object.is per element: exact
      for (const [name, w1] of one.weights) {
        const w2 = two.weights.get(name)!;
        const bits = (w: Float32Array) => new Int32Array(w.buffer, w.byteOffset, w.length);
        expect(Buffer.from(bits(w2).buffer).equals(Buffer.from(bits(w1).buffer)), name).toBe(true);
      }
    }, 60_000);
  }
});
