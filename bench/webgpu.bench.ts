// WebGPU kernel benchmark (`npm run bench -- webgpu`, or bench/gpu.ts on a GPU machine):
// GFLOP/s for matmul and attention, GB/s for the memory-bound kernels, at the shapes a
// training step of the `small` and `minimind2` presets uses (src/model/gpt.ts PRESETS),
// with B*T = 8*512 = 4096 tokens.
//
// Timing: GPU timestamps around one compute pass of `reps` back-to-back dispatches when the
// device has the timestamp-query feature; otherwise wall-clock from the first dispatch to the
// end of `await sync()` (a fence: the GPU has finished), which includes one submit and one
// round trip, so it under-reports short kernels. Each kernel is run once before timing
// (pipeline compilation, buffer pool warm-up). The best of 3 trials is kept.
//
// On SwiftShader (a CPU Vulkan driver, no GPU) the full shapes would take hours: the
// adapter is detected and tiny shapes are used instead (or set MINICHAT_BENCH_SIZE=tiny|full).
import type { MatmulParams, Storage } from '../src/backend/backend.ts';
import type { AttentionShape } from '../src/backend/fused.ts';
import { type WebGPUBackend, type WebGPUOptions, createWebGPUBackend } from '../src/backend/webgpu.ts';
import { Rng } from '../src/tensor/random.ts';

export interface BenchRow {
  kernel: string;
  shape: string;
  ms: number; // per call
  gflops?: number;
  gbps?: number;
}

export interface WebGPUBenchResult {
  adapter: Record<string, string | undefined>;
  limits: Record<string, number>;
  size: 'tiny' | 'full';
  timing: 'timestamp' | 'wall';
  rows: BenchRow[];
}

/** Model dimensions a benchmark row is derived from (a subset of GPTConfig). */
interface Dims {
  name: string;
  C: number; // hidden
  F: number; // MLP intermediate
  V: number; // vocab
  NH: number;
  NKV: number;
  HS: number;
  B: number;
  T: number;
}

// From src/model/gpt.ts PRESETS (copied, not imported: the GPU bundle should not depend on
// the model code; a test of the presets is the model's business).
const FULL: Dims[] = [
  { name: 'small', C: 384, F: 1024, V: 4096, NH: 6, NKV: 2, HS: 64, B: 8, T: 512 },
  { name: 'minimind2', C: 768, F: 2048, V: 6400, NH: 8, NKV: 2, HS: 96, B: 8, T: 512 },
];
const TINY: Dims[] = [{ name: 'tiny', C: 64, F: 128, V: 256, NH: 4, NKV: 2, HS: 16, B: 2, T: 32 }];

/** [label, M, K, N, transA, transB] for the matmuls of one training step's linear layers. */
export function matmulShapes(d: Dims): [string, number, number, number, boolean, boolean][] {
  const N = d.B * d.T, qkv = (d.NH + 2 * d.NKV) * d.HS;
  return [
    [`${d.name} qkv proj`, N, d.C, qkv, false, false],
    [`${d.name} attn out proj`, N, d.NH * d.HS, d.C, false, false],
    [`${d.name} mlp up`, N, d.C, d.F, false, false],
    [`${d.name} mlp down`, N, d.F, d.C, false, false],
    [`${d.name} lm head`, N, d.C, d.V, false, false],
    [`${d.name} lm head dX (dY Wᵀ)`, N, d.V, d.C, false, true],
    [`${d.name} mlp up dW (Xᵀ dY)`, d.C, N, d.F, true, false],
  ];
}

export function benchDims(size: 'tiny' | 'full'): Dims[] {
  return size === 'tiny' ? TINY : FULL;
}

