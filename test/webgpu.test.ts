// Parity of the WebGPU backend with the CPU reference, op by op, then through autograd.
//
// Every Backend method runs on both backends on the same seeded random inputs; results must
// agree within a tolerance written next to each op, with the reason for it. Where the GPU
// computes the same IEEE float32 operation as the CPU (copies, +, -, *, comparisons, the
// deterministic scatter-add) the tolerance is zero. Where the summation order differs
// (reductions, matmul), the bound is the textbook one for float32 summation,
// |error| <= (n + 2) * u * sum |terms| with u = 2^-24, computed from the inputs themselves.
// Where WGSL allows transcendental functions a few ULP of error, a small relative tolerance.
//
// Runs on SwiftShader without a GPU (VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json).
// Skips only when no adapter can be created AND MINICHAT_REQUIRE_WEBGPU is unset.
import { afterAll, describe, expect, it } from 'vitest';
import type { BinaryOp, HostArray, Storage, UnaryOp } from '../src/backend/backend.ts';
import { sizeOf } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import type { WebGPUBackend } from '../src/backend/webgpu.ts';
import { matmulCase, webgpuOrSkip } from './gpu-device.ts';
import * as T from '../src/tensor/index.ts';
import { UserError } from '../src/util/errors.ts';

const gpu = await webgpuOrSkip('webgpu tests');
afterAll(() => gpu?.destroy()); // lets the forked test process exit

const U = 2 ** -24; // float32 unit roundoff

// ---- helpers ----
const rng = new T.Rng(1234);
const randn = (n: number, std = 1) => rng.normalArray(n, std);
const uniform = (n: number, lo: number, hi: number) => rng.uniformArray(n, lo, hi);
const ints = (n: number, k: number) => Float32Array.from({ length: n }, () => rng.int(k));

