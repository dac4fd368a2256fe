// The memory-lean training options of the model (src/model/gpt.ts, docs/memory.md): activation
// recomputation per block (`recompute`) and the chunked LM head + cross-entropy (`ceChunk`).
// Each must change only what is kept for the backward pass, never the numbers:
//   - recompute re-runs exactly the same ops on exactly the same inputs, and each weight gets
//     its gradient from one contribution either way, so loss and gradients are BIT-identical;
//   - ceChunk sums the loss and the head weight's gradient chunk by chunk instead of in one
//     reduction, so they agree up to float rounding: in float64 (cpu64) within 1e-12 relative,
//     in float32 within 2e-6 relative to the largest gradient entry of each tensor (float32's
//     unit roundoff is 6e-8; the measured worst, printed below, was 4.6e-7 on cpu and 1.2e-7
//     on wasm, so the bound leaves a factor of 4);
// and the peak live bytes of a training step (Backend.peakBytes) must fall.
import { describe, expect, it } from 'vitest';
import type { Backend } from '../src/backend/backend.ts';
import { cpu, cpu64 } from '../src/backend/cpu.ts';
import { createWasmBackend } from '../src/backend/wasm.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import * as T from '../src/tensor/index.ts';

const cfg = (o = {}) => presetConfig('tiny', { vocabSize: 96, hiddenSize: 32, numLayers: 3, numHeads: 4, numKVHeads: 2, headDim: 8, intermediateSize: 48, maxSeqLen: 32, ...o });

function batch(B: number, Tn: number, V: number, seed = 3) {
  const r = new T.Rng(seed);
  const x = Int32Array.from({ length: B * Tn }, () => r.int(V));
  // some targets ignored (-1), as SFT's masks do, so the chunks count different rows
  const y = Array.from({ length: B * Tn }, (_, i) => (i % 7 === 3 ? -1 : r.int(V)));
  return { x, y, B, Tn };
}

/** Loss, every parameter's gradient and the step's peak live bytes above what was live before. */
function lossAndGrads(model: GPT, be: Backend, b: ReturnType<typeof batch>) {
  const before = be.bytesInUse();
  be.resetPeak();
  const loss = T.tidy(() => {
    const l = model.loss(T.tensor(b.x, [b.B, b.Tn], { dtype: 'int32', backend: be }), b.y);
    T.backward(l);
    return l.itemSync();
  });
  const peak = be.peakBytes() - before;
  const grads = new Map<string, number[]>();
  for (const { name, param } of model.namedParams()) {
    grads.set(name, param.grad!.toArraySync());
    param.grad!.dispose();
    param.grad = null;
  }
  return { loss, grads, peak };
}

function worstRelative(a: Map<string, number[]>, b: Map<string, number[]>): number {
  let worst = 0;
  for (const [name, g] of a) {
    const h = b.get(name)!;
    const scale = Math.max(...g.map(Math.abs));
    for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(g[i] - h[i]) / scale);
  }
  return worst;
}

async function backends(): Promise<Backend[]> {
  return [cpu, await createWasmBackend()];
}

describe('activation recomputation (--recompute)', () => {
  it('gives bit-identical loss and gradients, and a smaller peak, on cpu and wasm', async () => {
    for (const be of await backends()) {
      for (const qkNorm of [true, false]) {
        const model = T.noGrad(() => new GPT(cfg({ qkNorm }), new T.Rng(1), be));
        const b = batch(2, 16, 96);
        const plain = lossAndGrads(model, be, b);
        model.recompute = true;
        const re = lossAndGrads(model, be, b);
        expect(re.loss, `${be.name} loss`).toBe(plain.loss);
        for (const [name, g] of plain.grads) expect(re.grads.get(name), `${be.name} ${name}`).toEqual(g);
        expect(re.peak, `${be.name}: peak ${re.peak} with recompute vs ${plain.peak}`).toBeLessThan(plain.peak);
        // evaluation (no tape) takes the plain path and the same value
        const evalLoss = T.noGrad(() => T.tidy(() => model.loss(T.tensor(b.x, [2, 16], { dtype: 'int32', backend: be }), b.y).itemSync()));
        expect(evalLoss).toBe(plain.loss);
        model.dispose();
      }
    }
  });

  it('leaves nothing alive after the step and no tape behind', async () => {
    for (const be of await backends()) {
      const model = T.noGrad(() => new GPT(cfg(), new T.Rng(2), be));
      model.recompute = true;
      model.ceChunk = 8;
      const b = batch(2, 16, 96);
      lossAndGrads(model, be, b); // first step makes the cached RoPE tables
      const live = be.bytesInUse();
      lossAndGrads(model, be, b);
      expect(be.bytesInUse()).toBe(live);
      expect(T.tape.length).toBe(0);
      model.dispose();
    }
  });
});

describe('chunked cross-entropy (--ce-chunk)', () => {
  it('equals the unchunked loss and gradients in float64 within 1e-12', () => {
    const model = T.noGrad(() => new GPT(cfg(), new T.Rng(4), cpu64));
    const b = batch(2, 16, 96);
    const whole = lossAndGrads(model, cpu64, b);
    for (const chunk of [1, 5, 8, 31]) {
      model.ceChunk = chunk;
      const parts = lossAndGrads(model, cpu64, b);
      expect(Math.abs(parts.loss - whole.loss) / whole.loss, `chunk ${chunk}`).toBeLessThan(1e-12);
      expect(worstRelative(whole.grads, parts.grads), `chunk ${chunk}`).toBeLessThan(1e-12);
    }
    model.dispose();
  });

  it('equals it in float32 within 2e-6 on cpu and wasm, with a smaller peak, also combined with recompute', async () => {
    for (const be of await backends()) {
      const model = T.noGrad(() => new GPT(cfg({ vocabSize: 512 }), new T.Rng(5), be));
      const b = batch(4, 16, 512);
      const whole = lossAndGrads(model, be, b);
      for (const recompute of [false, true]) {
        model.recompute = recompute;
        model.ceChunk = 16;
        const parts = lossAndGrads(model, be, b);
        const worst = worstRelative(whole.grads, parts.grads);
        console.log(`${be.name} ce-chunk 16${recompute ? ' + recompute' : ''}: loss ${parts.loss} vs ${whole.loss}, worst gradient difference ${worst.toExponential(2)} of the largest entry; peak ${parts.peak} vs ${whole.peak} bytes`);
        expect(Math.abs(parts.loss - whole.loss) / whole.loss).toBeLessThan(2e-6);
        expect(worst).toBeLessThan(2e-6);
        expect(parts.peak).toBeLessThan(whole.peak);
      }
      model.dispose();
    }
  });

  it('a batch whose targets are all ignored has loss 0 and zero gradients', () => {
    const model = T.noGrad(() => new GPT(cfg(), new T.Rng(6), cpu));
    model.ceChunk = 4;
    const b = { ...batch(1, 8, 96), y: new Array(8).fill(-1) };
    const r = lossAndGrads(model, cpu, b);
    expect(r.loss).toBe(0);
    for (const g of r.grads.values()) expect(g.every((v) => v === 0)).toBe(true);
    model.dispose();
  });
});
