// How closely the wasm and WebGPU backends track the CPU reference on the model tests'
// setup (test/wasm-backend.test.ts, test/webgpu-model.test.ts), over several seeds: the
// worst case of each number those tests bound, so the bounds can sit a small margin above it.
//
//   node bin/run-ts.mjs scripts/backend-parity.ts wasm [seeds]
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json XDG_RUNTIME_DIR=/tmp \
//     node bin/run-ts.mjs scripts/backend-parity.ts webgpu [seeds]
//
// Per seed (seed 0 is the tests' own seeds; seed s > 0 shifts the weights', the tokens' and
// the batches' seeds by s): the relative loss difference of one forward, the gradient
// difference as the k of the tests' bound |got − want| ≤ k·max|want| + k·|want| (the smallest
// k that passes), and the largest relative per-step loss difference of 20 Muon + AdamW steps.
import type { Backend } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { initWasmMatmul } from '../src/backend/wasm-matmul.ts';
import { BatchLoader } from '../src/data/loader.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import { buildOptimizer } from '../src/optim/index.ts';
import * as T from '../src/tensor/index.ts';
import { Trainer, languageModelLoss } from '../src/train/trainer.ts';

const which = process.argv[2] ?? 'wasm';
const seeds = Number(process.argv[3] ?? 5);
await initWasmMatmul(); // the CPU backend as the tests run it (test/setup.ts)
let other: Backend;
if (which === 'wasm') other = await (await import('../src/backend/wasm.ts')).createWasmBackend();
else if (which === 'webgpu') other = await (await import('../src/backend/webgpu.ts')).createWebGPUBackend();
else throw new Error('usage: backend-parity.ts wasm|webgpu [seeds]');

const config = presetConfig('tiny', { vocabSize: 64, hiddenSize: 32, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, intermediateSize: 48, maxSeqLen: 32 });
const B = 2, Tn = 16;

function modelOn(b: Backend, seed: number): GPT {
  const ref = new GPT(config, new T.Rng(5 + seed), cpu);
  const m = new GPT(config, new T.Rng(5 + seed), b);
  m.loadWeights(new Map([...ref.params].map(([name, p]) => [name, { shape: p.shape, data: Float32Array.from(p.dataSync()) }])), 'parity');
  ref.dispose();
  return m;
}

const worst = { loss: 0, gradK: 0, train: 0 };
for (let s = 0; s < seeds; s++) {
  const trng = new T.Rng(11 + s);
  const tokens = Uint16Array.from({ length: 4000 }, (_, i) => (i * 7 + trng.int(5)) % 64);
  // one forward and backward
  const batch = new BatchLoader(tokens, B, Tn, 3 + s).next();
  const res: { loss: number; grads: Map<string, Float32Array> }[] = [];
  for (const b of [cpu, other]) {
    T.setDefaultBackend(b);
    const m = modelOn(b, s);
    const loss = await T.tidy(async () => {
      const l = m.loss(T.tensor(batch.x, [B, Tn], { dtype: 'int32', backend: b }), batch.y);
      T.backward(l);
      return l.item();
    });
    const grads = new Map<string, Float32Array>();
    for (const [name, p] of m.params) grads.set(name, Float32Array.from(await p.grad!.data()));
    res.push({ loss, grads });
    m.dispose();
  }
  const lossRel = Math.abs(res[1].loss - res[0].loss) / res[0].loss;
  let gradK = 0;
  for (const [name, want] of res[0].grads) {
    const got = res[1].grads.get(name)!;
    const scale = Math.max(...Array.from(want, Math.abs));
    for (let i = 0; i < want.length; i++) gradK = Math.max(gradK, Math.abs(got[i] - want[i]) / (scale + Math.abs(want[i])));
  }
  // 20 training steps
  const curves: number[][] = [];
  for (const b of [cpu, other]) {
    T.setDefaultBackend(b);
    const m = modelOn(b, s);
    const opt = buildOptimizer(m.trainableParams(), { kind: 'muon', lr: 1e-2, weightDecay: 0 });
    const schedule = { lr: 1e-2, warmupSteps: 2, totalSteps: 20, warmdownFraction: 0.3, finalFraction: 0 };
    const trainer = new Trainer(m, opt.paramGroups.map((g) => ({ ...g, schedule })), new BatchLoader(tokens, B, Tn, 7 + s), { gradAccum: 1, gradClip: 1 });
    const losses: number[] = [];
    for (let i = 0; i < 20; i++) losses.push((await trainer.trainStep(languageModelLoss)).loss);
    curves.push(losses);
    T.noGrad(() => Object.values(opt.stateDict()).forEach((t) => t.dispose()));
    m.dispose();
  }
  const perStep = curves[0].map((c, i) => Math.abs(curves[1][i] - c) / c);
  const train = Math.max(...perStep);
  worst.loss = Math.max(worst.loss, lossRel);
  worst.gradK = Math.max(worst.gradK, gradK);
  worst.train = Math.max(worst.train, train);
  console.log(`${which} seed ${s}: loss rel ${lossRel.toExponential(2)}, grad k ${gradK.toExponential(2)}, training max rel ${train.toExponential(2)} (at step ${perStep.indexOf(train) + 1})`);
}
T.setDefaultBackend(cpu);
console.log(`${which} worst of ${seeds} seeds: loss rel ${worst.loss.toExponential(2)}, grad k ${worst.gradK.toExponential(2)}, training max rel ${worst.train.toExponential(2)}`);
other.destroy?.();
