// The WASM SIMD matmul (kernels/cpu/matmul.wat via src/backend/wasm-matmul.ts) against a
// float64 scalar reference, over every remainder case of its 2 x 4 tile and its 4-wide k
// steps; the committed .wasm against a fresh build of the .wat; and the graceful `false`
// when the engine has no WASM SIMD.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../src/tensor/random.ts';
import { initWasmMatmul, resetWasmMatmul, wasmMatmul, wasmMatmulReady, wasmMatmulThreads } from '../src/backend/wasm-matmul.ts';
import { buildOne, MADD_COUNT, relaxedMadd, WASM_KERNELS } from '../scripts/build-wasm.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Standard normal float32 values (rounded to float32, so the reference sees the same inputs). */
function randn(rng: Rng, n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.normal();
  return x;
}

/**
 * Run wasmMatmul at (M, K, N) on fresh inputs placed at nonzero offsets inside larger
 * arrays, and compare every output with a float64 dot product.
 *
 * Tolerance, and why: the kernel accumulates in float32 and in a different order from any
 * scalar loop (four lanes of k, a horizontal sum, then the k tail), so it cannot match bit
 * for bit. The classic bound for a float32 dot product of length K, in ANY summation order,
 * is |computed − exact| ≤ γ_K · Σ_k |a_k·b_k| with γ_K = K·u / (1 − K·u), u = 2⁻²⁴ (Higham,
 * "Accuracy and Stability of Numerical Algorithms", §3.1). The inputs are exact float32
 * values and the float64 reference is exact to ~2⁻⁵³ relative, so this proven bound is the
 * test's tolerance; nothing was widened to make it pass. It still catches any real bug: a
 * missing or doubled term of size ~|a_k b_k| is some 10⁵ times larger than the bound.
 */
function checkShape(rng: Rng, M: number, K: number, N: number): void {
  const aOff = 3, btOff = 5, cOff = 7; // odd offsets: the wrapper must honour them
  const a = randn(rng, aOff + M * K + 2), bt = randn(rng, btOff + N * K + 2);
  const SENTINEL = 12345;
  const c = new Float32Array(cOff + M * N + 3).fill(SENTINEL);
  wasmMatmul(a, aOff, bt, btOff, M, K, N, c, cOff);
  const u = 2 ** -24, gamma = (K * u) / (1 - K * u);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let exact = 0, absSum = 0;
      for (let k = 0; k < K; k++) {
        const p = a[aOff + i * K + k] * bt[btOff + j * K + k]; // float64 products of float32 inputs: exact
        exact += p;
        absSum += Math.abs(p);
      }
      const got = c[cOff + i * N + j];
      const err = Math.abs(got - exact);
      if (!(err <= gamma * absSum)) {
        throw new Error(`(M,K,N)=(${M},${K},${N}) c[${i},${j}] = ${got}, expected ${exact}: error ${err} > bound ${gamma * absSum}`);
      }
    }
  }
  // Nothing outside C's window was written.
  for (let q = 0; q < cOff; q++) expect(c[q]).toBe(SENTINEL);
  for (let q = cOff + M * N; q < c.length; q++) expect(c[q]).toBe(SENTINEL);
}

describe('wasm matmul kernel', () => {
  beforeAll(async () => {
    resetWasmMatmul();
    // Node 20+ always has WASM SIMD, so on this platform init must succeed.
    expect(await initWasmMatmul()).toBe(true);
  });

  it('matches the float64 reference for every M, N, K in 1..9 (all tile and k remainders)', () => {
    const rng = new Rng(1);
    for (let M = 1; M <= 9; M++) for (let K = 1; K <= 9; K++) for (let N = 1; N <= 9; N++) checkShape(rng, M, K, N);
  });

  it('matches the reference on larger ragged and model-like shapes', () => {
    const rng = new Rng(2);
    const shapes: [number, number, number][] = [
      [67, 33, 5], [33, 67, 130], [64, 129, 63], [1, 200, 1], [130, 4, 9], [2, 1024, 4],
      [128, 32, 128], [96, 128, 384], [31, 384, 17], [8, 3, 1001],
      // Long rows make the kernel's cache blocks narrower than N (128 KiB of Bt rows per block:
      // 28 columns at K = 1100, 12 at K = 2049), so these run several blocks, the last ragged.
      [5, 1100, 67], [3, 2049, 70],
    ];
    for (const [M, K, N] of shapes) checkShape(rng, M, K, N);
  });

  it('gives zeros when K = 0 and leaves C alone when M or N is 0', () => {
    const rng = new Rng(3);
    checkShape(rng, 3, 0, 5); // every reference sum is 0 and the bound is 0: exact zeros
    checkShape(rng, 0, 4, 5);
    checkShape(rng, 4, 4, 0);
  });

  it('reuses and grows its memory across calls of different sizes', () => {
    const rng = new Rng(4);
    checkShape(rng, 5, 6, 7);
    checkShape(rng, 700, 64, 700); // ~2.3 MiB of operands and result: forces a grow
    checkShape(rng, 9, 9, 9); // small again, on the grown memory
  });
});

