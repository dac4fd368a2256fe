// Parity of the wasm backend (src/backend/wasm.ts, kernels/cpu/ops.wat) with the CPU
// reference: every kernel on fresh random inputs, then the ops it does not accelerate (which
// run the CPU loops over views of wasm memory), the fused kernels against cpu-fused.ts, the
// whole model's loss and gradients, and 20 training steps. The same cases and tolerances as
// test/webgpu.test.ts, test/webgpu-fused.test.ts and test/webgpu-model.test.ts, with the
// reasons rewritten for WebAssembly where they differ (WASM arithmetic is IEEE float32,
// correctly rounded, like the CPU backend's Float32Array stores; only summation ORDER and our
// own exp differ). Small shapes: this suite runs in plain `npm test` in a few seconds.
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend, BinaryOp, HostArray, MatmulParams, Storage, UnaryOp } from '../src/backend/backend.ts';
import { sizeOf } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { cpuFused } from '../src/backend/cpu-fused.ts';
import { type AttentionShape, FUSED_POLICY, hasFused } from '../src/backend/fused.ts';
import { createWasmBackend, planBinary } from '../src/backend/wasm.ts';
import { WasmHeap, sizeClass } from '../src/backend/wasm-memory.ts';
import { UserError } from '../src/util/errors.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import { buildOptimizer } from '../src/optim/index.ts';
import * as T from '../src/tensor/index.ts';
import { BatchLoader } from '../src/data/loader.ts';
import { Trainer, languageModelLoss } from '../src/train/trainer.ts';

const wasm = await createWasmBackend();
afterAll(() => {
  T.setDefaultBackend(cpu);
  wasm.destroy();
});

