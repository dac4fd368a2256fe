// The WebGPU benchmark as a standalone entry for GPU machines without Node.js (packed by
// ../shared/gpu/pack.sh into .gpu/bundle.mjs with Node and Dawn; see bench/RESULTS.md).
//
//   bash ../shared/gpu/pack.sh bench/gpu.ts                # here, once
//   bash .gpu/run.sh "$PWD/gpu-results"                    # on the GPU machine (absolute: run.sh cds into .gpu/)
//
// Writes OUT_DIR/webgpu.json and OUT_DIR/webgpu.md (default ./gpu-results, or $OUT/... when
// $OUT is set by the device runner). Dawn flags: unsafe APIs (unrounded timestamps) and no
// robustness checks (bounds clamping costs a little on every access; the kernels bound-check
// themselves). MINICHAT_BENCH_SIZE=tiny|full overrides the shape set.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
// A static import, so that esbuild bundles the `webgpu` package (its dawn.node stays beside
// the bundle). The backend's own dynamic import is for the unbundled Node path.
import { create, globals } from 'webgpu';
import { markdownTable, runWebGPUBench } from './webgpu.bench.ts';

Object.assign(globalThis, globals);
const outDir = process.argv[2] ?? (process.env.OUT ? join(process.env.OUT, 'webgpu') : './gpu-results');
const flags = ['enable-dawn-features=allow_unsafe_apis,disable_robustness'];
const gpu = create(flags);

try {
  const result = await runWebGPUBench({ gpu: gpu as never, dawnFlags: flags });
  mkdirSync(outDir, { recursive: true });
  const record = { suite: 'webgpu', date: new Date().toISOString(), node: process.version, flags, ...result };
  writeFileSync(join(outDir, 'webgpu.json'), JSON.stringify(record, null, 2) + '\n');
  writeFileSync(join(outDir, 'webgpu.md'), markdownTable(result));
  console.log(`-> ${join(outDir, 'webgpu.json')}, ${join(outDir, 'webgpu.md')}`);
  process.exit(0); // Dawn can keep the event loop alive
} catch (e) {
  console.error(e);
  process.exit(1);
}
