// The relaxed-SIMD matmul (kernels/cpu/matmul-relaxed-shared.wasm, built from matmul.wat by
// scripts/build-wasm.ts; chosen by src/backend/wasm-simd.ts) against a float64 reference on
// random shapes, bit-identical across threads, and the model's training steps against cpu.
//
// Vitest's worker processes are plain `node` without --experimental-wasm-relaxed-simd, so on
// Node 20 the other test files run the PLAIN build (relaxed SIMD absent: the default falls
// back). This file turns the flag on for its own process first, the same call bin/minichat.mjs
// makes, so both builds are tested: plain everywhere else, relaxed here (and plain here too,
// asked for explicitly).
//
// Tolerance, and why: relaxed_madd may round once (fused, x86 FMA3) or twice (mul then add);
// either way each output is a float32 dot product of length K summed in some order, for which
// |computed − exact| ≤ γ_K · Σ_k |a_k·b_k|, γ_K = K·u / (1 − K·u), u = 2⁻²⁴ (Higham §3.1; the
// bound covers rounded and exact products alike, so fusing can only tighten it). The
// reference is float64 over the same float32 inputs (exact products), so that proven bound is
// the tolerance. A missing or doubled term is ~10⁵ times larger.
import { afterAll, describe, expect, it } from 'vitest';
import type { MatmulParams } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { type WasmBackend, createWasmBackend } from '../src/backend/wasm.ts';
import { chooseSimdVariant, enableRelaxedSimd, relaxedSimdSupported } from '../src/backend/wasm-simd.ts';
import { BatchLoader } from '../src/data/loader.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import { buildOptimizer } from '../src/optim/index.ts';
import * as T from '../src/tensor/index.ts';
import { Trainer, languageModelLoss } from '../src/train/trainer.ts';

const relaxedHere = await enableRelaxedSimd();
const made: WasmBackend[] = [];
afterAll(() => {
  T.setDefaultBackend(cpu);
  for (const b of made) b.destroy();
});
async function backend(simd: 'plain' | 'relaxed', threads = 1): Promise<WasmBackend> {
  const b = await createWasmBackend({ simd, threads });
  made.push(b);
  return b;
}

const rng = new T.Rng(777);
const f32 = (s: unknown) => s as Float32Array;

describe('relaxed SIMD: detection and choice', () => {
  it('Node ≥ 20 has it once the flag is set (the probe validates)', () => {
    expect(relaxedHere).toBe(true);
    expect(relaxedSimdSupported()).toBe(true);
  });

  it('the option, then MINICHAT_WASM_SIMD, then relaxed where supported; relaxed asked for without support is an error', () => {
    expect(chooseSimdVariant(undefined, undefined, true)).toBe('plain'); // plain unless asked: the same bits on every machine
    expect(chooseSimdVariant(undefined, undefined, false)).toBe('plain');
    expect(chooseSimdVariant(undefined, 'auto', true)).toBe('relaxed');
    expect(chooseSimdVariant(undefined, 'auto', false)).toBe('plain');
    expect(chooseSimdVariant(undefined, 'plain', true)).toBe('plain');
    expect(chooseSimdVariant('relaxed', 'plain', true)).toBe('relaxed');
    expect(chooseSimdVariant('plain', 'relaxed', false)).toBe('plain');
    expect(() => chooseSimdVariant(undefined, 'relaxed', false)).toThrow(/relaxed SIMD was asked for but this engine has none/);
    expect(() => chooseSimdVariant(undefined, 'fma', true)).toThrow('MINICHAT_WASM_SIMD must be plain, relaxed or auto, got "fma"');
  });

  it('the backend reports the build it runs', async () => {
    expect((await backend('relaxed')).simd).toBe('relaxed');
    expect((await backend('plain')).simd).toBe('plain');
  });
});

