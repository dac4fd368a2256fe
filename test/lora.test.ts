// LoRA adapters (src/model/lora.ts): B = 0 is a no-op, merging equals running unmerged, the
// frozen base stays bit-identical through training, rank groups update independently, and the
// adapter gradients pass the float64 finite-difference check.
import { describe, expect, it } from 'vitest';
import { cpu64 } from '../src/backend/cpu.ts';
import { GPT, PRESETS, type GPTConfig } from '../src/model/gpt.ts';
import { adapterParams, adapterState, attachLora, loadAdapters, loraConfig, mergeLora } from '../src/model/lora.ts';
import { buildParamGroups } from '../src/optim/index.ts';
import * as T from '../src/tensor/index.ts';
import { Trainer, languageModelLoss } from '../src/train/trainer.ts';

const config: GPTConfig = { ...PRESETS.tiny, vocabSize: 40, hiddenSize: 16, numLayers: 2, numHeads: 2, numKVHeads: 1, headDim: 8, intermediateSize: 24, maxSeqLen: 16 };
const B = 2, Tn = 6;
const ids = (rng: T.Rng) => Int32Array.from({ length: B * Tn }, () => rng.int(config.vocabSize));

async function logits(model: GPT, x: Int32Array): Promise<Float32Array | Float64Array> {
  return T.noGrad(() => T.tidy(async () => (await model.forward(T.tensor(x, [B, Tn], { dtype: 'int32', backend: model.backend })).data()) as Float32Array));
}

/** A model whose adapters are no longer zero (B random), so merge tests are not trivial. */
function perturbAdapters(model: GPT, rng: T.Rng): void {
  for (const p of adapterParams(model)) p.param.assign(T.tensor(rng.normalArray(p.param.size, 0.05), p.param.shape, { backend: p.param.backend }));
}

function batchSource(seed: number) {
  const rng = new T.Rng(seed);
  return { next: () => ({ x: ids(rng), y: ids(rng), B, T: Tn }) };
}

