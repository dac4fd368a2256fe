// The whole model on WebGPU against the CPU backend: the same GPT (same weights), the same
// batch, the loss and every parameter's gradient; then 20 optimizer steps (Muon + AdamW)
// on both, whose losses must track.
//
// Tolerances. Every kernel agrees with the CPU to float32 rounding (test/webgpu.test.ts), but
// the orders of summation differ, so differences of a few ULP per op compound through ~100
// ops of forward and backward. For a loss of ~4 nats, 1e-4 relative is ~200 float32 ULP:
// generous for rounding, far below any real bug (a wrong index or missing term changes the
// loss at the 1e-2 level). Gradients: 1e-3 of the gradient's largest entry plus 1e-3
// relative, since small entries are sums of cancelling terms. Training: after 20 steps the
// rounding differences could be amplified by the optimizer (Muon's Newton–Schulz
// normalises tiny differences up to the update scale); measured, they stay at ~1e-7, so the
// two runs are compared at 1e-6 relative per step — a divergence, a skipped update, a wrong
// learning rate or a kernel a few ulps off breaks that within a step or two.
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { webgpuOrSkip } from './gpu-device.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import { buildOptimizer } from '../src/optim/index.ts';
import * as T from '../src/tensor/index.ts';
import { BatchLoader } from '../src/data/loader.ts';
import { Trainer, languageModelLoss } from '../src/train/trainer.ts';

const gpu = await webgpuOrSkip('webgpu model tests');
afterAll(() => {
  T.setDefaultBackend(cpu);
  gpu?.destroy();
});

const config = presetConfig('tiny', { vocabSize: 64, hiddenSize: 32, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, intermediateSize: 48, maxSeqLen: 32 });
const B = 2, Tn = 16;
const rng = new T.Rng(11);
const tokens = Uint16Array.from({ length: 4000 }, (_, i) => (i * 7 + rng.int(5)) % 64); // learnable: mostly +7 mod 64

/** The same initial weights on a backend: built on the CPU from one seed, then copied. */
async function modelOn(b: Backend): Promise<GPT> {
  const ref = new GPT(config, new T.Rng(5), cpu);
  const m = new GPT(config, new T.Rng(5), b);
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, p] of ref.params) weights.set(name, { shape: p.shape, data: Float32Array.from(p.dataSync()) });
  m.loadWeights(weights, 'test');
  ref.dispose();
  return m;
}

describe.skipIf(!gpu)('GPT on WebGPU matches the CPU backend', () => {
  it('loss and every parameter gradient', async () => {
    const batch = new BatchLoader(tokens, B, Tn, 3).next();
    const results: { loss: number; grads: Map<string, Float32Array> }[] = [];
    for (const b of [cpu, gpu!] as Backend[]) {
      T.setDefaultBackend(b);
      const m = await modelOn(b);
      const loss = await T.tidy(async () => {
        const l = m.loss(T.tensor(batch.x, [B, Tn], { dtype: 'int32', backend: b }), batch.y);
        T.backward(l);
        return l.item();
      });
      const grads = new Map<string, Float32Array>();
      for (const [name, p] of m.params) grads.set(name, Float32Array.from(await p.grad!.data()));
      results.push({ loss, grads });
      m.dispose();
    }
    const [c, g] = results;
    expect(Math.abs(g.loss - c.loss) / c.loss).toBeLessThan(1e-4);
    for (const [name, want] of c.grads) {
      const got = g.grads.get(name)!;
      const scale = Math.max(...Array.from(want, Math.abs));
      for (let i = 0; i < want.length; i++) {
        expect(Math.abs(got[i] - want[i]), `${name}[${i}]`).toBeLessThanOrEqual(1e-3 * scale + 1e-3 * Math.abs(want[i]));
      }
    }
  });

  it('20 training steps with Muon + AdamW track the CPU run', async () => {
    const curves: number[][] = [];
    for (const b of [cpu, gpu!] as Backend[]) {
      T.setDefaultBackend(b);
      const m = await modelOn(b);
      const opt = buildOptimizer(m.trainableParams(), { kind: 'muon', lr: 1e-2, weightDecay: 0 });
      const schedule = { lr: 1e-2, warmupSteps: 2, totalSteps: 20, warmdownFraction: 0.3, finalFraction: 0 };
      const trainer = new Trainer(m, opt.paramGroups.map((g) => ({ ...g, schedule })), new BatchLoader(tokens, B, Tn, 7), {
        gradAccum: 1, gradClip: 1,
      });
      const losses: number[] = [];
      const mem: number[] = [];
      for (let s = 0; s < 20; s++) {
        losses.push((await trainer.trainStep(languageModelLoss)).loss);
        mem.push(b.bytesInUse());
      }
      // live device memory is flat from the second step on
      for (const x of mem.slice(2)) expect(x).toBe(mem[1]);
      curves.push(losses);
      m.dispose();
    }
    const [c, g] = curves;
    // it learned something: the last five steps' mean loss is at least 0.3 nats below the
    // first five's (4.16 = ln 64 at the start; without updates only batch noise, ~0.1, moves it)
    const mean5 = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean5(c.slice(15))).toBeLessThan(mean5(c.slice(0, 5)) - 0.3);
    // measured worst step 1.2e-7 relative on SwiftShader (2026-12-03); the bound is ~8x that
    for (let s = 0; s < 20; s++) expect(Math.abs(g[s] - c[s]) / c[s], `step ${s + 1}`).toBeLessThan(1e-6);
  }, 600_000); // SwiftShader runs each of a step's ~500 small dispatches on the CPU: seconds per step
});