describe('wasm matmul, two threads (shared memory + one worker)', () => {
  beforeAll(async () => {
    resetWasmMatmul();
    expect(await initWasmMatmul({ threads: 2 })).toBe(true);
    expect(wasmMatmulThreads()).toBe(2);
  });
  afterAll(() => resetWasmMatmul());

  it('matches the reference when the rows are split between two threads', () => {
    const rng = new Rng(5);
    // M·K·N >= 2^20, so these take the threaded path; ragged M, K, N give each band remainders
    for (const [M, K, N] of [[256, 128, 384], [67, 129, 131], [130, 101, 90], [1025, 32, 33]] as const) checkShape(rng, M, K, N);
    // and small ones still run (single-threaded) on the shared memory
    for (let M = 1; M <= 9; M++) checkShape(rng, M, 7, 9);
  });
});

describe('wasm matmul build', () => {
  it('the committed .wasm files are exactly what scripts/build-wasm.ts makes from the .wat', async () => {
    expect(WASM_KERNELS.map((b) => b.wasm)).toEqual(['kernels/cpu/matmul.wasm', 'kernels/cpu/matmul-shared.wasm', 'kernels/cpu/matmul-relaxed-shared.wasm', 'kernels/cpu/ops.wasm']);
    for (const b of WASM_KERNELS) {
      const fresh = await buildOne(b);
      const committed = new Uint8Array(readFileSync(join(root, b.wasm)));
      // A mismatch means the .wat was edited without running `npm run build:wasm`.
      expect(Buffer.from(committed).equals(Buffer.from(fresh)), `${b.wasm} is stale: run npm run build:wasm`).toBe(true);
    }
  });

  it('the relaxed build has every vector multiply-add as relaxed_madd, the plain builds none', () => {
    // 0xfd 0x85 0x02: the opcode of f32x4.relaxed_madd (prefix 0xfd, LEB128 0x105)
    const count = (file: string) => {
      const b = readFileSync(join(root, file));
      let n = 0;
      for (let i = 0; i + 2 < b.length; i++) if (b[i] === 0xfd && b[i + 1] === 0x85 && b[i + 2] === 0x02) n++;
      return n;
    };
    expect(count('kernels/cpu/matmul-relaxed-shared.wasm')).toBe(MADD_COUNT);
    expect(count('kernels/cpu/matmul-shared.wasm')).toBe(0);
    expect(count('kernels/cpu/matmul.wasm')).toBe(0);
    // an edit of the .wat that breaks the rewritable form fails the build, not silently
    expect(() => relaxedMadd('(module)')).toThrow(/0 multiply-adds in the rewritable form, expected 9/);
  });
});

describe('wasm matmul without SIMD', () => {
  afterAll(() => resetWasmMatmul());

  it('init resolves false (and wasmMatmul refuses) when the engine cannot validate the module', async () => {
    resetWasmMatmul();
    // Simulate an engine without WASM SIMD: there WebAssembly.validate rejects the module.
    expect(await initWasmMatmul({ validate: () => false })).toBe(false);
    expect(wasmMatmulReady()).toBe(false);
    const x = new Float32Array(4);
    expect(() => wasmMatmul(x, 0, x, 0, 1, 4, 1, x, 0)).toThrow(/initWasmMatmul/);
  });
});
