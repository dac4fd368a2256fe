// `npm run bench [-- SUITE...]`: run benchmark suites and write one JSON file per suite to
// bench/results/<suite>.json (git-ignored), printing a short summary.
//
// A suite is a file bench/<name>.bench.ts whose default export is
//   { name: string, run(): Promise<Record<string, unknown>> }.
// Speed is measured here, never in tests.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import os from 'node:os';
import { enableRelaxedSimd } from '../src/backend/wasm-simd.ts';

// as bin/minichat.mjs does: the suites measure what users run (the relaxed-SIMD matmul where
// this Node has it, behind a flag on Node 20)
await enableRelaxedSimd();

export interface BenchSuite {
  name: string;
  run(): Promise<Record<string, unknown>>;
}

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here).filter((f) => f.endsWith('.bench.ts')).sort();
const outDir = join(here, 'results');
mkdirSync(outDir, { recursive: true });

for (const f of files) {
  const suite = (await import(pathToFileURL(join(here, f)).href)).default as BenchSuite;
  if (wanted.length && !wanted.includes(suite.name)) continue;
  console.log(`== ${suite.name}`);
  const t0 = performance.now();
  const results = await suite.run();
  const record = {
    suite: suite.name,
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
    seconds: (performance.now() - t0) / 1000,
    results,
  };
  const path = join(outDir, `${suite.name}.json`);
  writeFileSync(path, JSON.stringify(record, null, 2) + '\n');
  console.log(JSON.stringify(results, null, 2));
  console.log(`-> ${path}`);
}
