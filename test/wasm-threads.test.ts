// The worker threads of the WebAssembly kernels (src/backend/wasm-threads.ts,
// kernels/cpu/wasm-worker.mjs): thousands of threaded matmuls of random shapes, with a second
// process loading the cores, each checked bit for bit against the one-thread result; then a
// helper that dies or fails, which must be one UserError naming the op, never a hang.
//
// Why bit for bit: a split matmul gives each thread whole rows, and every band starts on a
// multiple of the kernel's row tile, so each row is computed by the same instructions in the
// same order as on one thread. Any difference is a bug (a band computed twice, or not at all,
// or against stale arguments), not rounding.
import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MatmulParams } from '../src/backend/backend.ts';
import { THREADS_MIN_MACS, type WasmBackend, createWasmBackend } from '../src/backend/wasm.ts';
import { initWasmMatmul, resetWasmMatmul, wasmMatmul, wasmMatmulThreads } from '../src/backend/wasm-matmul.ts';
import { UserError } from '../src/util/errors.ts';
import * as T from '../src/tensor/index.ts';

const rng = new T.Rng(2323);

/** A busy loop in another process for `seconds`: the helpers must cope with being preempted. */
function loadCores(seconds: number): ChildProcess {
  return spawn(process.execPath, ['-e', `const t = Date.now(); while (Date.now() - t < ${seconds * 1000}) {}`], { stdio: 'ignore' });
}

const f32 = (s: unknown) => s as Float32Array;

describe('threaded matmul: thousands of random shapes, bit for bit against one thread, under load', () => {
  let w1: WasmBackend, w2: WasmBackend, w3: WasmBackend, loader: ChildProcess;
  beforeAll(async () => {
    [w1, w2, w3] = await Promise.all([createWasmBackend(), createWasmBackend({ threads: 2 }), createWasmBackend({ threads: 3 })]);
    loader = loadCores(60);
  });
  afterAll(() => {
    loader.kill();
    for (const w of [w1, w2, w3]) w.destroy();
  });

  it('2 and 3 threads (3 > the cores of a 2-core machine: helpers get preempted) give the 1-thread bytes', () => {
    // one pool of random numbers per backend; operands are views into it at random offsets
    const POOL = 1 << 18;
    const data = rng.normalArray(POOL, 1);
    const pools = [w1, w2, w3].map((w) => f32(w.upload(data, 'float32')));
    const keep: unknown[] = [];
    let split = 0;
    const CASES = 1500;
    for (let it = 0; it < CASES; it++) {
      // shapes with M·K·N around the split threshold and above (most of them split), ragged
      // in every dimension so the kernel's tails (M odd, N % 4, K % 4) are all exercised
      const M = 8 + rng.int(250), K = 1 + rng.int(200);
      const N = Math.max(1, Math.ceil((THREADS_MIN_MACS * (0.7 + 2 * rng.uniform())) / (M * K)) + rng.int(7));
      if (M * K > POOL || N * K > POOL) continue;
      const transA = rng.uniform() < 0.2, transB = rng.uniform() < 0.5;
      const p: MatmulParams = { M, K, N, batch: [], batchA: [], batchB: [], transA, transB };
      const oa = rng.int(POOL - M * K + 1), ob = rng.int(POOL - N * K + 1);
      const outs = [w1, w2, w3].map((w, i) => f32(w.matmul(pools[i].subarray(oa, oa + M * K), pools[i].subarray(ob, ob + N * K), p)));
      if (M * K * N >= THREADS_MIN_MACS && M >= 12) split++;
      for (const [i, c] of outs.entries()) {
        if (i === 0) continue;
        // compare as bits: NaN-safe and exact
        const a = new Int32Array(outs[0].buffer, outs[0].byteOffset, outs[0].length);
        const b = new Int32Array(c.buffer, c.byteOffset, c.length);
        let bad = -1;
        for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) { bad = j; break; }
        if (bad >= 0) expect.fail(`${i + 1} threads, case ${it}: (${M}×${K})·(${K}×${N}) transA ${transA} transB ${transB} differs at ${bad}: ${outs[0][bad]} vs ${c[bad]}`);
      }
      [w1, w2, w3].forEach((w, i) => w.free(outs[i]));
      // now and then keep a block alive so the heap (the shared memory) grows during the run:
      // the first stall we caught was in a step that grew the memory
      if (it % 50 === 0) keep.push(w2.zeros(1 << 16, 'float32'), w3.zeros(1 << 16, 'float32'));
    }
    expect(split).toBeGreaterThan(1000); // most cases really went through the helpers
  });
});

