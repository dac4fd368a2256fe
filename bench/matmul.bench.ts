// Matmul benchmark (`npm run bench -- matmul`): GFLOP/s (2·M·K·N flops per matmul) of the
// CPU backend's plain-JS matmul against the WASM SIMD kernel (kernels/cpu/matmul.wat),
// single-threaded, at the shapes a tiny GPT's training step uses, plus a ragged one.
//
// Rows per shape (each the best of several timed trials; the machine is shared, so the
// best is the least disturbed):
//   js           cpu.matmul through the Backend interface, B given as Bᵀ (transB), so its
//                cost is packing (two copies) + the JS 2x4 kernel + allocating C.
//   wasm         wasmMatmul on already-packed operands: copy A and Bᵀ into WASM memory, run
//                the kernel, copy C out.
//   wasmAsCpu    what cpu.matmul would cost with the kernel swapped in: the same packing
//                copies and C allocation as `js`, then wasmMatmul. Compare this with `js`.
//   speedup      wasmAsCpu / js.
//   wasm2t       wasmAsCpu with `initWasmMatmul({ threads: 2 })`: rows split over this thread
//                and one worker when M·K·N >= 2^20 (smaller shapes stay on one thread).
//                Meaningful only when a second core is idle; this suite runs it last.
//   plain, relaxed
//                the wasm backend's matmul (the training path: operands already in its
//                shared memory, B given as Bᵀ so no transpose runs), one thread, with the
//                plain build of matmul.wat (f32x4.mul + f32x4.add) and the relaxed one
//                (f32x4.relaxed_madd, fused on x86 FMA3). `relaxed` is left out when this
//                engine has no relaxed SIMD. Best of 7 interleaved trials. The 128-bit peak to compare with: 4 lanes x
//                2 FMA pipes x 2 flops = 16 FLOP/cycle, i.e. 16 x the clock in GHz.
// If cpu.ts exports `matmulKernel`, its bare number (no packing) is added as `jsKernel`.
import { cpu } from '../src/backend/cpu.ts';
import * as cpuModule from '../src/backend/cpu.ts';
import { initWasmMatmul, resetWasmMatmul, wasmMatmul, wasmMatmulThreads } from '../src/backend/wasm-matmul.ts';
import { Rng } from '../src/tensor/random.ts';
import { createWasmBackend } from '../src/backend/wasm.ts';
import { enableRelaxedSimd } from '../src/backend/wasm-simd.ts';

type Kernel = (a: Float32Array, bt: Float32Array, c: Float32Array, cOff: number, M: number, K: number, N: number) => void;

/** [label, batch, M, K, N]: `batch` independent matmuls of (M, K) · (K, N). */
const SHAPES: [string, number, number, number, number][] = [
  ['qkv/out proj (1024,128,384)', 1, 1024, 128, 384],
  ['attn out back (1024,384,128)', 1, 1024, 384, 128],
  ['square (1024,128,128)', 1, 1024, 128, 128],
  ['lm head (1024,128,2048)', 1, 1024, 128, 2048],
  ['weight grad (128,1024,384)', 1, 128, 1024, 384],
  ['attention 32x(128,32,128)', 32, 128, 32, 128],
  ['odd (67,33,5)', 1, 67, 33, 5],
];

/** Best seconds per call of f over `trials` trials, each repeating f for ~minSeconds. */
function bestSeconds(f: () => void, trials = 5, minSeconds = 0.15): number {
  f(); // warm-up: lets V8 compile, and WASM memory grow, before timing
  let best = Infinity;
  for (let t = 0; t < trials; t++) {
    let reps = 0;
    const t0 = performance.now();
    let elapsed = 0;
    do {
      f();
      reps++;
      elapsed = (performance.now() - t0) / 1000;
    } while (elapsed < minSeconds);
    best = Math.min(best, elapsed / reps);
  }
  return best;
}

function randn(rng: Rng, n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.normal();
  return x;
}

/**
 * What cpu.matmul would do with the WASM kernel swapped in for matmulKernel: allocate C,
 * pack each batch entry's A and Bᵀ (here plain copies: the inputs are already packed), call.
 */
