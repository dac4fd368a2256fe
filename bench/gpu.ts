// The WebGPU benchmark as a standalone entry for GPU machines without Node.js (packed by
// ../shared/gpu/pack.sh into .gpu/bundle.mjs with Node and Dawn; see bench/RESULTS.md).
// Two sections: per-kernel GFLOP/s and GB/s (webgpu.bench.ts), then training-step tokens/s
// of the `small` and `minimind2` presets at B*T = 8*512 with Muon and with AdamW
// (train.bench.ts; a case that hits a buffer limit is retried at a smaller batch, noted).
//
//   bash ../shared/gpu/pack.sh bench/gpu.ts                # here, once
//   bash .gpu/run.sh "$PWD/gpu-results"                    # on the GPU machine (absolute: run.sh cds into .gpu/)
//
// Writes OUT_DIR/webgpu.json and OUT_DIR/webgpu.md (default ./gpu-results, or $OUT/... when
// $OUT is set by the device runner). Dawn flags: unsafe APIs (unrounded timestamps) and no
// robustness checks (bounds clamping costs a little on every access; the kernels bound-check
// themselves). MINICHAT_BENCH_SIZE=tiny|full overrides the shape set (tiny is chosen on
// SwiftShader: the micro model for training). MINICHAT_BENCH_SKIP=kernels or =train skips
// a section. The training rows are `train.rows` in webgpu.json (torch_bench.py reads them).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
// A static import, so that esbuild bundles the `webgpu` package (its dawn.node stays beside
// the bundle). The backend's own dynamic import is for the unbundled Node path.
import { create, globals } from 'webgpu';
import { gpuTrainCases, runWebGPUTrainCases, trainMarkdown } from './train.bench.ts';
import { type WebGPUBenchResult, markdownTable, runWebGPUBench } from './webgpu.bench.ts';

Object.assign(globalThis, globals);
const outDir = process.argv[2] ?? (process.env.OUT ? join(process.env.OUT, 'webgpu') : './gpu-results');
const flags = ['enable-dawn-features=allow_unsafe_apis,disable_robustness'];
const gpu = create(flags);

const skip = process.env.MINICHAT_BENCH_SKIP ?? '';
const envSize = process.env.MINICHAT_BENCH_SIZE;

try {
  mkdirSync(outDir, { recursive: true });
  const record: Record<string, unknown> = { suite: 'webgpu', date: new Date().toISOString(), node: process.version, flags };
  const md: string[] = [];
  const save = () => {
    writeFileSync(join(outDir, 'webgpu.json'), JSON.stringify(record, null, 2) + '\n');
    writeFileSync(join(outDir, 'webgpu.md'), md.join('\n'));
  };
  let size: 'tiny' | 'full' | undefined = envSize === 'tiny' || envSize === 'full' ? envSize : undefined;
  if (skip !== 'kernels') {
    const result: WebGPUBenchResult = await runWebGPUBench({ gpu: gpu as never, dawnFlags: flags });
    Object.assign(record, result);
    md.push(markdownTable(result));
    size ??= result.size;
    save(); // the kernel numbers are kept even if the training section fails
  }
  if (skip !== 'train') {
    // The adapter decides the size when the kernel section did not (SwiftShader: tiny).
    if (!size) {
      const adapter = await (gpu as unknown as { requestAdapter(): Promise<{ info?: Record<string, string> } | null> }).requestAdapter();
      const i = adapter?.info ?? {};
      size = /swiftshader/i.test(`${i.architecture} ${i.description} ${i.device}`) ? 'tiny' : 'full';
      record.adapter ??= { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description };
    }
    console.log(`\n== training step (${size === 'tiny' ? 'micro model: SwiftShader or MINICHAT_BENCH_SIZE=tiny' : 'small, minimind2 at B*T = 8*512'})`);
    const t0 = performance.now();
    const train = await runWebGPUTrainCases({ gpu: gpu as never, dawnFlags: flags }, gpuTrainCases(size));
    record.train = { size, seconds: (performance.now() - t0) / 1000, ...train };
    md.push(trainMarkdown(train.rows, `training step on WebGPU (Dawn); size: ${size}`) +
      (train.errors.length ? '\nerrors:\n' + train.errors.map((e) => `- ${e}`).join('\n') + '\n' : ''));
    save();
  }
  console.log(md.at(-1) ?? '');
  console.log(`-> ${join(outDir, 'webgpu.json')}, ${join(outDir, 'webgpu.md')}`);
  process.exit(0); // Dawn can keep the event loop alive
} catch (e) {
  console.error(e);
  process.exit(1);
}