describe('a helper that dies or fails is one UserError naming the op, never a hang', () => {
  it('a helper that exits in the middle of a job', async () => {
    const w = await createWasmBackend({ threads: 2 });
    try {
      const K_EXIT = 1; // kernels/cpu/wasm-worker.mjs: a test hook
      w.threadPool.start(K_EXIT, [[]], 'the exit test');
      expect(() => w.threadPool.finish('the exit test')).toThrow(UserError);
      // and every later split op says so at once (the thread is gone for good)
      const a = w.upload(rng.normalArray(256 * 64, 1), 'float32'), b = w.upload(rng.normalArray(64 * 64, 1), 'float32');
      const p: MatmulParams = { M: 256, K: 64, N: 64, batch: [], batchA: [], batchB: [], transA: false, transB: true };
      expect(() => w.matmul(a, b, p)).toThrow(/worker thread 1 of 1 stopped during matmul \(256×64 · 64×64\): asked to exit \(test hook\)/);
    } finally {
      w.destroy();
    }
  });

  it('a helper terminated from outside (its exit hook never runs)', async () => {
    const w = await createWasmBackend({ threads: 2 });
    try {
      await w.threadPool.helpers[0].worker.terminate(); // the Worker's 'exit' event marks it dead
      await new Promise((r) => setTimeout(r, 50)); // let the event be delivered
      const a = w.upload(rng.normalArray(256 * 64, 1), 'float32'), b = w.upload(rng.normalArray(64 * 64, 1), 'float32');
      const p: MatmulParams = { M: 256, K: 64, N: 64, batch: [], batchA: [], batchB: [], transA: false, transB: true };
      expect(() => w.matmul(a, b, p)).toThrow(/worker thread 1 of 1 stopped during matmul/);
    } finally {
      w.destroy();
    }
  });

  it('a kernel that traps in a helper', async () => {
    const w = await createWasmBackend({ threads: 2 });
    try {
      w.threadPool.start(77, [[]], 'kernel 77');
      expect(() => w.threadPool.finish('kernel 77')).toThrow(/worker thread 1 of 1 failed during kernel 77: unknown kernel 77/);
    } finally {
      w.destroy();
    }
  });
});

describe('the copying matmul of the cpu backend (wasm-matmul.ts) with threads', () => {
  afterAll(async () => {
    resetWasmMatmul();
    await initWasmMatmul(); // as test/setup.ts left it
  });

  it('200 random shapes: 2 threads give the 1-thread bytes', async () => {
    const cases = Array.from({ length: 200 }, () => {
      const M = 8 + rng.int(200), K = 1 + rng.int(160);
      const N = Math.max(1, Math.ceil((2 ** 20 * (0.8 + 2 * rng.uniform())) / (M * K)));
      return { M, K, N, a: rng.normalArray(M * K, 1), bt: rng.normalArray(N * K, 1) };
    });
    const run = () => cases.map(({ M, K, N, a, bt }) => {
      const c = new Float32Array(M * N);
      wasmMatmul(a, 0, bt, 0, M, K, N, c, 0);
      return c;
    });
    resetWasmMatmul();
    await initWasmMatmul({ threads: 1 });
    const one = run();
    resetWasmMatmul();
    await initWasmMatmul({ threads: 2 });
    expect(wasmMatmulThreads()).toBe(2);
    const two = run();
    for (let i = 0; i < cases.length; i++) {
      const x = new Int32Array(one[i].buffer), y = new Int32Array(two[i].buffer);
      const bad = x.findIndex((v, j) => v !== y[j]); // a loop, not toEqual: millions of elements
      expect(bad, `case ${i}: (${cases[i].M}×${cases[i].K})·(${cases[i].K}×${cases[i].N})`).toBe(-1);
    }
  });
});