/** Seconds per call of `call` (which returns storages to free), best of `trials`. */
async function timeKernel(g: WebGPUBackend, call: () => Storage[], reps: number, trials = 3): Promise<number> {
  const free = (ss: Storage[]) => ss.forEach((s) => g.free(s));
  free(call()); // warm-up: compile the pipeline, fill the buffer pool
  await g.sync();
  let best = Infinity;
  for (let t = 0; t < trials; t++) {
    let seconds: number | null = null;
    if (g.hasTimestamps) {
      seconds = await g.timeGpu(() => {
        for (let r = 0; r < reps; r++) free(call());
      });
    }
    if (seconds === null) {
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) free(call());
      await g.sync();
      seconds = (performance.now() - t0) / 1000;
    }
    best = Math.min(best, seconds / reps);
  }
  return best;
}

export async function runWebGPUBench(opts: WebGPUOptions & { size?: 'tiny' | 'full'; log?: (s: string) => void } = {}): Promise<WebGPUBenchResult> {
  const log = opts.log ?? console.log;
  const g = await createWebGPUBackend({ ...opts, timestamps: true });
  try {
    const info = g.adapterInfo;
    const adapter = { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description };
    log(`adapter: ${JSON.stringify(adapter)}`);
    log(`limits: maxBufferSize ${g.limits.maxBufferSize}, maxStorageBufferBindingSize ${g.limits.maxStorageBufferBindingSize}, maxComputeWorkgroupStorageSize ${g.limits.maxComputeWorkgroupStorageSize}, timestamps ${g.hasTimestamps}`);
    const envSize = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.MINICHAT_BENCH_SIZE;
    const swiftshader = /swiftshader/i.test(`${info.architecture} ${info.description} ${info.device}`);
    const size = opts.size ?? (envSize === 'tiny' || envSize === 'full' ? envSize : swiftshader ? 'tiny' : 'full');
    const reps = size === 'tiny' ? 3 : 20;
    log(`size: ${size}${swiftshader ? ' (SwiftShader: CPU emulation, numbers say nothing about a GPU)' : ''}`);
    const rng = new Rng(0);
    const rows: BenchRow[] = [];
    const report = (r: BenchRow) => {
      rows.push(r);
      const rate = r.gflops !== undefined ? `${r.gflops.toFixed(1)} GFLOP/s` : `${r.gbps!.toFixed(1)} GB/s`;
      log(`${r.kernel.padEnd(10)} ${r.shape.padEnd(44)} ${r.ms.toFixed(3).padStart(9)} ms  ${rate}`);
    };
    const rand = (n: number) => g.upload(rng.normalArray(n), 'float32');

    for (const d of benchDims(size)) {
      // ---- matmul ----
      for (const [label, M, K, N, transA, transB] of matmulShapes(d)) {
        const a = rand(M * K), b = rand(K * N);
        const p: MatmulParams = { batchA: [], batchB: [], batch: [], M, K, N, transA, transB };
        const s = await timeKernel(g, () => [g.matmul(a, b, p)], reps);
        report({ kernel: 'matmul', shape: `${label} (${M},${K},${N})${transA ? ' tA' : ''}${transB ? ' tB' : ''}`, ms: s * 1e3, gflops: (2 * M * K * N) / s / 1e9 });
        g.free(a);
        g.free(b);
      }
      // ---- memory-bound kernels on one (tokens, hidden) activation ----
      const n = d.B * d.T * d.C;
      const x = rand(n), y = rand(n);
      const shape = [d.B * d.T, d.C];
      let s = await timeKernel(g, () => [g.binary('add', x, shape, y, shape, shape)], reps);
      report({ kernel: 'add', shape: `${d.name} (${shape})`, ms: s * 1e3, gbps: (3 * n * 4) / s / 1e9 });
      s = await timeKernel(g, () => [g.binary('mul', x, shape, y, [1, d.C], shape)], reps);
      report({ kernel: 'mul bcast', shape: `${d.name} (${shape}) * (1,${d.C})`, ms: s * 1e3, gbps: (2 * n * 4) / s / 1e9 });
      s = await timeKernel(g, () => [g.unary('exp', x, 0)], reps);
      report({ kernel: 'exp', shape: `${d.name} (${shape})`, ms: s * 1e3, gbps: (2 * n * 4) / s / 1e9 });
      s = await timeKernel(g, () => [g.reduce('sum', x, shape, 1)], reps);
      report({ kernel: 'sum rows', shape: `${d.name} (${shape}) axis 1`, ms: s * 1e3, gbps: (n * 4) / s / 1e9 });
      s = await timeKernel(g, () => [g.reduce('sum', x, shape, 0)], reps);
      report({ kernel: 'sum cols', shape: `${d.name} (${shape}) axis 0`, ms: s * 1e3, gbps: (n * 4) / s / 1e9 });
      s = await timeKernel(g, () => { const r = g.rmsnormForward(x, null, shape[0], d.C, 1e-6); return [r.y, r.rstd]; }, reps);
      report({ kernel: 'rmsnorm', shape: `${d.name} (${shape})`, ms: s * 1e3, gbps: (2 * n * 4) / s / 1e9 });
      g.free(x);
      g.free(y);
      // ---- cross-entropy on the logits ----
      const NV = d.B * d.T * d.V;
      const logits = rand(NV), targets = g.upload(Array.from({ length: d.B * d.T }, () => rng.int(d.V)), 'int32');
      s = await timeKernel(g, () => { const r = g.crossEntropyForward(logits, targets, d.B * d.T, d.V); return [r.loss, r.lse]; }, reps);
      report({ kernel: 'xent fwd', shape: `${d.name} (${d.B * d.T},${d.V})`, ms: s * 1e3, gbps: (2 * NV * 4) / s / 1e9 });
      g.free(logits);
      g.free(targets);
      // ---- attention (causal: half the score matrix) ----
      const at: AttentionShape = { B: d.B, NH: d.NH, NKV: d.NKV, T: d.T, S: d.T, HS: d.HS, causal: true };
      const q = rand(d.B * d.NH * d.T * d.HS), k = rand(d.B * d.NKV * d.T * d.HS), v = rand(d.B * d.NKV * d.T * d.HS);
      const flops = (4 * d.B * d.NH * d.T * d.T * d.HS) / 2; // q kᵀ and p v, causal half
      s = await timeKernel(g, () => { const r = g.attentionForward(q, k, v, at); return [r.out, r.lse]; }, Math.max(1, reps / 4));
      report({ kernel: 'attn fwd', shape: `${d.name} B${d.B} NH${d.NH} NKV${d.NKV} T${d.T} HS${d.HS}`, ms: s * 1e3, gflops: flops / s / 1e9 });
      [q, k, v].forEach((t) => g.free(t));
    }
    return { adapter, limits: { ...pick(g.limits) }, size, timing: g.hasTimestamps ? 'timestamp' : 'wall', rows };
  } finally {
    g.destroy();
  }
}

function pick(l: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup']) out[k] = l[k];
  return out;
}

/** A markdown table of the rows. */
export function markdownTable(r: WebGPUBenchResult): string {
  const lines = [
    `adapter: ${[r.adapter.vendor, r.adapter.architecture, r.adapter.device, r.adapter.description].filter(Boolean).join(' / ')}; timing: ${r.timing}; size: ${r.size}`,
    '',
    '| kernel | shape | ms | GFLOP/s | GB/s |',
    '|---|---|---:|---:|---:|',
    ...r.rows.map((x) => `| ${x.kernel} | ${x.shape} | ${x.ms.toFixed(3)} | ${x.gflops?.toFixed(1) ?? ''} | ${x.gbps?.toFixed(1) ?? ''} |`),
  ];
  return lines.join('\n') + '\n';
}

export default {
  name: 'webgpu',
  async run(): Promise<Record<string, unknown>> {
    const r = await runWebGPUBench();
    return r as unknown as Record<string, unknown>;
  },
};
