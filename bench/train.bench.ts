// Training-step throughput (`npm run bench -- train`, and the training section of bench/gpu.ts):
// tokens/s of one full optimizer step — forward, backward, gradient clipping, the optimizer
// update — exactly as training runs it (src/train/trainer.ts `Trainer.trainStep()`), per
// preset and optimizer ('muon': Muon for hidden matrices + AdamW for the rest; 'adamw': AdamW
// for everything), with the run spec's defaults for lr, weight decay and grad clip.
//
// Timing: wall clock around `trainStep()` followed by `backend.sync()` (on the GPU the
// optimizer's dispatches are still in flight when trainStep returns; the loss read inside it
// already waited for forward and backward). This is what a training run sees, host overhead
// and the per-step loss read included. Warm-up steps (pipeline compilation, buffer pool, the
// optimizer's state allocation) are not timed; the median of the timed steps is reported.
// A case stops early once it has spent `maxSeconds` (at least `minSteps` timed steps).
//
// Data: random token ids (throughput does not depend on the values).
//
// This suite (`npm run bench -- train`, CPU machine): CPU training side by side — the `cpu`
// reference (with the WASM SIMD matmul), the `wasm` backend at 1 and N threads (N = the core
// count) and, when a python3 with torch is found, PyTorch on the CPU (the same model in
// bench/torch_bench.py, eager fp32) at 1 and N threads — for tiny at B=16, T=128 and small at
// B=4, T=256, AdamW and Muon. Each case runs all of them back to back, so a loaded machine
// slows them alike and the ratios stay fair. Then WebGPU when an adapter exists:
// on SwiftShader (a CPU Vulkan driver) only a micro model, since it runs ~1 GFLOP/s at best;
// on a real GPU the small preset at B=8, T=512. bench/gpu.ts runs the GPU configurations.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { createWasmBackend } from '../src/backend/wasm.ts';
import { initWasmMatmul } from '../src/backend/wasm-matmul.ts';
import { type WebGPUBackend, type WebGPUOptions, createWebGPUBackend } from '../src/backend/webgpu.ts';
import { GPT, type GPTConfig, presetConfig } from '../src/model/gpt.ts';
import { buildOptimizer } from '../src/optim/index.ts';
import * as T from '../src/tensor/index.ts';
import { BatchLoader } from '../src/data/loader.ts';
import { Trainer, languageModelLoss } from '../src/train/trainer.ts';
import { SPEC_DEFAULTS } from '../src/train/spec.ts';

export type OptimizerKind = 'muon' | 'adamw';

/** One configuration to time. */
export interface TrainCase {
  preset: string; // a key of PRESETS
  label?: string; // shown instead of the preset name (e.g. 'micro' for a shrunken tiny)
  overrides?: Partial<GPTConfig>;
  B: number;
  T: number;
  optimizer: OptimizerKind;
  warmup: number; // untimed steps
  steps: number; // timed steps (at most)
  minSteps?: number; // timed steps kept even past maxSeconds (default 2)
  maxSeconds?: number; // stop timing after this many seconds (default: no limit)
}

/** One measured configuration (the JSON row; torch_bench.py reads these fields). */
export interface TrainRow {
  backend: string; // 'cpu' | 'webgpu'
  preset: string;
  optimizer: OptimizerKind;
  B: number;
  T: number;
  params: number;
  steps: number; // timed steps
  ms: number; // median ms per step
  msMin: number;
  tokensPerSec: number; // B*T / median step time
  loss: number; // loss of the last step (sanity: ~ln V at the start)
  note?: string; // e.g. a batch fallback
  threads?: number; // CPU threads (wasm, torch)
  coretype?: string; // torch: OPENBLAS_CORETYPE forced for this row (absent = the environment's)
}

/** The run spec's optimizer defaults (src/train/spec.ts), not restated here. */
export const PRETRAIN_DEFAULTS = { lr: SPEC_DEFAULTS.lr, weightDecay: SPEC_DEFAULTS.weightDecay, gradClip: SPEC_DEFAULTS.gradClip } as const;