describe('relaxed matmul vs a float64 reference on random shapes', () => {
  it('300 random shapes, all four layouts, ragged in M, K, N: within γ_K Σ|a b|', async () => {
    const w = await backend('relaxed');
    let worst = 0;
    for (let it = 0; it < 300; it++) {
      const M = 1 + rng.int(40), K = 1 + rng.int(70), N = 1 + rng.int(40);
      const transA = rng.uniform() < 0.5, transB = rng.uniform() < 0.5;
      const a = rng.normalArray(M * K, 1), b = rng.normalArray(K * N, 1); // stored as given by transA / transB
      const A = (i: number, k: number) => (transA ? a[k * M + i] : a[i * K + k]);
      const B = (k: number, j: number) => (transB ? b[j * K + k] : b[k * N + j]);
      const p: MatmulParams = { M, K, N, batch: [], batchA: [], batchB: [], transA, transB };
      const c = f32(w.matmul(w.upload(a, 'float32'), w.upload(b, 'float32'), p));
      const u = 2 ** -24, gamma = (K * u) / (1 - K * u);
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let exact = 0, absSum = 0;
          for (let k = 0; k < K; k++) {
            const q = A(i, k) * B(k, j);
            exact += q;
            absSum += Math.abs(q);
          }
          const err = Math.abs(c[i * N + j] - exact);
          if (!(err <= gamma * absSum)) expect.fail(`(M,K,N)=(${M},${K},${N}) transA=${transA} transB=${transB} c[${i},${j}]=${c[i * N + j]} vs ${exact}: ${err} > ${gamma * absSum}`);
          if (absSum > 0) worst = Math.max(worst, err / (gamma * absSum));
        }
      }
    }
    // how much of the bound was used (for the record; the assertion is the bound above)
    console.log(`relaxed matmul: worst error ${(100 * worst).toFixed(2)}% of the γ_K bound`);
  });

  it('2 threads give the 1-thread bytes (the same instructions on every row), and the helper runs the relaxed build', async () => {
    const w1 = await backend('relaxed', 1), w2 = await backend('relaxed', 2), wp = await backend('plain', 1);
    const before = w2.threadPool.jobs;
    let differFromPlain = 0;
    for (let it = 0; it < 20; it++) {
      const M = 64 + rng.int(200), K = 32 + rng.int(100), N = Math.ceil(2 ** 20 / (M * K)) + rng.int(9);
      const a = rng.normalArray(M * K, 1), b = rng.normalArray(N * K, 1);
      const p: MatmulParams = { M, K, N, batch: [], batchA: [], batchB: [], transA: false, transB: true };
      const c1 = f32(w1.matmul(w1.upload(a, 'float32'), w1.upload(b, 'float32'), p));
      const c2 = f32(w2.matmul(w2.upload(a, 'float32'), w2.upload(b, 'float32'), p));
      expect(Buffer.from(c2.buffer, c2.byteOffset, c2.byteLength).equals(Buffer.from(c1.buffer, c1.byteOffset, c1.byteLength)), `(${M},${K},${N})`).toBe(true);
      const cp = f32(wp.matmul(wp.upload(a, 'float32'), wp.upload(b, 'float32'), p));
      // rows in the helper's band (the second half) must carry the fused rounding too
      for (let q = Math.floor(M / 2) * N; q < M * N; q++) if (cp[q] !== c2[q]) differFromPlain++;
    }
    expect(w2.threadPool.jobs - before).toBe(20); // every one was split
    // The fused multiply-add rounds differently from mul + add, so the relaxed build's outputs
    // differ from the plain build's in the last bits, also in the helper's rows: proof that the
    // helper runs the relaxed build too. (This assumes the CPU has FMA, which V8 then uses for
    // relaxed_madd: every x86-64 since 2013 with FMA3, and every arm64.)
    expect(differFromPlain).toBeGreaterThan(1000);
  });
});

describe('GPT training on the relaxed build tracks the cpu reference', () => {
  it('10 Muon + AdamW steps within 1e-6 relative per step (the bound of wasm-backend.test.ts)', async () => {
    // the same model, data and bound as the 20-step test in wasm-backend.test.ts (plain build,
    // measured worst 7.1e-8): a fused multiply-add changes each product's rounding, not the order
    const config = presetConfig('tiny', { vocabSize: 64, hiddenSize: 32, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, intermediateSize: 48, maxSeqLen: 32 });
    const B = 2, Tn = 16, STEPS = 10;
    const trng = new T.Rng(11);
    const tokens = Uint16Array.from({ length: 4000 }, (_, i) => (i * 7 + trng.int(5)) % 64);
    const w = await backend('relaxed');
    const curves: number[][] = [];
    for (const b of [cpu, w]) {
      T.setDefaultBackend(b);
      const ref = new GPT(config, new T.Rng(5), cpu);
      const m = new GPT(config, new T.Rng(5), b);
      m.loadWeights(new Map([...ref.params].map(([name, p]) => [name, { shape: p.shape, data: Float32Array.from(p.dataSync()) }])), 'test');
      ref.dispose();
      const opt = buildOptimizer(m.trainableParams(), { kind: 'muon', lr: 1e-2, weightDecay: 0 });
      const schedule = { lr: 1e-2, warmupSteps: 2, totalSteps: STEPS, warmdownFraction: 0.3, finalFraction: 0 };
      const trainer = new Trainer(m, opt.paramGroups.map((g) => ({ ...g, schedule })), new BatchLoader(tokens, B, Tn, 7), { gradAccum: 1, gradClip: 1 });
      const losses: number[] = [];
      for (let s = 0; s < STEPS; s++) losses.push((await trainer.trainStep(languageModelLoss)).loss);
      curves.push(losses);
      T.noGrad(() => Object.values(opt.stateDict()).forEach((t) => t.dispose()));
      m.dispose();
    }
    T.setDefaultBackend(cpu);
    const [c, r] = curves;
    let worst = 0;
    for (let s = 0; s < STEPS; s++) {
      const rel = Math.abs(r[s] - c[s]) / c[s];
      worst = Math.max(worst, rel);
      expect(rel, `step ${s + 1}`).toBeLessThan(1e-6);
    }
    console.log(`relaxed build vs cpu: worst step ${worst.toExponential(2)} relative`);
  }, 60_000);
});