const U = 2 ** -24; // float32 unit roundoff
const rng = new T.Rng(4321);
const randn = (n: number, std = 1) => rng.normalArray(n, std);
const uniform = (n: number, lo: number, hi: number) => rng.uniformArray(n, lo, hi);
const ints = (n: number, k: number) => Float32Array.from({ length: n }, () => rng.int(k));
const up = (d: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => wasm.upload(d, dtype);
const cup = (d: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => cpu.upload(d, dtype);
const host = (s: Storage) => s as unknown as Float32Array;
const abs = (x: Float32Array) => x.map(Math.abs);

/** |got - want| <= atol + rtol |want| (or <= bound[i]); NaN and infinities must match. */
function expectClose(got: HostArray, want: HostArray, tol: { atol?: number; rtol?: number; bound?: ArrayLike<number> }, what: string) {
  expect(got.length, `${what}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    if (!Number.isFinite(w)) {
      if (!(Object.is(g, w) || (Number.isNaN(g) && Number.isNaN(w)))) expect.fail(`${what}: element ${i}: wasm ${g} vs cpu ${w}`);
      continue;
    }
    const allowed = tol.bound ? tol.bound[i] : (tol.atol ?? 0) + (tol.rtol ?? 0) * Math.abs(w);
    if (!(Math.abs(g - w) <= allowed)) expect.fail(`${what}: element ${i}: wasm ${g} vs cpu ${w} (allowed ${allowed})`);
  }
}

describe('wasm backend: memory', () => {
  it('storages are views into one WebAssembly memory; zeros are zero after reuse; int32 round-trips', async () => {
    const s = up(randn(100)) as Float32Array;
    expect(s.buffer).toBeInstanceOf(SharedArrayBuffer);
    wasm.free(s);
    const z = wasm.zeros(100, 'float32') as Float32Array;
    expect(z.byteOffset).toBe(s.byteOffset); // the freed block, reused
    expect(Array.from(z)).toEqual(new Array(100).fill(0));
    const i = Int32Array.from({ length: 37 }, () => rng.int(1000) - 500);
    expect(await wasm.read(up(i, 'int32'), 'int32')).toEqual(i);
  });

  it('freeing a plain typed array (from a method that bypassed the allocator) leaves the heap alone', () => {
    const before = wasm.bytesInUse();
    wasm.free(new Float32Array(64));
    expect(wasm.bytesInUse()).toBe(before);
    const s = wasm.zeros(64, 'float32') as Float32Array; // the same size class as the plain array
    expect(s.byteOffset).toBeGreaterThan(0); // no bogus offset-0 block was put on its free list
    wasm.free(s);
  });

  it('growing the memory does not invalidate live storages', () => {
    const x = randn(1000), s = up(x) as Float32Array;
    const before = wasm.heap.memory.buffer.byteLength;
    const big = wasm.zeros(8 << 20, 'float32'); // 32 MiB: forces a grow
    expect(wasm.heap.memory.buffer.byteLength).toBeGreaterThan(before);
    expect(Array.from(s)).toEqual(Array.from(x));
    expectClose(host(wasm.unary('neg', s, 0)), host(cpu.unary('neg', cup(x), 0)), {}, 'neg after grow');
    wasm.free(big);
  });

  it('a request past the 4 GiB maximum is a one-line UserError that leaves the heap as it was', () => {
    const heap = new WasmHeap(); // its own memory: 1 MiB to start, nothing is really allocated
    const a = heap.alloc(1000);
    const [inUse, reserved] = [heap.bytesInUse(), heap.bytesReserved()];
    expect(() => heap.alloc(5 * 2 ** 30)).toThrow(UserError);
    expect(() => heap.alloc(5 * 2 ** 30)).toThrow(/out of memory: .*the maximum is 4 GiB.*--backend cpu/);
    expect([heap.bytesInUse(), heap.bytesReserved()]).toEqual([inUse, reserved]);
    expect(heap.alloc(1000)).toBe(a + sizeClass(1000)); // the next block follows the last good one
  });

  it('freed blocks of other sizes are merged and reused before the memory grows (generation and RL change shapes every step)', () => {
    const heap = new WasmHeap();
    const small = Array.from({ length: 100 }, () => heap.alloc(64 << 10)); // 6.25 MiB in 64 KiB blocks
    const guard = heap.alloc(64); // a live block above them: the top cannot simply come down
    const top = heap.bytesReserved();
    small.forEach((p) => heap.release(p, 64 << 10));
    // no free block of its class; rather than growing the memory, the 100 neighbours are merged
    const big = heap.alloc(6 << 20);
    expect(big).toBe(small[0]);
    expect(heap.bytesReserved()).toBe(top);
    // the rest of the merged run serves a smaller request; live bytes stay exact
    const rest = heap.alloc(100 << 10);
    expect(rest).toBe(big + (6 << 20));
    expect(heap.bytesReserved()).toBe(top);
    expect(heap.bytesInUse()).toBe((6 << 20) + (100 << 10) + 64);
    // with everything free again, the merged space ends at the top and is given back to it
    [[rest, 100 << 10], [guard, 64], [big, 6 << 20]].forEach(([p, n]) => heap.release(p, n));
    expect(heap.alloc(7 << 20)).toBe(small[0]);
    expect(heap.bytesReserved()).toBe(small[0] + (7 << 20));
  });

  it('size classes: at most 25% rounding above 4 KiB, 64-byte granules below', () => {
    for (const b of [1, 64, 65, 4096, 4097, 10000, 123457, 5e6]) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c).toBeLessThanOrEqual(b <= 4096 ? b + 64 : b * 1.25);
    }
  });

  it('the broadcast planner finds rows x columns splits and refuses middle-axis broadcasts', () => {
    expect(planBinary([[5, 7], [1, 7]], [5, 7])).toEqual({ R: 5, C: 7, strides: [[7, 1], [0, 1]] });
    expect(planBinary([[16, 4, 128, 128], [16, 4, 128, 1]], [16, 4, 128, 128])?.strides).toEqual([[128, 1], [1, 0]]);
    expect(planBinary([[3, 1, 4], [3, 5, 1]], [3, 5, 4])).toBeNull();
  });
});

describe('wasm backend parity with cpu: elementwise and reductions', () => {
  // our exp is a polynomial (ops.wat $exp4), relative error ~1e-7, so a few ULP from Math.exp
  const UNARY: [UnaryOp, number, () => Float32Array, { atol?: number; rtol?: number }, string][] = [
    ['neg', 0, () => randn(1001), {}, 'exact: a sign flip'],
    ['relu', 0, () => randn(1001), {}, 'exact: a selection'],
    ['mulScalar', 0.1, () => randn(1001), { rtol: 2 * U }, '0.1 is rounded to float32 in wasm, a double on the CPU'],
    ['addScalar', 0.3, () => randn(1001), { atol: 2 * U }, 'as mulScalar: the float32 constant differs by up to u/2 · 0.3'],
    ['exp', 0, () => uniform(1001, -80, 80), { rtol: 4e-7 }, 'polynomial exp: ~2 ULP, plus the float32 rounding of the result'],
    ['sigmoid', 0, () => randn(1001, 4), { atol: 1e-7, rtol: 1e-6 }, 'from our exp (2 ULP) and a division'],
    ['sqrt', 0, () => uniform(1001, 0, 100), { rtol: U }, 'f32x4.sqrt is correctly rounded; the CPU rounds a double sqrt: may differ by 1/2 ULP'],
    ['rsqrt', 0, () => uniform(1001, 0.01, 100), { rtol: 2 * U }, 'two float32 roundings (sqrt, divide) vs one'],
    ['log', 0, () => uniform(1001, 0.01, 100), {}, 'exact: no kernel, the CPU loop runs over the view'],
    ['tanh', 0, () => randn(1001, 3), {}, 'exact: no kernel (CPU loop)'],
    ['powScalar', 3, () => randn(1001), {}, 'exact: no kernel (CPU loop)'],
  ];
  for (const [op, param, gen, tol, why] of UNARY) {
    it(`unary ${op}${param ? ` (${param})` : ''}: ${why}`, () => {
      const x = gen();
      expectClose(host(wasm.unary(op, up(x), param)), host(cpu.unary(op, cup(x), param)), tol, op);
    });
  }

  it('exp at the edges: overflow to inf, underflow to 0, NaN stays NaN', () => {
    const x = Float32Array.of(89, 1000, -88, -104, -1000, NaN, 0, -0, Infinity, -Infinity);
    const got = host(wasm.unary('exp', up(x), 0));
    expect(Array.from(got.slice(0, 2))).toEqual([Infinity, Infinity]);
    expect(got[2]).toBeLessThan(1e-37); // cpu: 6e-39 (subnormal); ours flushes below -87.34 to 0
    expect(Array.from(got.slice(3, 5))).toEqual([0, 0]);
    expect(got[5]).toBeNaN();
    expect(Array.from(got.slice(6))).toEqual([1, 1, Infinity, 0]);
  });

  const BCAST: [number[], number[], number[]][] = [
    [[5, 7], [5, 7], [5, 7]], // same shape
    [[5, 7], [1, 1], [5, 7]], // b a scalar
    [[1, 1], [5, 7], [5, 7]], // a a scalar
    [[5, 7], [1, 7], [5, 7]], // row vector
    [[5, 1], [5, 7], [5, 7]], // column broadcast
    [[5, 1], [1, 7], [5, 7]], // outer product shape
    [[2, 3, 9], [2, 3, 1], [2, 3, 9]], // column broadcast over two leading axes (softmax's max)
    [[3, 1, 4], [3, 5, 1], [3, 5, 4]], // no split: the CPU's general loop
    [[2, 1, 3, 1, 2], [1, 4, 1, 5, 2], [2, 4, 3, 5, 2]], // rank 5, general loop
  ];
  const BINARY_TOL: Record<BinaryOp, { rtol?: number }> = {
    add: {}, sub: {}, mul: {}, div: {}, // exact: one correctly rounded IEEE float32 operation on both sides
    lt: {}, gt: {}, eq: {}, // exact: 0 or 1 (no kernel: the CPU loop)
  };
  for (const op of Object.keys(BINARY_TOL) as BinaryOp[]) {
    it(`binary ${op} with broadcasting`, () => {
      for (const [as, bs, os] of BCAST) {
        const cmp = op === 'lt' || op === 'gt' || op === 'eq';
        const a = cmp ? ints(sizeOf(as), 3) : randn(sizeOf(as));
        const b = cmp ? ints(sizeOf(bs), 3) : op === 'div' ? uniform(sizeOf(bs), 0.5, 2) : randn(sizeOf(bs));
        expectClose(host(wasm.binary(op, up(a), as, up(b), bs, os)), host(cpu.binary(op, cup(a), as, cup(b), bs, os)), BINARY_TOL[op], `${op} [${as}] [${bs}]`);
      }
    });
  }

  it('where with broadcasting (exact: a selection)', () => {
    for (const [cs, as, bs, os] of [[[4, 6], [4, 6], [4, 6], [4, 6]], [[4, 1], [1, 6], [1, 1], [4, 6]], [[2, 3, 1], [1, 3, 4], [2, 1, 4], [2, 3, 4]]]) {
      const c = ints(sizeOf(cs), 2), a = randn(sizeOf(as)), b = randn(sizeOf(bs));
      expectClose(host(wasm.where(up(c), cs, up(a), as, up(b), bs, os)), host(cpu.where(cup(c), cs, cup(a), as, cup(b), bs, os)), {}, `where [${cs}]`);
    }
  });

  it('expand (exact: copies)', () => {
    for (const [xs, os] of [[[3, 1, 4], [3, 5, 4]], [[1], [6]], [[1, 1], [3, 2]], [[2, 1, 1], [2, 3, 70]], [[1, 9], [5, 9]], [[4, 1], [4, 7]]]) {
      const x = randn(sizeOf(xs));
      expectClose(host(wasm.expand(up(x), xs, os)), host(cpu.expand(cup(x), xs, os)), {}, `expand [${xs}] -> [${os}]`);
    }
  });

  it('reduce sum and max on every axis (max exact; sum within the float32 summation bound)', () => {
    for (const shape of [[3, 4, 5], [2, 300], [300, 3], [2, 37, 19], [1001], [1, 1]]) {
      const x = randn(sizeOf(shape));
      for (let axis = 0; axis < shape.length; axis++) {
        expectClose(host(wasm.reduce('max', up(x), shape, axis)), host(cpu.reduce('max', cup(x), shape, axis)), {}, `max [${shape}] axis ${axis}`);
        // four lanes then a horizontal sum vs left to right: both within (n + 2) u Σ|x| of exact
        const n = shape[axis];
        const bound = host(cpu.reduce('sum', cup(abs(x)), shape, axis)).map((s) => 2 * (n + 2) * U * s);
        expectClose(host(wasm.reduce('sum', up(x), shape, axis)), host(cpu.reduce('sum', cup(x), shape, axis)), { bound }, `sum [${shape}] axis ${axis}`);
      }
    }
  });

  it('reduce max propagates NaN like the CPU', () => {
    const x = Float32Array.from([1, NaN, 3, 4, 5, 6, 7, 8, 9, 10]);
    expectClose(host(wasm.reduce('max', up(x), [2, 5], 1)), host(cpu.reduce('max', cup(x), [2, 5], 1)), {}, 'rows');
    expectClose(host(wasm.reduce('max', up(x), [2, 5], 0)), host(cpu.reduce('max', cup(x), [2, 5], 0)), {}, 'cols');
  });
});

describe('wasm backend parity with cpu: matmul and layout', () => {
  /** Both backends on one matmul; tolerance 2 (K + 2) u (|A| |B|)_ij, the float32 dot-product bound, doubled. */
  function checkMatmul(aShape: number[], bShape: number[], transA: boolean, transB: boolean, be: Backend = wasm) {
    const [ar, ac] = aShape.slice(-2), [br, bc] = bShape.slice(-2);
    const M = transA ? ac : ar, K = transA ? ar : ac, N = transB ? br : bc;
    const batchA = aShape.slice(0, -2), batchB = bShape.slice(0, -2);
    const p: MatmulParams = { batchA, batchB, batch: T.broadcastShapes('matmul', batchA, batchB), M, K, N, transA, transB };
    const a = randn(sizeOf(aShape)), b = randn(sizeOf(bShape));
    const bound = host(cpu.matmul(cup(abs(a)), cup(abs(b)), p)).map((s) => 2 * (K + 2) * U * s);
    expectClose(host(be.matmul(be.upload(a, 'float32'), be.upload(b, 'float32'), p)), host(cpu.matmul(cup(a), cup(b), p)), { bound }, `matmul [${aShape}]${transA ? 'ᵀ' : ''} @ [${bShape}]${transB ? 'ᵀ' : ''}`);
  }

  it('all four transpose layouts, ragged and multiple-of-4 shapes (the SIMD transpose edges)', () => {
    for (const [M, K, N] of [[67, 33, 70], [68, 36, 72], [5, 3, 2]]) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          checkMatmul(transA ? [K, M] : [M, K], transB ? [N, K] : [K, N], transA, transB);
          checkMatmul(transA ? [2, K, M] : [2, M, K], transB ? [2, N, K] : [2, K, N], transA, transB);
        }
      }
    }
  });

  it('tiny, degenerate and batched shapes', () => {
    checkMatmul([1, 1], [1, 1], false, false);
    checkMatmul([9, 3], [3, 1], false, false);
    checkMatmul([4, 0], [0, 3], false, false); // empty sum: zeros
    checkMatmul([2, 3, 5, 7], [2, 3, 7, 4], false, false);
    checkMatmul([2, 1, 5, 7], [3, 7, 4], false, false);
    checkMatmul([2, 3, 7, 5], [7, 4], true, false);
    checkMatmul([6, 9], [2, 3, 11, 9], false, true);
  });

  it('two threads: a matmul big enough to split matches one thread (Node worker_threads)', async () => {
    const w2 = await createWasmBackend({ threads: 2 });
    try {
      expect(w2.threads).toBe(2);
      checkMatmul([130, 64], [96, 64], false, true, w2); // 798,720 multiply-adds: above THREADS_MIN_MACS
      checkMatmul([64, 130], [64, 96], true, false, w2);
    } finally {
      w2.destroy();
    }
  });

  it('rejects a bad thread count with one clear line', async () => {
    await expect(createWasmBackend({ threads: 0 })).rejects.toThrow(/threads must be a positive integer, got 0/);
  });

  it('permute (exact: copies), the kernel up to rank 4 with and without the last axis last, the CPU loop above', () => {
    const cases: [number[], number[]][] = [[[5, 7], [1, 0]], [[2, 3, 4, 5], [3, 1, 0, 2]], [[2, 3, 4, 5], [0, 2, 1, 3]], [[2, 3, 4], [0, 2, 1]], [[4], [0]], [[2, 1, 3, 2, 2], [4, 2, 0, 1, 3]]];
    for (const [shape, perm] of cases) {
      const x = randn(sizeOf(shape));
      expectClose(host(wasm.permute(up(x), shape, perm)), host(cpu.permute(cup(x), shape, perm)), {}, `permute [${shape}] (${perm})`);
    }
  });

  it('layout ops without kernels run the CPU loops over wasm views (exact: copies)', () => {
    const x = randn(2 * 3 * 4 * 5);
    expectClose(host(wasm.slice(up(x), [2, 3, 4, 5], 2, 1, 3)), host(cpu.slice(cup(x), [2, 3, 4, 5], 2, 1, 3)), {}, 'slice');
    expectClose(host(wasm.pad(up(x), [2, 3, 4, 5], 1, 2, 1)), host(cpu.pad(cup(x), [2, 3, 4, 5], 1, 2, 1)), {}, 'pad');
    const y = randn(2 * 2 * 4 * 5);
    expectClose(host(wasm.concat([up(x), up(y)], [[2, 3, 4, 5], [2, 2, 4, 5]], 1)), host(cpu.concat([cup(x), cup(y)], [[2, 3, 4, 5], [2, 2, 4, 5]], 1)), {}, 'concat');
    const table = randn(10 * 6), idx = Int32Array.from([3, 0, 9, 3, 3]), src = randn(5 * 6);
    expectClose(host(wasm.gather(up(table), 10, 6, up(idx, 'int32'), 5)), host(cpu.gather(cup(table), 10, 6, cup(idx, 'int32'), 5)), {}, 'gather');
    expectClose(host(wasm.scatterAdd(up(src), 5, 6, up(idx, 'int32'), 10)), host(cpu.scatterAdd(cup(src), 5, 6, cup(idx, 'int32'), 10)), {}, 'scatterAdd');
  });
});

describe('wasm fused kernels vs cpu-fused', () => {
  // Tolerances as test/webgpu-fused.test.ts: the kernels sum in a different order and use the
  // polynomial exp, so they agree with the reference loops to float32 rounding compounded over
  // a row (C, V or S terms), far below the 1e-2 effect of a wrong index or a missing term.
  const TOL = [1e-5, 1e-4] as const;
  const close = (g: Storage, w: Storage, what: string) => expectClose(host(g), host(w), { atol: TOL[0], rtol: TOL[1] }, what);

  it('implements the FusedKernels capability, and the policy table uses all seven', () => {
    expect(hasFused(wasm)).toBe(true);
    expect(FUSED_POLICY.wasm).toEqual({ rmsnorm: true, crossEntropy: true, targetLogprobs: true, attention: true, adamw: true, swiglu: true, rope: true });
  });

  it('the AdamW optimizer takes the fused path on wasm and matches the composed update on cpu', () => {
    // weight decay on the matrix (rank 2), none on the gain (rank 1): both branches
    const shapes = [[7, 5], [5]];
    const init = shapes.map((sh) => randn(sizeOf(sh))), grads = [0, 1, 2].map(() => shapes.map((sh) => randn(sizeOf(sh))));
    const finals: Float32Array[][] = [];
    for (const b of [cpu, wasm] as Backend[]) {
      const params = shapes.map((sh, i) => ({ name: `p${i}`, role: sh.length === 2 ? ('matrix' as const) : ('gain' as const), param: T.tensor(init[i], sh, { requiresGrad: true, backend: b }) }));
      const opt = buildOptimizer(params, { kind: 'adamw', lr: 1e-2, weightDecay: 0.1 });
      for (const g of grads) {
        params.forEach((p, i) => {
          p.param.grad?.dispose();
          p.param.grad = T.tensor(g[i], shapes[i], { backend: b });
        });
        opt.step(1e-2);
      }
      finals.push(params.map((p) => Float32Array.from(p.param.dataSync())));
    }
    finals[0].forEach((want, i) => expectClose(finals[1][i], want, { atol: TOL[0], rtol: TOL[1] }, `param ${i}`));
    // and it really changed them (a skipped update would also "match" a skipped reference)
    expect(Math.abs(finals[1][0][0] - init[0][0])).toBeGreaterThan(1e-3);
  });

  it('cross-entropy forward and backward, with ignored rows', () => {
    const N = 7, V = 37;
    const x = randn(N * V, 3), t = Int32Array.from([3, -1, 0, 36, 5, -1, 20]), dl = Float32Array.of(1.7);
    const f = wasm.crossEntropyForward(up(x), up(t, 'int32'), N, V), r = cpuFused.crossEntropyForward(cup(x), cup(t, 'int32'), N, V);
    close(f.loss, r.loss, 'loss');
    close(f.lse, r.lse, 'lse');
    const xs = up(x), ts = up(t, 'int32'), dls = up(dl);
    const dirty = up(new Float32Array(N * V).fill(123));
    wasm.free(dirty); // the next block of dx's size is this dirty one: the kernel must zero ignored rows itself
    const dx = wasm.crossEntropyBackward(xs, ts, f.lse, dls, N, V);
    expect((dx as Float32Array).byteOffset).toBe((dirty as Float32Array).byteOffset);
    close(dx, cpuFused.crossEntropyBackward(cup(x), cup(t, 'int32'), r.lse, cup(dl), N, V), 'dlogits');
    expect(() => wasm.crossEntropyForward(up(x), up(Int32Array.from([0, 0, 0, 37, 0, 0, 0]), 'int32'), N, V)).toThrow(/target 37 at row 3/);
  });

  it('target log-probs forward and backward (V not a multiple of 4: the scalar tail too)', () => {
    for (const [M, V] of [[9, 37], [4, 64]]) {
      const x = randn(M * V, 3), t = Int32Array.from({ length: M }, () => rng.int(V)), g = randn(M);
      t[0] = V - 1; // the last column, in the tail when V % 4 != 0
      const f = wasm.targetLogprobsForward(up(x), up(t, 'int32'), M, V), r = cpuFused.targetLogprobsForward(cup(x), cup(t, 'int32'), M, V);
      close(f.logp, r.logp, `logp ${M}x${V}`);
      close(f.lse, r.lse, `lse ${M}x${V}`);
      const dirty = up(new Float32Array(M * V).fill(123));
      wasm.free(dirty); // dx reuses this dirty block: the kernel must write every element
      const dx = wasm.targetLogprobsBackward(up(x), up(t, 'int32'), f.lse, up(g), M, V);
      close(dx, cpuFused.targetLogprobsBackward(cup(x), cup(t, 'int32'), r.lse, cup(g), M, V), `dlogits ${M}x${V}`);
    }
    expect(() => wasm.targetLogprobsForward(up(randn(10)), up(Int32Array.of(1, 5), 'int32'), 2, 5)).toThrow(/target 5 at row 1/);
  });

  it('RMSNorm forward and backward, with and without weight', () => {
    const R = 6, C = 35, eps = 1e-6;
    const x = randn(R * C), w = randn(C), dy = randn(R * C);
    for (const weighted of [true, false]) {
      const f = wasm.rmsnormForward(up(x), weighted ? up(w) : null, R, C, eps), r = cpuFused.rmsnormForward(cup(x), weighted ? cup(w) : null, R, C, eps);
      close(f.y, r.y, 'y');
      close(f.rstd, r.rstd, 'rstd');
      const b = wasm.rmsnormBackward(up(dy), up(x), weighted ? up(w) : null, f.rstd, R, C);
      const rb = cpuFused.rmsnormBackward(cup(dy), cup(x), weighted ? cup(w) : null, r.rstd, R, C);
      close(b.dx, rb.dx, 'dx');
      if (weighted) close(b.dweight!, rb.dweight!, 'dweight');
      else expect(b.dweight).toBeNull();
    }
  });

  const ATTN: AttentionShape[] = [
    { B: 2, NH: 4, NKV: 2, T: 5, S: 7, HS: 8, causal: true }, // grouped-query, S > T (a KV cache)
    { B: 1, NH: 3, NKV: 3, T: 9, S: 9, HS: 6, causal: true }, // HS not a multiple of 4: scalar tails
    { B: 1, NH: 2, NKV: 1, T: 4, S: 6, HS: 16, causal: false },
    // the backward's key blocks are 64 keys: several blocks, a ragged last one, S > T, and
    // head sizes that take the 16-float register tiles, the 4-float step and the scalar tail
    { B: 1, NH: 4, NKV: 2, T: 70, S: 150, HS: 22, causal: true },
    { B: 2, NH: 2, NKV: 2, T: 130, S: 130, HS: 64, causal: true },
    { B: 1, NH: 3, NKV: 1, T: 33, S: 100, HS: 19, causal: false },
  ];
  for (const s of ATTN) {
    it(`attention forward and backward ${JSON.stringify(s)}`, () => {
      const q = randn(s.B * s.NH * s.T * s.HS), k = randn(s.B * s.NKV * s.S * s.HS), v = randn(s.B * s.NKV * s.S * s.HS), dout = randn(q.length);
      const f = wasm.attentionForward(up(q), up(k), up(v), s), r = cpuFused.attentionForward(cup(q), cup(k), cup(v), s);
      close(f.out, r.out, 'out');
      close(f.lse, r.lse, 'lse');
      const b = wasm.attentionBackward(up(dout), up(q), up(k), up(v), f.out, f.lse, s);
      const rb = cpuFused.attentionBackward(cup(dout), cup(q), cup(k), cup(v), r.out, r.lse, s);
      close(b.dq, rb.dq, 'dq');
      close(b.dk, rb.dk, 'dk');
      close(b.dv, rb.dv, 'dv');
    });
  }

  it('AdamW update in place (three steps)', () => {
    const n = 103;
    const w = randn(n), g = randn(n);
    const ws = up(w), ms = wasm.zeros(n, 'float32'), vs = wasm.zeros(n, 'float32');
    const wc = cup(w), mc = cpu.zeros(n, 'float32'), vc = cpu.zeros(n, 'float32');
    for (let step = 1; step <= 3; step++) {
      const p = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step };
      wasm.adamwUpdate(ws, up(g), ms, vs, n, p);
      cpuFused.adamwUpdate(wc, cup(g), mc, vc, n, p);
    }
    close(ws, wc, 'param');
    close(ms, mc, 'm');
    close(vs, vc, 'v');
  });
});

describe('GPT on the wasm backend matches the CPU backend', () => {
  // Same model, tolerances and reasons as test/webgpu-model.test.ts: loss 1e-4 relative;
  // gradients 1e-3 of the largest entry + 1e-3 relative; 20 Muon + AdamW steps within 1e-6 relative (measured 7.1e-8).
  const config = presetConfig('tiny', { vocabSize: 64, hiddenSize: 32, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, intermediateSize: 48, maxSeqLen: 32 });
  const B = 2, Tn = 16;
  const trng = new T.Rng(11);
  const tokens = Uint16Array.from({ length: 4000 }, (_, i) => (i * 7 + trng.int(5)) % 64);
  const modelOn = (b: Backend) => {
    const ref = new GPT(config, new T.Rng(5), cpu);
    const m = new GPT(config, new T.Rng(5), b);
    m.loadWeights(new Map([...ref.params].map(([name, p]) => [name, { shape: p.shape, data: Float32Array.from(p.dataSync()) }])), 'test');
    ref.dispose();
    return m;
  };

  it('loss and every parameter gradient', async () => {
    const batch = new BatchLoader(tokens, B, Tn, 3).next();
    const results: { loss: number; grads: Map<string, Float32Array> }[] = [];
    for (const b of [cpu, wasm] as Backend[]) {
      T.setDefaultBackend(b);
      const m = modelOn(b);
      const loss = await T.tidy(async () => {
        const l = m.loss(T.tensor(batch.x, [B, Tn], { dtype: 'int32', backend: b }), batch.y);
        T.backward(l);
        return l.item();
      });
      results.push({ loss, grads: new Map([...m.params].map(([name, p]) => [name, Float32Array.from(p.grad!.dataSync())])) });
      m.dispose();
    }
    T.setDefaultBackend(cpu);
    const [c, w] = results;
    expect(Math.abs(w.loss - c.loss) / c.loss).toBeLessThan(1e-4);
    for (const [name, want] of c.grads) {
      const got = w.grads.get(name)!;
      const scale = Math.max(...Array.from(want, Math.abs));
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i]), `${name}[${i}]`).toBeLessThanOrEqual(1e-3 * scale + 1e-3 * Math.abs(want[i]));
    }
  });

  it('20 training steps with Muon + AdamW track the CPU run; wasm live memory is flat', async () => {
    const curves: number[][] = [];
    for (const b of [cpu, wasm] as Backend[]) {
      T.setDefaultBackend(b);
      const m = modelOn(b);
      const opt = buildOptimizer(m.trainableParams(), { kind: 'muon', lr: 1e-2, weightDecay: 0 });
      const schedule = { lr: 1e-2, warmupSteps: 2, totalSteps: 20, warmdownFraction: 0.3, finalFraction: 0 };
      const trainer = new Trainer(m, opt.paramGroups.map((g) => ({ ...g, schedule })), new BatchLoader(tokens, B, Tn, 7), { gradAccum: 1, gradClip: 1 });
      const losses: number[] = [], mem: number[] = [], reserved: number[] = [];
      for (let s = 0; s < 20; s++) {
        losses.push((await trainer.trainStep(languageModelLoss)).loss);
        mem.push(b.bytesInUse());
        if (b === wasm) reserved.push(wasm.heap.bytesReserved());
      }
      for (const x of mem.slice(2)) expect(x).toBe(mem[1]);
      // the heap's high-water mark stops growing: every block after step 2 comes from a free list
      for (const x of reserved.slice(2)) expect(x).toBe(reserved[1]);
      curves.push(losses);
      T.noGrad(() => Object.values(opt.stateDict()).forEach((t) => t.dispose()));
      m.dispose();
    }
    T.setDefaultBackend(cpu);
    const [c, w] = curves;
    const mean5 = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean5(c.slice(15))).toBeLessThan(mean5(c.slice(0, 5)) - 0.3);
    // measured worst step 7.1e-8 relative (2026-12-03): the bound is ~14x that, so a kernel that
    // drifts by even a few float32 ulps per step fails here
    for (let s = 0; s < 20; s++) expect(Math.abs(w[s] - c[s]) / c[s], `step ${s + 1}`).toBeLessThan(1e-6);
  }, 120_000);
});