/** A micro model for SwiftShader (the kernel bench's tiny dims): ~0.1M parameters. */
export const MICRO: Partial<GPTConfig> = { vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 16, intermediateSize: 128, maxSeqLen: 64 };

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Time one case on one backend. `sync` waits for the device (a no-op on the CPU). */
export async function timeTrainStep(backend: Backend, c: TrainCase, sync: () => Promise<void>, log: (s: string) => void = console.log): Promise<TrainRow> {
  T.setDefaultBackend(backend);
  const config = presetConfig(c.preset, { ...c.overrides, maxSeqLen: Math.max(c.T, c.overrides?.maxSeqLen ?? 0, presetConfig(c.preset).maxSeqLen) });
  const model = new GPT(config, new T.Rng(0), backend);
  const opt = buildOptimizer(model.trainableParams(), { kind: c.optimizer, lr: PRETRAIN_DEFAULTS.lr, weightDecay: PRETRAIN_DEFAULTS.weightDecay });
  const rng = new T.Rng(1);
  const tokens = Uint16Array.from({ length: c.B * c.T * 4 + 1 }, () => rng.int(config.vocabSize));
  const loader = new BatchLoader(tokens, c.B, c.T, 2);
  const schedule = { lr: PRETRAIN_DEFAULTS.lr, warmupSteps: 0, totalSteps: 1_000_000, warmdownFraction: 0, finalFraction: 1 };
  const groups = opt.paramGroups.map((g) => ({ ...g, schedule }));
  const trainer = new Trainer(model, groups, loader, { gradAccum: 1, gradClip: PRETRAIN_DEFAULTS.gradClip });
  const name = c.label ?? c.preset;
  try {
    let loss = NaN;
    for (let i = 0; i < c.warmup; i++) {
      loss = (await trainer.trainStep(languageModelLoss)).loss;
      await sync();
    }
    const times: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < c.steps; i++) {
      const s0 = performance.now();
      loss = (await trainer.trainStep(languageModelLoss)).loss;
      await sync();
      times.push(performance.now() - s0);
      if (c.maxSeconds !== undefined && times.length >= (c.minSteps ?? 2) && (performance.now() - t0) / 1000 > c.maxSeconds) break;
    }
    const ms = median(times);
    const row: TrainRow = {
      backend: backend.name, preset: name, optimizer: c.optimizer, B: c.B, T: c.T, params: model.numParams(),
      steps: times.length, ms, msMin: Math.min(...times), tokensPerSec: (c.B * c.T) / (ms / 1000), loss,
    };
    log(`${row.backend.padEnd(6)} ${name.padEnd(10)} ${c.optimizer.padEnd(5)} B${c.B} T${c.T} ${(row.params / 1e6).toFixed(2)}M params: ` +
      `${ms.toFixed(1)} ms/step (median of ${times.length}), ${row.tokensPerSec.toFixed(0)} tok/s, loss ${loss.toFixed(3)}`);
    return row;
  } finally {
    T.noGrad(() => {
      for (const t of Object.values(opt.stateDict())) t.dispose();
    });
    model.dispose();
  }
}

/** Does this error mean "too big for this device" (a buffer limit or out of memory)? */
export function isSizeError(e: unknown): boolean {
  return /maxStorageBufferBindingSize|maxBufferSize|out of memory|OutOfMemory|allocation/i.test(String((e as Error)?.message ?? e));
}

/**
 * Time each case on WebGPU. A case that hits a buffer limit (or runs out of memory) is
 * retried at half the batch, down to B=1, on a fresh device (the old one may be unusable),
 * and the row says so in `note`. Other errors are reported as a row-less note and skipped.
 */