function integratedPath(a: Float32Array, bt: Float32Array, B: number, M: number, K: number, N: number): () => void {
  const pa = new Float32Array(M * K), pb = new Float32Array(N * K);
  return () => {
    const c = new Float32Array(B * M * N);
    for (let z = 0; z < B; z++) {
      pa.set(a.subarray(z * M * K, (z + 1) * M * K));
      pb.set(bt.subarray(z * N * K, (z + 1) * N * K));
      wasmMatmul(pa, 0, pb, 0, M, K, N, c, z * M * N);
    }
  };
}

export default {
  name: 'matmul',
  async run(): Promise<Record<string, unknown>> {
    if (!(await initWasmMatmul())) return { note: 'skipped: this engine has no WebAssembly SIMD' };
    const jsKernel = (cpuModule as unknown as { matmulKernel?: Kernel }).matmulKernel;
    const rng = new Rng(0);
    const results: Record<string, Record<string, number>> = {};
    const inputs = new Map<string, [Float32Array, Float32Array]>();
    for (const [label, B, M, K, N] of SHAPES) {
      const a = randn(rng, B * M * K); // (B, M, K)
      const bt = randn(rng, B * N * K); // (B, N, K): B already transposed, i.e. "packed"
      inputs.set(label, [a, bt]);
      const flops = 2 * B * M * K * N;
      const gflops = (s: number) => +(flops / s / 1e9).toFixed(2);
      const params = { batchA: B > 1 ? [B] : [], batchB: B > 1 ? [B] : [], batch: B > 1 ? [B] : [], M, K, N, transA: false, transB: true };

      const js = bestSeconds(() => cpu.matmul(a, bt, params));
      const cOut = new Float32Array(B * M * N);
      const wasm = bestSeconds(() => {
        for (let z = 0; z < B; z++) wasmMatmul(a, z * M * K, bt, z * N * K, M, K, N, cOut, z * M * N);
      });
      const wasmAsCpu = bestSeconds(integratedPath(a, bt, B, M, K, N));
      const row: Record<string, number> = { js: gflops(js), wasm: gflops(wasm), wasmAsCpu: gflops(wasmAsCpu), speedup: +(js / wasmAsCpu).toFixed(2) };
      if (jsKernel) {
        row.jsKernel = gflops(bestSeconds(() => {
          for (let z = 0; z < B; z++) jsKernel(a.subarray(z * M * K), bt.subarray(z * N * K), cOut, z * M * N, M, K, N);
        }));
      }
      results[label] = row;
      console.log(label.padEnd(30), JSON.stringify(row));
    }
    // Two threads, on the same inputs.
    resetWasmMatmul();
    if (await initWasmMatmul({ threads: 2 })) {
      for (const [label, B, M, K, N] of SHAPES) {
        const [a, bt] = inputs.get(label)!;
        results[label].wasm2t = +((2 * B * M * K * N) / bestSeconds(integratedPath(a, bt, B, M, K, N)) / 1e9).toFixed(2);
        console.log(label.padEnd(30), `wasm2t ${results[label].wasm2t} (threads: ${wasmMatmulThreads()})`);
      }
    }
    resetWasmMatmul();
    // The wasm backend, plain and relaxed builds, one thread each, trials interleaved (plain,
    // relaxed, plain, ...) so that load from other processes hits both alike.
    const variants: ('plain' | 'relaxed')[] = (await enableRelaxedSimd()) ? ['plain', 'relaxed'] : ['plain'];
    const backends = await Promise.all(variants.map((simd) => createWasmBackend({ simd, threads: 1 })));
    for (const [label, B, M, K, N] of SHAPES) {
      const [a, bt] = inputs.get(label)!;
      const params = { batchA: B > 1 ? [B] : [], batchB: B > 1 ? [B] : [], batch: B > 1 ? [B] : [], M, K, N, transA: false, transB: true };
      const calls = backends.map((w) => {
        const wa = w.upload(a, 'float32'), wb = w.upload(bt, 'float32');
        return () => w.free(w.matmul(wa, wb, params));
      });
      const best = calls.map(() => Infinity);
      for (let t = 0; t < 7; t++) calls.forEach((f, i) => (best[i] = Math.min(best[i], bestSeconds(f, 1, 0.1))));
      variants.forEach((simd, i) => (results[label][simd] = +((2 * B * M * K * N) / best[i] / 1e9).toFixed(2)));
      console.log(label.padEnd(30), variants.map((v) => `${v} ${results[label][v]}`).join('  '));
    }
    for (const w of backends) w.destroy();
    return { unit: 'GFLOP/s, best of 5 trials; single thread except wasm2t', results };
  },
};
