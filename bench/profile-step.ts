// Profile a few training steps of one preset on one backend (measure before optimising).
//
//   node bin/run-ts.mjs bench/profile-step.ts --ops [cpu|wasm] [tiny|small] [steps]
//       the op-by-op table: every Backend method call timed (self time: a method called from
//       inside another, e.g. an allocation in a fallback loop, counts for itself only),
//       grouped by method and, for unary/binary/reduce, by op, with calls, ms/step and share
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bin/run-ts.mjs bench/profile-step.ts [cpu|wasm] [tiny|small] [steps]
//       then open the .cpuprofile in Chrome DevTools, or summarise it with `--summary FILE`.
// OPT=muon switches the optimizer (default adamw). The wasm backend runs with THREADS (default
// 1) and the matmul build the CLI would pick (relaxed where this Node has it).
import { readFileSync } from 'node:fs';
import type { Backend } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { initWasmMatmul } from '../src/backend/wasm-matmul.ts';
import { enableRelaxedSimd } from '../src/backend/wasm-simd.ts';
import { KERNEL_NAMES } from '../src/backend/wasm.ts';
import { timeTrainStep } from './train.bench.ts';

/**
 * Wrap every method of `b` (own and inherited) in a timer. Returns the table's data: per key
 * (method, or method:op) the calls and self milliseconds. Time spent inside a nested
 * backend call is subtracted from its caller, so the column sums to the time in the backend.
 */
function instrument(b: Backend): Map<string, { calls: number; ms: number }> {
  const table = new Map<string, { calls: number; ms: number }>();
  const stack: number[] = []; // child time accumulated per open call
  const names = new Set<string>();
  for (let p = Object.getPrototypeOf(b); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const n of Object.getOwnPropertyNames(p)) if (n !== 'constructor' && typeof (b as unknown as Record<string, unknown>)[n] === 'function') names.add(n);
  }
  const rec = b as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const n of names) {
    const f = rec[n];
    rec[n] = function (this: unknown, ...args: unknown[]) {
      // by op for the elementwise methods, by kernel for the wasm backend's runKernel (matmul and attention)
      const opKey = (n === 'unary' || n === 'binary' || n === 'reduce') && typeof args[0] === 'string' ? `${n}:${args[0]}`
        : n === 'runKernel' ? `kernel ${KERNEL_NAMES[args[0] as number] ?? args[0]}` : n;
      stack.push(0);
      const t0 = performance.now();
      try {
        return f.apply(this, args);
      } finally {
        const dt = performance.now() - t0, child = stack.pop()!;
        if (stack.length) stack[stack.length - 1] += dt;
        const e = table.get(opKey) ?? { calls: 0, ms: 0 };
        e.calls++;
        e.ms += dt - child;
        table.set(opKey, e);
      }
    };
  }
  return table;
}

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
  const ops = args[0] === '--ops';
  const [backendName = 'cpu', preset = 'tiny', steps = '5'] = ops ? args.slice(1) : args;
  await enableRelaxedSimd();
  let backend = cpu as Backend;
  if (backendName === 'wasm') {
    const { createWasmBackend } = await import('../src/backend/wasm.ts');
    const w = await createWasmBackend({ threads: Number(process.env.THREADS ?? 1) });
    console.log(`wasm backend: ${w.threads} thread(s), ${w.simd} SIMD matmul`);
    backend = w;
  } else await initWasmMatmul();
  const [B, Tn] = preset === 'tiny' ? [16, 128] : [4, 256];
  const n = Number(steps);
  const table = ops ? instrument(backend) : null;
  let wall = 0;
  let synced = 0; // timeTrainStep calls sync after every step: clear the table after the warm-up step
  const sync = async () => {
    if (++synced === 1) table?.clear();
  };
  await timeTrainStep(backend, { preset, B, T: Tn, optimizer: (process.env.OPT ?? 'adamw') as 'adamw' | 'muon', warmup: 1, steps: n }, sync, (line) => {
    console.log(line);
    wall = Number(/([\d.]+) ms\/step/.exec(line)?.[1] ?? NaN);
  });
  if (table) {
    const per = n; // the warm-up step is not in the table
    const total = [...table.values()].reduce((s, e) => s + e.ms, 0) / per;
    console.log(`\nop-by-op, self time per step (mean of ${per} steps after one warm-up): ${total.toFixed(0)} ms in the backend of ${wall.toFixed(0)} ms/step (median) wall`);
    console.log(`${'op'.padEnd(26)} ${'calls/step'.padStart(10)} ${'ms/step'.padStart(9)} ${'share'.padStart(6)}`);
    for (const [k, e] of [...table].sort((a, b) => b[1].ms - a[1].ms)) {
      if (e.ms / per < 0.05 * total / 100) continue; // below 0.05%
      console.log(`${k.padEnd(26)} ${(e.calls / per).toFixed(0).padStart(10)} ${(e.ms / per).toFixed(1).padStart(9)} ${((100 * e.ms) / per / total).toFixed(1).padStart(5)}%`);
    }
  }
}