const up = (data: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => gpu!.upload(data, dtype);
const cpuUp = (data: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => cpu.upload(data, dtype);
const read = (s: Storage) => gpu!.read(s, 'float32') as Promise<Float32Array>;
const host = (s: Storage) => s as unknown as Float32Array;

/**
 * Elementwise |got - want| <= atol + rtol |want| (or <= bound[i] when a per-element bound is
 * given). NaN must match NaN and infinities must match exactly. Reports the worst element.
 */
function expectClose(got: HostArray, want: HostArray, tol: { atol?: number; rtol?: number; bound?: ArrayLike<number> }, what: string) {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    if (Number.isNaN(w) || !Number.isFinite(w)) {
      if (!Object.is(g, w) && !(Number.isNaN(g) && Number.isNaN(w))) { worst = i; worstExcess = Infinity; break; }
      continue;
    }
    const allowed = tol.bound ? tol.bound[i] : (tol.atol ?? 0) + (tol.rtol ?? 0) * Math.abs(w);
    const excess = Math.abs(g - w) - allowed;
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    const allowed = tol.bound ? tol.bound[worst] : (tol.atol ?? 0) + (tol.rtol ?? 0) * Math.abs(want[worst]);
    expect.fail(`${what}: element ${worst}: webgpu ${got[worst]} vs cpu ${want[worst]} (allowed ${allowed})`);
  }
}

const abs = (x: Float32Array) => x.map(Math.abs);

describe.skipIf(!gpu)('webgpu backend parity with cpu', () => {
  // ---------------------------------------------------------------------------------
  // memory
  // ---------------------------------------------------------------------------------
  it('uploads, reads back and zero-fills float32 and int32', async () => {
    const f = randn(37), i = Int32Array.from({ length: 37 }, () => rng.int(1000) - 500);
    expect(await read(up(f))).toEqual(f);
    expect(await gpu!.read(up(i, 'int32'), 'int32')).toEqual(i);
    // a pooled buffer that held data must come back zeroed from zeros()
    const s = up(randn(16));
    gpu!.free(s);
    expect(Array.from(await read(gpu!.zeros(16, 'float32')))).toEqual(new Array(16).fill(0));
    expect(Array.from(await gpu!.read(gpu!.zeros(0, 'int32'), 'int32'))).toEqual([]);
  });

  it('rejects a buffer larger than the device allows, naming the limit', () => {
    const limit = Math.min(gpu!.limits.maxStorageBufferBindingSize, gpu!.limits.maxBufferSize);
    const tooBig = limit / 4 + 1024;
    expect(() => gpu!.zeros(tooBig, 'float32')).toThrow(UserError);
    expect(() => gpu!.zeros(tooBig, 'float32')).toThrow(/max(StorageBufferBinding|Buffer)Size.*smaller batch size/);
  });

  it('batches dispatches into few submits', async () => {
    const before = { ...gpu!.stats };
    let x = up(randn(64));
    for (let k = 0; k < 300; k++) x = gpu!.unary('addScalar', x, 1);
    await read(x);
    const dispatches = gpu!.stats.dispatches - before.dispatches, submits = gpu!.stats.submits - before.submits;
    expect(dispatches).toBe(300);
    expect(submits).toBeLessThanOrEqual(Math.ceil(300 / 128) + 1); // one per 128 dispatches + the read
  });

  // ---------------------------------------------------------------------------------
  // elementwise
  // ---------------------------------------------------------------------------------
  // Tolerances (relative unless noted), from WGSL's accuracy rules (spec §16.2):
  const UNARY: [UnaryOp, number, () => Float32Array, { atol?: number; rtol?: number }, string][] = [
    ['neg', 0, () => randn(1000), {}, 'exact: sign flip'],
    ['relu', 0, () => randn(1000), {}, 'exact: a comparison'],
    ['mulScalar', 0.375, () => randn(1000), {}, 'exact: 0.375 is a float32, one rounded product'],
    ['mulScalar', 0.1, () => randn(1000), { rtol: 2 * U }, '0.1 is rounded to float32 on the GPU, a double on the CPU'],
    ['addScalar', -2.5, () => randn(1000), {}, 'exact: one rounded sum'],
    ['exp', 0, () => uniform(1000, -10, 10), { rtol: 2e-6 }, 'WGSL exp: 3 + 2|x| ULP, |x| <= 10 gives 23 ULP ~ 1.4e-6'],
    ['log', 0, () => uniform(1000, 0.01, 100), { atol: 2 ** -21, rtol: 4 * U }, 'WGSL log: 3 ULP, or 2^-21 absolute near 1'],
    ['sqrt', 0, () => uniform(1000, 0, 100), { rtol: 3 * U }, 'WGSL sqrt: 2.5 ULP'],
    ['rsqrt', 0, () => uniform(1000, 0.01, 100), { rtol: 2 * U }, 'WGSL inverseSqrt: 2 ULP'],
    ['tanh', 0, () => randn(1000, 3), { atol: 1e-6 }, 'WGSL tanh is derived from exp: absolute error ~1e-6 near 0'],
    ['sigmoid', 0, () => randn(1000, 4), { atol: 1e-6, rtol: 1e-6 }, 'built from exp (23 ULP) and a division (2.5 ULP)'],
    ['powScalar', 2, () => randn(1000), {}, 'exact: computed as x * x'],
    ['powScalar', 3, () => randn(1000), { rtol: 3e-6 }, 'exp2(3 log2 |x|) with the sign restored: ~40 ULP for |x| < 4'],
    ['powScalar', 0.5, () => uniform(1000, 0, 10), { atol: 1e-7, rtol: 3e-6 }, 'exp2(p log2 x)'],
    ['powScalar', -1.5, () => uniform(1000, 0.1, 10), { rtol: 3e-6 }, 'exp2(p log2 x)'],
  ];
  for (const [op, param, gen, tol, why] of UNARY) {
    it(`unary ${op}(${param}) (${why})`, async () => {
      const x = gen();
      expectClose(await read(gpu!.unary(op, up(x), param)), host(cpu.unary(op, cpuUp(x), param)), tol, op);
    });
  }

  it('unary edge values: relu(NaN) = 0, signed zeros and negatives under pow', async () => {
    const x = Float32Array.from([0, -0, 2, -2]);
    expectClose(await read(gpu!.unary('relu', up([NaN, -1, 1]), 0)), host(cpu.unary('relu', cpuUp([NaN, -1, 1]), 0)), {}, 'relu');
    expectClose(await read(gpu!.unary('powScalar', up(x), 3)), host(cpu.unary('powScalar', cpuUp(x), 3)), { rtol: 3e-6 }, 'x^3');
    expectClose(await read(gpu!.unary('powScalar', up(x), -2)), host(cpu.unary('powScalar', cpuUp(x), -2)), { rtol: 3e-6 }, 'x^-2');
    expectClose(await read(gpu!.unary('powScalar', up(x), -1)), host(cpu.unary('powScalar', cpuUp(x), -1)), { rtol: 3e-6 }, 'x^-1');
    expectClose(await read(gpu!.unary('powScalar', up(x), 0.5)), host(cpu.unary('powScalar', cpuUp(x), 0.5)), { rtol: 3e-6 }, 'x^0.5 (NaN for -2)');
  });

  // Broadcast cases: [aShape, bShape, outShape] at equal rank (ops.ts pads ranks first).
  const BCAST: [number[], number[], number[]][] = [
    [[5, 7], [5, 7], [5, 7]], // same shape: the fast path
    [[5, 7], [1, 1], [5, 7]], // b a scalar: the other fast path
    [[1, 1], [5, 7], [5, 7]], // a a scalar: general path
    [[5, 7], [1, 7], [5, 7]], // row vector
    [[5, 1], [1, 7], [5, 7]], // outer product shape
    [[3, 1, 4], [3, 5, 1], [3, 5, 4]],
    [[2, 1, 3, 1, 2], [1, 4, 1, 5, 2], [2, 4, 3, 5, 2]], // rank 5
  ];
  const BINARY_TOL: Record<BinaryOp, { rtol?: number }> = {
    add: {}, sub: {}, mul: {}, // exact: one correctly rounded IEEE operation on both sides
    div: { rtol: 3 * U }, // WGSL division: 2.5 ULP
    lt: {}, gt: {}, eq: {}, // exact: 0 or 1
  };
  for (const op of Object.keys(BINARY_TOL) as BinaryOp[]) {
    it(`binary ${op} with broadcasting`, async () => {
      for (const [as, bs, os] of BCAST) {
        // comparisons on small integers, so that eq and ties actually happen
        const cmp = op === 'lt' || op === 'gt' || op === 'eq';
        const a = cmp ? ints(sizeOf(as), 3) : randn(sizeOf(as));
        const b = cmp ? ints(sizeOf(bs), 3) : op === 'div' ? uniform(sizeOf(bs), 0.5, 2) : randn(sizeOf(bs));
        const g = await read(gpu!.binary(op, up(a), as, up(b), bs, os));
        expectClose(g, host(cpu.binary(op, cpuUp(a), as, cpuUp(b), bs, os)), BINARY_TOL[op], `${op} [${as}] [${bs}]`);
      }
    });
  }

  it('where with broadcasting (exact: a selection)', async () => {
    const cases: number[][][] = [
      [[4, 6], [4, 6], [4, 6], [4, 6]],
      [[4, 1], [1, 6], [1, 1], [4, 6]],
      [[1, 6], [4, 6], [4, 1], [4, 6]],
      [[2, 3, 1], [1, 3, 4], [2, 1, 4], [2, 3, 4]],
    ];
    for (const [cs, as, bs, os] of cases) {
      const c = ints(sizeOf(cs), 2), a = randn(sizeOf(as)), b = randn(sizeOf(bs));
      const g = await read(gpu!.where(up(c), cs, up(a), as, up(b), bs, os));
      expectClose(g, host(cpu.where(cpuUp(c), cs, cpuUp(a), as, cpuUp(b), bs, os)), {}, `where [${cs}] [${as}] [${bs}]`);
    }
  });

  it('expand (exact: copies)', async () => {
    for (const [xs, os] of [[[3, 1, 4], [3, 5, 4]], [[1], [6]], [[1, 1], [3, 2]], [[2, 1, 1], [2, 3, 70]]]) {
      const x = randn(sizeOf(xs));
      expectClose(await read(gpu!.expand(up(x), xs, os)), host(cpu.expand(cpuUp(x), xs, os)), {}, `expand [${xs}] -> [${os}]`);
    }
  });

  // ---------------------------------------------------------------------------------
  // reductions
  // ---------------------------------------------------------------------------------
  it('reduce sum and max on every axis, rows longer than a workgroup, columns wider than a tile', async () => {
    const shapes = [[3, 4, 5], [2, 300], [300, 3], [2, 37, 19], [1000], [1, 1]];
    for (const shape of shapes) {
      const x = randn(sizeOf(shape));
      for (let axis = 0; axis < shape.length; axis++) {
        // max: exact (a selection). sum: a tree order on the GPU, left to right on the CPU;
        // both are within (n + 2) u sum|x| of the exact sum, so of each other within twice that.
        expectClose(await read(gpu!.reduce('max', up(x), shape, axis)), host(cpu.reduce('max', cpuUp(x), shape, axis)), {}, `max [${shape}] axis ${axis}`);
        const absSum = host(cpu.reduce('sum', cpuUp(abs(x)), shape, axis));
        const n = shape[axis];
        const bound = absSum.map((s) => 2 * (n + 2) * U * s);
        expectClose(await read(gpu!.reduce('sum', up(x), shape, axis)), host(cpu.reduce('sum', cpuUp(x), shape, axis)), { bound }, `sum [${shape}] axis ${axis}`);
      }
    }
  });

  it('reduce max propagates NaN like the CPU', async () => {
    const x = Float32Array.from([1, NaN, 3, 4, 5, 6]);
    expectClose(await read(gpu!.reduce('max', up(x), [2, 3], 1)), host(cpu.reduce('max', cpuUp(x), [2, 3], 1)), {}, 'max rows');
    expectClose(await read(gpu!.reduce('max', up(x), [2, 3], 0)), host(cpu.reduce('max', cpuUp(x), [2, 3], 0)), {}, 'max cols');
  });

  // ---------------------------------------------------------------------------------
  // matmul
  // ---------------------------------------------------------------------------------
  /** Run one matmul on both backends; tolerance (K + 2) u (|A| |B|)_ij per element, doubled. */
  async function checkMatmul(aShape: number[], bShape: number[], transA: boolean, transB: boolean) {
    const c = matmulCase(cpu, randn, aShape, bShape, transA, transB);
    expectClose(await read(gpu!.matmul(up(c.a), up(c.b), c.p)), c.want, { bound: c.bound }, c.what);
  }


  it('matmul: all four transpose combinations on ragged shapes (not multiples of the 64 x 64 x 16 tile)', async () => {
    const [M, K, N] = [67, 33, 70];
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        await checkMatmul(transA ? [K, M] : [M, K], transB ? [N, K] : [K, N], transA, transB);
      }
    }
  });

  it('matmul: vectorised (vec4) and scalar loads, all layouts, multiples of 4 and ragged edges', async () => {
    // dims divisible by 4 take the 16-byte load path; 68 x 36 x 72 also leaves partial tiles
    const [M, K, N] = [68, 36, 72];
    for (const vec of [true, false]) {
      gpu!.vectorLoads = vec;
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          await checkMatmul(transA ? [K, M] : [M, K], transB ? [N, K] : [K, N], transA, transB);
          await checkMatmul(transA ? [2, K, M] : [2, M, K], transB ? [2, N, K] : [2, K, N], transA, transB); // batch offsets
        }
      }
    }
    gpu!.vectorLoads = true;
  });

  it('matmul: tiny and degenerate shapes (1 x 1, a vector, K = 0)', async () => {
    await checkMatmul([1, 1], [1, 1], false, false);
    await checkMatmul([1, 17], [17, 5], false, false);
    await checkMatmul([9, 3], [3, 1], false, false);
    await checkMatmul([4, 0], [0, 3], false, false); // empty sum: zeros
  });

  it('matmul: batched, broadcast batch, and a shared 2-D weight', async () => {
    await checkMatmul([2, 3, 5, 7], [2, 3, 7, 4], false, false); // full batch
    await checkMatmul([2, 1, 5, 7], [3, 7, 4], false, false); // batch (2, 1) with (3) -> (2, 3)
    await checkMatmul([2, 3, 7, 5], [7, 4], true, false); // a weight without batch dims
    await checkMatmul([6, 9], [2, 3, 11, 9], false, true); // a 2-D left operand, batched right
    await checkMatmul([2, 2, 13, 70], [2, 2, 70, 13], true, true);
  });

  // ---------------------------------------------------------------------------------
  // layout (all exact: copies)
  // ---------------------------------------------------------------------------------
  it('permute', async () => {
    const cases: [number[], number[]][] = [[[5, 7], [1, 0]], [[2, 3, 4, 5], [3, 1, 0, 2]], [[2, 3, 4], [0, 2, 1]], [[4], [0]]];
    for (const [shape, perm] of cases) {
      const x = randn(sizeOf(shape));
      expectClose(await read(gpu!.permute(up(x), shape, perm)), host(cpu.permute(cpuUp(x), shape, perm)), {}, `permute [${shape}] by [${perm}]`);
    }
  });

  it('slice, pad and concat on every axis', async () => {
    const shape = [3, 4, 5];
    const x = randn(60), y = randn(60);
    for (let axis = 0; axis < 3; axis++) {
      const n = shape[axis];
      expectClose(await read(gpu!.slice(up(x), shape, axis, 1, n)), host(cpu.slice(cpuUp(x), shape, axis, 1, n)), {}, `slice axis ${axis}`);
      expectClose(await read(gpu!.slice(up(x), shape, axis, 0, 1)), host(cpu.slice(cpuUp(x), shape, axis, 0, 1)), {}, `slice first axis ${axis}`);
      expectClose(await read(gpu!.pad(up(x), shape, axis, 2, 1)), host(cpu.pad(cpuUp(x), shape, axis, 2, 1)), {}, `pad axis ${axis}`);
      expectClose(await read(gpu!.pad(up(x), shape, axis, 0, 3)), host(cpu.pad(cpuUp(x), shape, axis, 0, 3)), {}, `pad after axis ${axis}`);
      const s2 = shape.map((d, i) => (i === axis ? 2 : d));
      const z = randn(sizeOf(s2));
      expectClose(
        await read(gpu!.concat([up(x), up(z), up(y)], [shape, s2, shape], axis)),
        host(cpu.concat([cpuUp(x), cpuUp(z), cpuUp(y)], [shape, s2, shape], axis)), {}, `concat axis ${axis}`,
      );
    }
  });

  // ---------------------------------------------------------------------------------
  // embedding
  // ---------------------------------------------------------------------------------
  it('gather and scatterAdd with repeated indices (scatterAdd bit-identical: same order)', async () => {
    for (const [V, C, N, used] of [[10, 7, 50, 5], [300, 3, 40, 300], [6, 33, 1, 6]]) {
      const table = randn(V * C), src = randn(N * C);
      const idx = Int32Array.from({ length: N }, () => rng.int(used)); // many repeats when used < N
      expectClose(await read(gpu!.gather(up(table), V, C, up(idx, 'int32'), N)), host(cpu.gather(cpuUp(table), V, C, cpuUp(idx, 'int32'), N)), {}, 'gather');
      expectClose(await read(gpu!.scatterAdd(up(src), N, C, up(idx, 'int32'), V)), host(cpu.scatterAdd(cpuUp(src), N, C, cpuUp(idx, 'int32'), V)), {}, 'scatterAdd');
    }
  });

  it('an out-of-range index is reported at the next read, then cleared', async () => {
    const table = up(randn(12)); // (4, 3)
    const out = gpu!.gather(table, 4, 3, up([0, 4, 1], 'int32'), 3);
    await expect(read(out)).rejects.toThrow(/gather.*index 4 at position 1/);
    const bad = gpu!.scatterAdd(up(randn(6)), 2, 3, up([-1, 0], 'int32'), 4);
    await expect(read(bad)).rejects.toThrow(/scatterAdd.*index -1 at position 0/);
    expect(Array.from(await read(up([1, 2])))).toEqual([1, 2]); // the error does not stick
  });

  // ---------------------------------------------------------------------------------
  // through the tensor engine: a composed graph and its gradients
  // ---------------------------------------------------------------------------------
  it('gradients of a small MLP with RMSNorm, SiLU and cross-entropy match the CPU', async () => {
    const [N, D, H, V] = [12, 10, 16, 7];
    const data = { x: randn(N * D), w1: randn(D * H, 0.3), b1: randn(H, 0.1), g: uniform(H, 0.5, 1.5), w2: randn(H * V, 0.3) };
    const targets = Array.from({ length: N }, (_, i) => (i % 5 === 4 ? -1 : rng.int(V))); // some ignored rows
    async function run(backend: typeof cpu | WebGPUBackend) {
      const p = (d: Float32Array, shape: number[]) => T.tensor(d, shape, { backend, requiresGrad: true });
      const W1 = p(data.w1, [D, H]), b1 = p(data.b1, [H]), g = p(data.g, [H]), W2 = p(data.w2, [H, V]);
      const x = T.tensor(data.x, [N, D], { backend });
      const out = await T.tidy(async () => {
        const h = T.silu(T.rmsnorm(T.add(T.matmul(x, W1), b1), g)); // (N, H)
        const logits = T.matmul(T.reshape(h, [3, 4, H]), W2); // batched (3, 4, V) against a shared weight
        const loss = T.crossEntropy(T.reshape(logits, [N, V]), targets);
        T.backward(loss);
        return { loss: await loss.item(), grads: await Promise.all([W1, b1, g, W2].map((t) => t.grad!.data())) };
      });
      [W1, b1, g, W2, x].forEach((t) => t.dispose());
      return out;
    }
    const want = await run(cpu), got = await run(gpu!);
    // Each gradient is a chain of ~10 float32 ops, several of them sums over 10-16 terms in a
    // different order on each backend: agreement to ~1e-5 relative is what float32 allows.
    expect(Math.abs(got.loss - want.loss)).toBeLessThan(1e-5 * Math.abs(want.loss));
    const names = ['W1', 'b1', 'g', 'W2'];
    got.grads.forEach((gr, i) => expectClose(gr, want.grads[i], { atol: 1e-6, rtol: 1e-4 }, `d${names[i]}`));
  });

  it('live memory is flat and nothing new is allocated across 20 training steps', async () => {
    const [N, D, V] = [8, 6, 5];
    const be = gpu!;
    const W = T.tensor(randn(D * V, 0.5), [D, V], { backend: be, requiresGrad: true });
    const x = T.tensor(randn(N * D), [N, D], { backend: be });
    const y = Array.from({ length: N }, () => rng.int(V));
    const bytes: number[] = [], created: number[] = [];
    for (let step = 0; step < 20; step++) {
      T.tidy(() => {
        T.backward(T.crossEntropy(T.matmul(x, W), y));
      });
      T.noGrad(() => T.tidy(() => W.assign(T.sub(W, T.mulScalar(W.grad!, 0.1)))));
      T.zeroGrad([W]);
      await be.sync();
      bytes.push(be.bytesInUse());
      created.push(be.stats.buffersCreated);
    }
    expect(new Set(bytes).size, `bytesInUse per step: ${bytes}`).toBe(1);
    expect(created[19], `buffers created per step: ${created}`).toBe(created[2]);
    W.dispose();
    x.dispose();
  });
});
