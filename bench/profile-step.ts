// Profile a few training steps of one preset on one backend (measure before optimising):
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bin/run-ts.mjs bench/profile-step.ts [cpu|wasm] [tiny|small] [steps]
// then open the .cpuprofile in Chrome DevTools, or summarise it with `--summary FILE`.
import { readFileSync } from 'node:fs';
import { cpu } from '../src/backend/cpu.ts';
import { initWasmMatmul } from '../src/backend/wasm-matmul.ts';
import { timeTrainStep } from './train.bench.ts';

const args = process.argv.slice(2);
if (args[0] === '--summary') {
  // self time per function name, the top 30
  const prof = JSON.parse(readFileSync(args[1], 'utf8')) as { nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  prof.samples.forEach((id, i) => {
    const n = byId.get(id)!, dt = prof.timeDeltas[i] ?? 0;
    const key = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
} else {
  const [backendName = 'cpu', preset = 'tiny', steps = '5'] = args;
  let backend = cpu as import('../src/backend/backend.ts').Backend;
  if (backendName === 'wasm') {
    const { createWasmBackend } = await import('../src/backend/wasm.ts');
    backend = await createWasmBackend({ threads: 1 });
  } else await initWasmMatmul();
  const [B, Tn] = preset === 'tiny' ? [16, 128] : [4, 256];
  await timeTrainStep(backend, { preset, B, T: Tn, optimizer: (process.env.OPT ?? 'adamw') as 'adamw' | 'muon', warmup: 1, steps: Number(steps) }, async () => {});
}