export async function runWebGPUTrainCases(
  opts: WebGPUOptions, cases: TrainCase[], log: (s: string) => void = console.log,
): Promise<{ rows: TrainRow[]; errors: string[] }> {
  const rows: TrainRow[] = [], errors: string[] = [];
  let g: WebGPUBackend | null = null;
  try {
    for (const c0 of cases) {
      let c = c0, note: string | undefined;
      for (;;) {
        g ??= await createWebGPUBackend(opts);
        const dev = g;
        try {
          const row = await timeTrainStep(dev, c, () => dev.sync(), log);
          if (note) row.note = note;
          rows.push(row);
          break;
        } catch (e) {
          const msg = String((e as Error)?.message ?? e).split('\n')[0];
          T.setDefaultBackend(cpu);
          dev.destroy();
          g = null;
          if (isSizeError(e) && c.B > 1) {
            note = `B=${c0.B} did not fit (${msg}); fell back to B=${c.B >> 1}`;
            log(`${c.label ?? c.preset} ${c.optimizer} B${c.B}: ${msg}; retrying at B=${c.B >> 1}`);
            c = { ...c, B: c.B >> 1 };
            continue;
          }
          const err = `${c.label ?? c.preset} ${c.optimizer} B${c.B} T${c.T}: ${msg}`;
          log(`FAILED ${err}`);
          errors.push(err);
          break;
        }
      }
    }
  } finally {
    T.setDefaultBackend(cpu);
    (g as WebGPUBackend | null)?.destroy();
  }
  return { rows, errors };
}

/** The training cases bench/gpu.ts runs on a GPU: small and minimind2 at B*T = 8*512. */
export function gpuTrainCases(size: 'tiny' | 'full'): TrainCase[] {
  const out: TrainCase[] = [];
  for (const optimizer of ['muon', 'adamw'] as const) {
    if (size === 'tiny') out.push({ preset: 'tiny', label: 'micro', overrides: MICRO, B: 2, T: 32, optimizer, warmup: 1, steps: 3 });
    else {
      for (const preset of ['small', 'minimind2']) out.push({ preset, B: 8, T: 512, optimizer, warmup: 3, steps: 10, minSteps: 3, maxSeconds: 40 });
    }
  }
  return out.sort((a, b) => (a.label ?? a.preset).localeCompare(b.label ?? b.preset) || a.optimizer.localeCompare(b.optimizer));
}

const here = dirname(fileURLToPath(import.meta.url));