describe('LoRA', () => {
  it('with B = 0 the logits are exactly the base model’s', async () => {
    const model = new GPT(config, new T.Rng(1));
    const x = ids(new T.Rng(2));
    const before = await logits(model, x);
    attachLora(model, { rank: 4 }, new T.Rng(3));
    const after = await logits(model, x);
    expect(Array.from(after)).toEqual(Array.from(before)); // x Wᵀ + 0: bit for bit
    // adapters on all seven projections of both layers, two tensors each
    expect(adapterParams(model).length).toBe(2 * 7 * 2);
    expect(model.trainableParams().every((p) => p.role === 'adapter')).toBe(true);
    model.dispose();
  });

  it('merged equals unmerged (float32, relative 1e-5)', async () => {
    const model = new GPT(config, new T.Rng(1));
    attachLora(model, { rank: 4, alpha: 8, groups: [{ name: 'policy', rank: 2 }, { name: 'world', rank: 2 }] }, new T.Rng(3));
    perturbAdapters(model, new T.Rng(4));
    const x = ids(new T.Rng(2));
    const unmerged = await logits(model, x);
    mergeLora(model);
    expect(model.adapter).toBeNull();
    expect(model.namedParams().some((p) => p.role === 'adapter')).toBe(false);
    const merged = await logits(model, x);
    // Tolerance: merging reassociates x(W + sBA)ᵀ vs xWᵀ + s(xAᵀ)Bᵀ; float32 rounding of sums
    // over 16–24 terms of size ~1 is ~1e-6 relative, so 1e-5 of the largest logit is ample.
    const scale = Math.max(...Array.from(unmerged, Math.abs));
    let maxDiff = 0;
    for (let i = 0; i < merged.length; i++) maxDiff = Math.max(maxDiff, Math.abs(merged[i] - unmerged[i]));
    expect(maxDiff).toBeLessThan(1e-5 * scale);
    expect(maxDiff).toBeGreaterThanOrEqual(0);
    model.dispose();
  });

  it('training the adapters leaves the frozen base bit-identical, and the loss falls', async () => {
    const model = new GPT(config, new T.Rng(1));
    attachLora(model, { rank: 4 }, new T.Rng(3));
    const base = model.namedParams().filter((p) => p.role !== 'adapter');
    const snapshot = base.map((p) => Array.from(p.param.dataSync()));
    const groups = buildParamGroups(model.trainableParams(), { kind: 'adamw', lr: 3e-2, weightDecay: 0.1 });
    expect(groups.map((g) => g.name)).toEqual(['adamw']);
    // one fixed batch, so the loss must fall if the adapters learn at all
    const fixed = batchSource(9).next();
    const trainer = new Trainer(model, groups, { next: () => fixed }, { gradAccum: 1, gradClip: 1 });
    const losses: number[] = [];
    for (let i = 0; i < 8; i++) losses.push((await trainer.trainStep(languageModelLoss)).loss);
    base.forEach((p, i) => expect(Array.from(p.param.dataSync()), p.name).toEqual(snapshot[i]));
    expect(losses[7]).toBeLessThan(losses[0] - 0.05);
    model.dispose();
  });

  it('rank groups: stepping one group leaves the other bit-identical', async () => {
    const model = new GPT(config, new T.Rng(1));
    attachLora(model, { rank: 4, groups: [{ name: 'policy', rank: 2 }, { name: 'world', rank: 2 }] }, new T.Rng(3));
    const world = adapterParams(model, 'world');
    const policy = adapterParams(model, 'policy');
    expect(world.length).toBe(policy.length);
    const snapWorld = world.map((p) => Array.from(p.param.dataSync()));
    const snapPolicy = policy.map((p) => Array.from(p.param.dataSync()));
    const groups = buildParamGroups(policy, { kind: 'adamw', lr: 1e-2, weightDecay: 0 });
    const trainer = new Trainer(model, groups, batchSource(5), { gradAccum: 1, gradClip: 0 });
    await trainer.trainStep(languageModelLoss);
    world.forEach((p, i) => expect(Array.from(p.param.dataSync())).toEqual(snapWorld[i]));
    expect(policy.some((p, i) => Array.from(p.param.dataSync()).some((v, j) => v !== snapPolicy[i][j]))).toBe(true);
    model.dispose();
  });

  it('adapters save alone and load onto a fresh base', async () => {
    const model = new GPT(config, new T.Rng(1));
    attachLora(model, { rank: 4, targets: ['q', 'v'] }, new T.Rng(3));
    perturbAdapters(model, new T.Rng(4));
    const x = ids(new T.Rng(2));
    const want = await logits(model, x);
    const { config: cfg, tensors } = adapterState(model);
    const saved = new Map([...tensors].map(([n, t]) => [n, { shape: t.shape, data: Array.from(t.dataSync()) }]));
    const fresh = new GPT(config, new T.Rng(1)); // same seed: the same base weights
    loadAdapters(fresh, cfg, saved, 'test');
    expect(Array.from(await logits(fresh, x))).toEqual(Array.from(want));
    saved.delete([...saved.keys()][0]);
    expect(() => loadAdapters(new GPT(config, new T.Rng(1)), cfg, saved, 'adapters.safetensors')).toThrow(/missing adapter tensor/);
    model.dispose();
    fresh.dispose();
  });

  it('config errors are clear', () => {
    expect(() => loraConfig({ rank: 0 })).toThrow(/positive integer/);
    expect(() => loraConfig({ rank: 4, groups: [{ name: 'a', rank: 3 }] })).toThrow(/add up/);
    expect(() => loraConfig({ targets: ['qq' as never] })).toThrow(/unknown LoRA target/);
    expect(() => loraConfig({ dropout: 1 })).toThrow(/dropout/);
  });

  it('adapter gradients match central finite differences in float64', () => {
    // Same standard as test/grad.test.ts: cpu64 storage, h = 1e-5, |analytic − numeric| ≤ 1e-6·(1 + |numeric|).
    const prev = T.getDefaultBackend();
    T.setDefaultBackend(cpu64);
    try {
      const model = new GPT(config, new T.Rng(1), cpu64);
      attachLora(model, { rank: 2, targets: ['q', 'down'] }, new T.Rng(3));
      perturbAdapters(model, new T.Rng(4));
      const rng = new T.Rng(6);
      const x = ids(rng), y = ids(rng);
      const lossOf = () => T.noGrad(() => T.tidy(() => model.loss(T.tensor(x, [B, Tn], { dtype: 'int32', backend: cpu64 }), y).itemSync()));
      T.tidy(() => T.backward(model.loss(T.tensor(x, [B, Tn], { dtype: 'int32', backend: cpu64 }), y)));
      let checked = 0;
      for (const { name, param } of adapterParams(model)) {
        const g = param.grad!.toArraySync() as number[];
        const data = Array.from(param.dataSync());
        for (const j of [0, Math.floor(data.length / 2), data.length - 1]) {
          const at = (v: number) => {
            const d = [...data];
            d[j] = v;
            param.assign(T.tensor(d, param.shape, { backend: cpu64 }));
            return lossOf();
          };
          const numeric = (at(data[j] + 1e-5) - at(data[j] - 1e-5)) / 2e-5;
          at(data[j]);
          expect(Math.abs(g[j] - numeric), `${name}[${j}]`).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(numeric)));
          checked++;
        }
      }
      expect(checked).toBe(2 * 2 * 2 * 3); // 2 layers × 2 targets × (A, B) × 3 entries
      model.dispose();
    } finally {
      T.setDefaultBackend(prev);
    }
  });
});
