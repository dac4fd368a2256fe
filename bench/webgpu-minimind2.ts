// One forward + backward step of the minimind2 preset (104M parameters) on WebGPU against the
// CPU backend, from the same weights and the same batch: the loss, the global gradient norm
// and the worst gradient difference side by side, with the parity verdict of
// test/webgpu-model.test.ts (loss within 1e-4 relative, every gradient within 1e-3 of its
// tensor's largest entry plus 1e-3 relative). The WebGPU step runs once with the adapter's
// own limits and once per --limit (bytes of maxStorageBufferBindingSize), so that the big
// buffers (the 6400 x 768 embedding, the lm head, the MLP weights) take the split paths.
//
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json XDG_RUNTIME_DIR=/tmp MINICHAT_THREADS=1 \
//     node bin/run-ts.mjs bench/webgpu-minimind2.ts [--seq-len 16] [--limit 8388608,1048576]
//
// On SwiftShader (a CPU Vulkan driver, ~0.1 GFLOP/s) each WebGPU step takes minutes.
import type { Backend } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { createWebGPUBackend } from '../src/backend/webgpu.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import * as T from '../src/tensor/index.ts';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const Tn = Number(arg('--seq-len', '16')), B = 1;
const limits = arg('--limit', `${8 << 20},${1 << 20}`).split(',').filter(Boolean).map(Number);
const config = presetConfig('minimind2');
const rng = new T.Rng(1);
const x = Int32Array.from({ length: B * Tn }, () => rng.int(config.vocabSize));
const y = Array.from({ length: B * Tn }, () => rng.int(config.vocabSize));

// the weights, built once on the CPU
const ref = new GPT(config, new T.Rng(5), cpu);
const weights = new Map([...ref.params].map(([k, p]) => [k, { shape: p.shape, data: Float32Array.from(p.dataSync()) }]));
ref.dispose();
console.log(`minimind2: ${(weights.size)} tensors, ${([...weights.values()].reduce((s, w) => s + w.data.length, 0) / 1e6).toFixed(1)}M parameters, B ${B} x T ${Tn}`);

interface Step { loss: number; norm: number; grads: Map<string, Float32Array>; seconds: number }

async function step(b: Backend): Promise<Step> {
  T.setDefaultBackend(b);
  const m = new GPT(config, new T.Rng(5), b);
  m.loadWeights(weights, 'bench');
  const t0 = performance.now();
  const loss = await T.tidy(async () => {
    const l = m.loss(T.tensor(x, [B, Tn], { dtype: 'int32', backend: b }), y);
    T.backward(l);
    return l.item();
  });
  const { grads, norm } = await m.gradsOnHost();
  const seconds = (performance.now() - t0) / 1000;
  m.dispose();
  T.setDefaultBackend(cpu);
  return { loss, norm, grads, seconds };
}

const want = await step(cpu);
console.log(`cpu: loss ${want.loss.toFixed(6)}, grad norm ${want.norm.toFixed(6)}, ${want.seconds.toFixed(1)} s`);
const rows: string[] = [];
for (const limit of [0, ...limits]) {
  const gpu = await createWebGPUBackend(limit ? { limits: { maxStorageBufferBindingSize: limit } } : {});
  const st0 = { ...gpu.stats };
  const got = await step(gpu);
  const { windows, scratch, dispatches } = gpu.stats;
  gpu.destroy();
  let worst = 0, worstName = '';
  for (const [name, w] of want.grads) {
    const g = got.grads.get(name)!;
    let scale = 0;
    for (const v of w) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < w.length; i++) {
      const r = Math.abs(g[i] - w[i]) / (1e-3 * scale + 1e-3 * Math.abs(w[i]));
      if (!(r <= worst)) [worst, worstName] = [r, name];
    }
  }
  const lossRel = Math.abs(got.loss - want.loss) / want.loss, normRel = Math.abs(got.norm - want.norm) / want.norm;
  const ok = lossRel < 1e-4 && worst <= 1;
  const lim = limit ? `${(limit / 2 ** 20).toFixed(0)} MiB` : `adapter (${(gpu.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB)`;
  const line = `| ${lim} | ${got.loss.toFixed(6)} | ${want.loss.toFixed(6)} | ${lossRel.toExponential(1)} | ${got.norm.toFixed(6)} | ${want.norm.toFixed(6)} | ${normRel.toExponential(1)} | ${worst.toFixed(3)} (${worstName}) | ${dispatches - st0.dispatches} | ${windows - st0.windows} / ${scratch - st0.scratch} | ${got.seconds.toFixed(0)} s | ${ok ? 'PASS' : 'FAIL'} |`;
  console.log(line);
  rows.push(line);
}
console.log('\n| binding limit | webgpu loss | cpu loss | rel | webgpu grad norm | cpu grad norm | rel | worst grad / tolerance | dispatches | windows / scratch | webgpu step | parity |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