/** The CPU's feature flags (Linux: /proc/cpuinfo; elsewhere none are known). */
function cpuFlags(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

/** A python3 that can import torch: $MINICHAT_PYTHON, python3 on the PATH, or /usr/bin/python3 (Debian's python3-torch). */
function findTorchPython(): string | null {
  for (const py of [process.env.MINICHAT_PYTHON, 'python3', '/usr/bin/python3']) {
    if (!py) continue;
    try {
      execFileSync(py, ['-c', 'import torch'], { stdio: 'ignore' });
      return py;
    } catch {
      // not this one
    }
  }
  return null;
}

/** The CPU comparison: tokens/s per backend and thread count, and wasm's best over torch's best. */
export function cpuVsTorchMarkdown(rows: TrainRow[], N: number, blas: string): string {
  const key = (r: TrainRow) => `${r.preset} ${r.optimizer}`;
  const cases = [...new Set(rows.map(key))];
  const cols: [string, (r: TrainRow) => boolean][] = [
    ['cpu', (r) => r.backend === 'cpu'],
    ['wasm ×1', (r) => r.backend === 'wasm' && r.threads === 1],
    [`wasm ×${N}`, (r) => r.backend === 'wasm' && r.threads === N && N > 1],
    ['torch ×1', (r) => r.backend === 'torch' && r.threads === 1 && !r.coretype],
    [`torch ×${N}`, (r) => r.backend === 'torch' && r.threads === N && N > 1 && !r.coretype],
  ];
  // OpenBLAS forced to its AVX-512 kernels (OPENBLAS_CORETYPE=SkylakeX), when those rows exist
  if (rows.some((r) => r.coretype === 'SkylakeX')) {
    cols.push(['torch ×1 AVX-512', (r) => r.backend === 'torch' && r.threads === 1 && r.coretype === 'SkylakeX']);
    if (N > 1) cols.push([`torch ×${N} AVX-512`, (r) => r.backend === 'torch' && r.threads === N && r.coretype === 'SkylakeX']);
  }
  const lines = [
    `tokens/s of one training step (median), ${blas || 'no torch'}; ×n = threads`,
    '',
    `| preset | optimizer | B×T | ${cols.map((c) => c[0]).join(' | ')} | wasm best / torch best |`,
    `|---|---|---|${cols.map(() => '---:').join('|')}|---:|`,
  ];
  for (const k of cases) {
    const rs = rows.filter((r) => key(r) === k);
    const cell = (f: (r: TrainRow) => boolean) => rs.find(f)?.tokensPerSec;
    const best = (b: string) => Math.max(0, ...rs.filter((r) => r.backend === b).map((r) => r.tokensPerSec));
    const ratio = best('torch') > 0 ? (best('wasm') / best('torch')).toFixed(2) : '—';
    lines.push(`| ${rs[0].preset} | ${rs[0].optimizer} | ${rs[0].B}×${rs[0].T} | ${cols.map(([, f]) => (cell(f) === undefined ? '—' : cell(f)!.toFixed(0))).join(' | ')} | ${ratio} |`);
  }
  return lines.join('\n') + '\n';
}

/** A markdown table of training rows. */
export function trainMarkdown(rows: TrainRow[], header = ''): string {
  const lines = [
    ...(header ? [header, ''] : []),
    '| backend | preset | optimizer | B×T | params | ms/step (median) | tokens/s | steps | note |',
    '|---|---|---|---|---:|---:|---:|---:|---|',
    ...rows.map((r) => `| ${r.backend} | ${r.preset} | ${r.optimizer} | ${r.B}×${r.T} | ${(r.params / 1e6).toFixed(2)}M | ${r.ms.toFixed(1)} | ${r.tokensPerSec.toFixed(0)} | ${r.steps} | ${r.note ?? ''} |`),
  ];
  return lines.join('\n') + '\n';
}

export default {
  name: 'train',
  async run(): Promise<Record<string, unknown>> {
    const wasm = await initWasmMatmul();
    console.log(`cpu: WASM SIMD matmul ${wasm ? 'on' : 'unavailable (JS kernel)'}`);
    const N = availableParallelism();
    const wasmBackends = [await createWasmBackend({ threads: 1 })];
    if (N > 1) wasmBackends.push(await createWasmBackend({ threads: N }));
    const python = findTorchPython();
    console.log(python ? `torch: ${python}` : 'torch: no python3 with torch found (set MINICHAT_PYTHON); PyTorch columns skipped');
    // OpenBLAS picks its kernels from the CPU unless OPENBLAS_CORETYPE says otherwise (some
    // environments pin AVX2 'Haswell'). On an AVX-512 CPU torch also runs with the AVX-512
    // kernels, after checking that their sgemm agrees with float64 — so torch is at its best.
    const coretypes: (string | undefined)[] = [undefined];
    if (python && /\bavx512f\b/.test(cpuFlags())) {
      try {
        const check = execFileSync(python, ['-c', 'import torch; torch.manual_seed(0); a=torch.randn(512,384); b=torch.randn(384,1024); e=(a@b).double()-(a.double()@b.double()); print(float(e.abs().max()/(a.double()@b.double()).abs().max()))'], {
          encoding: 'utf8', env: { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX', OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' },
        });
        const rel = Number(check.trim());
        console.log(`torch with OPENBLAS_CORETYPE=SkylakeX: sgemm vs float64, max error / max |C| = ${rel.toExponential(2)} (environment's OPENBLAS_CORETYPE: ${process.env.OPENBLAS_CORETYPE ?? 'unset'})`);
        if (rel < 1e-5) coretypes.push('SkylakeX');
        else console.log('  -> above 1e-5: the AVX-512 columns are skipped');
      } catch (e) {
        console.log(`torch with OPENBLAS_CORETYPE=SkylakeX: check failed (${String((e as Error).message).split('\n')[0]}); skipped`);
      }
    }
    const rows: TrainRow[] = [], torchRows: TrainRow[] = [];
    let blas = '';
    const cpuCases: TrainCase[] = [];
    for (const preset of ['tiny', 'small']) {
      for (const optimizer of ['adamw', 'muon'] as const) {
        const [B, Tn] = preset === 'tiny' ? [16, 128] : [4, 256];
        cpuCases.push({ preset, B, T: Tn, optimizer, warmup: 1, steps: 5, minSteps: 2, maxSeconds: 8 });
      }
    }
    for (const c of cpuCases) {
      rows.push(await timeTrainStep(cpu, { ...c, steps: 2, maxSeconds: 4 }, async () => {})); // the reference is slow: fewer steps
      for (const w of wasmBackends) rows.push({ ...(await timeTrainStep(w, c, async () => {})), threads: w.threads });
      if (python) {
        // one process per thread count, with the BLAS and OpenMP pools sized to match:
        // torch.set_num_threads alone leaves OpenBLAS's own pthread pool at the core count
        for (const coretype of coretypes) for (const n of N > 1 ? [1, N] : [1]) {
          try {
            const nt = String(n);
            const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: nt, OPENBLAS_NUM_THREADS: nt, MKL_NUM_THREADS: nt };
            if (coretype) env.OPENBLAS_CORETYPE = coretype;
            const out = execFileSync(python, [join(here, 'torch_bench.py'), '--cpu-train', `${c.preset}:${c.B}:${c.T}:${c.optimizer}`, '--threads', nt, '--steps', '5', '--warmup', '1'], {
              encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env,
            });
            const line = out.split('\n').find((l) => l.startsWith('TORCH_JSON '));
            const r = JSON.parse(line!.slice('TORCH_JSON '.length)) as { torch: string; blas: string; rows: { ms: number; ms_min: number; tokens_per_sec: number; steps: number; params: number; loss_last: number; threads: number }[] };
            blas = `torch ${r.torch}, BLAS ${r.blas}`;
            for (const t of r.rows) {
              const row: TrainRow = { backend: 'torch', preset: c.preset, optimizer: c.optimizer, B: c.B, T: c.T, params: t.params, steps: t.steps, ms: t.ms, msMin: t.ms_min, tokensPerSec: t.tokens_per_sec, loss: t.loss_last, threads: t.threads, ...(coretype ? { coretype } : {}) };
              console.log(`torch${coretype ? ` (${coretype})` : ''}  ${c.preset.padEnd(10)} ${c.optimizer.padEnd(5)} B${c.B} T${c.T} ${t.threads} thread(s): ${t.ms.toFixed(1)} ms/step, ${t.tokens_per_sec.toFixed(0)} tok/s`);
              torchRows.push(row);
            }
          } catch (e) {
            console.log(`torch ${c.preset} ${c.optimizer} ${n} thread(s): failed (${String((e as Error).message).split('\n')[0]})`);
          }
        }
      }
    }
    for (const w of wasmBackends) w.destroy();
    T.setDefaultBackend(cpu);
    const table = cpuVsTorchMarkdown([...rows, ...torchRows], N, blas);
    console.log('\n' + table);

    // WebGPU, when there is an adapter: probe once, pick the cases by what the adapter is.
    let webgpu: Record<string, unknown> = { skipped: true };
    try {
      const probe = await createWebGPUBackend();
      const info = probe.adapterInfo;
      probe.destroy();
      const swiftshader = /swiftshader/i.test(`${info.architecture} ${info.description} ${info.device}`);
      const cases: TrainCase[] = (['muon', 'adamw'] as const).map((optimizer) =>
        swiftshader
          ? { preset: 'tiny', label: 'micro', overrides: MICRO, B: 2, T: 32, optimizer, warmup: 1, steps: 3 }
          : { preset: 'small', B: 8, T: 512, optimizer, warmup: 2, steps: 5, maxSeconds: 20 });
      const r = await runWebGPUTrainCases({}, cases);
      rows.push(...r.rows);
      webgpu = { adapter: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description }, swiftshader, errors: r.errors };
    } catch (e) {
      console.log(`webgpu: skipped (${String((e as Error).message).split('\n')[0]})`);
      webgpu = { skipped: true, reason: String((e as Error).message) };
    }
    T.setDefaultBackend(cpu);
    return { defaults: PRETRAIN_DEFAULTS, threads: N, torch: blas || null, cpuTable: table, webgpu, rows: [...rows, ...torchRows] };
  },
};
