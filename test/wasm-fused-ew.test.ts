// The wasm backend's fused elementwise kernels (kernels/cpu/ops.wat: swiglu_forward,
// swiglu_backward, rope) and the elementwise split over threads (swiglu, rope, binary).
//
// Three checks, each on fresh random inputs:
//   - parity with the plain-loop reference (cpu-fused.ts) within float32 rounding
//     (atol 1e-6, rtol 1e-5: a few ulps of exp and a product or two; a wrong index or sign
//     is off by O(1));
//   - bit for bit the composed ops on the wasm backend, forward and gradients: the kernels
//     compute the same float32 operations in the same order (this is what keeps training
//     runs, e.g. the speedrun's numbers, unchanged by the fusion);
//   - 2 and 3 threads give the 1-thread bytes, and the work really was split.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Storage } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { cpuFused } from '../src/backend/cpu-fused.ts';
import { type WasmBackend, createWasmBackend } from '../src/backend/wasm.ts';
import * as T from '../src/tensor/index.ts';

const rng = new T.Rng(777);
const f32 = (s: Storage) => s as unknown as Float32Array;
const bits = (s: Storage | Float32Array) => Buffer.from(f32(s).buffer, f32(s).byteOffset, f32(s).byteLength);
const ATOL = 1e-6, RTOL = 1e-5;
// equal values pass as such (infinities: inf - inf is NaN)
function close(got: Storage, want: Storage, what: string) {
  const g = f32(got), w = f32(want);
  expect(g.length, what).toBe(w.length);
  for (let i = 0; i < w.length; i++) if (!(g[i] === w[i] || Math.abs(g[i] - w[i]) <= ATOL + RTOL * Math.abs(w[i]))) expect.fail(`${what}[${i}]: ${g[i]} vs ${w[i]}`);
}

describe('wasm fused elementwise kernels', () => {
  let w1: WasmBackend, w2: WasmBackend, w3: WasmBackend;
  beforeAll(async () => {
    [w1, w2, w3] = await Promise.all([createWasmBackend({ threads: 1 }), createWasmBackend({ threads: 2 }), createWasmBackend({ threads: 3 })]);
  });
  afterAll(() => {
    T.setDefaultBackend(cpu);
    for (const w of [w1, w2, w3]) w.destroy();
  });
  const cup = (x: Float32Array) => cpu.upload(x, 'float32');

  it('SwiGLU forward and backward match the reference (n not a multiple of 4: the tail too)', () => {
    for (const n of [1, 7, 64, 1001]) {
      const g = rng.normalArray(n, 3), u = rng.normalArray(n, 1), dh = rng.normalArray(n, 1);
      g[0] = -100; // exp(100) overflows inside the sigmoid: silu(-100) must still be ~0, not NaN
      const up = (x: Float32Array) => w1.upload(x, 'float32');
      close(w1.swigluForward(up(g), up(u), n), cpuFused.swigluForward(cup(g), cup(u), n), `h n=${n}`);
      const b = w1.swigluBackward(up(dh), up(g), up(u), n), r = cpuFused.swigluBackward(cup(dh), cup(g), cup(u), n);
      close(b.dg, r.dg, `dg n=${n}`);
      close(b.du, r.du, `du n=${n}`);
    }
  });

  it('RoPE forward and inverse match the reference (half not a multiple of 4: the scalar path too)', () => {
    for (const [R, Tn, HS] of [[3, 5, 8], [2, 4, 6], [1, 3, 20], [4, 7, 64]]) {
      const x = rng.normalArray(R * Tn * HS, 1), c = rng.normalArray(Tn * HS, 1), s = rng.normalArray(Tn * HS, 1); // halves differ
      const up = (a: Float32Array) => w1.upload(a, 'float32');
      for (const inverse of [false, true]) {
        close(w1.rope(up(x), up(c), up(s), R, Tn, HS, inverse), cpuFused.rope(cup(x), cup(c), cup(s), R, Tn, HS, inverse), `rope ${R}x${Tn}x${HS} inverse=${inverse}`);
      }
    }
  });

  it('fused = composed on wasm, bit for bit, values and gradients', () => {
    T.setDefaultBackend(w1);
    try {
      const run = (fused: boolean) =>
        T.tidy(() => {
          const r = new T.Rng(5);
          const g = T.tensor(r.normalArray(6 * 50, 2), [6, 50], { requiresGrad: true }), u = T.tensor(r.normalArray(6 * 50, 1), [6, 50], { requiresGrad: true });
          const x = T.tensor(r.normalArray(2 * 3 * 9 * 16, 1), [2, 3, 9, 16], { requiresGrad: true });
          const { cos, sin } = T.ropeTables(9, 16, 10000);
          const h = fused ? T.swigluFused(g, u) : T.mul(T.silu(g), u);
          const y = fused ? T.ropeFused(x, cos, sin) : T.rope(x, cos, sin);
          const R1 = T.tensor(r.normalArray(h.size, 1), h.shape), R2 = T.tensor(r.normalArray(y.size, 1), y.shape);
          T.backward(T.add(T.sumAll(T.mul(h, R1)), T.sumAll(T.mul(y, R2))));
          return [h, y, g.grad!, u.grad!, x.grad!].map((t) => Float32Array.from(t.dataSync()));
        });
      const a = run(true), b = run(false);
      ['h', 'rope', 'dg', 'du', 'dx'].forEach((name, i) => expect(bits(a[i]).equals(bits(b[i])), name).toBe(true));
    } finally {
      T.setDefaultBackend(cpu);
    }
  });

  it('split over 2 and 3 threads: the 1-thread bytes (swiglu, rope, binary by columns and by rows)', () => {
    const n = 600_003, R = 96, Tn = 64, HS = 64;
    const g = rng.normalArray(n, 2), u = rng.normalArray(n, 1), dh = rng.normalArray(n, 1);
    const x = rng.normalArray(R * Tn * HS, 1), { cos, sin } = T.noGrad(() => T.ropeTables(Tn, HS, 10000, 0, cpu));
    const c = Float32Array.from(cos.dataSync()), s = Float32Array.from(sin.dataSync());
    const rows = 700, cols = 1001, a2 = rng.normalArray(rows * cols, 1), b2 = rng.normalArray(cols, 1);
    const outs = [w1, w2, w3].map((w) => {
      const up = (v: Float32Array) => w.upload(v, 'float32');
      const before = w.threadPool.jobs;
      const fb = w.swigluBackward(up(dh), up(g), up(u), n);
      const o = [
        w.swigluForward(up(g), up(u), n), fb.dg, fb.du,
        w.rope(up(x), up(c), up(s), R, Tn, HS, false), w.rope(up(x), up(c), up(s), R, Tn, HS, true),
        w.binary('mul', up(g), [n], up(u), [n], [n]), // one row: bands of columns
        w.binary('add', up(a2), [rows, cols], up(b2), [1, cols], [rows, cols]), // a row broadcast: bands of rows
      ];
      return { o, jobs: w.threadPool.jobs - before };
    });
    expect(outs[0].jobs).toBe(0);
    for (const t of [1, 2]) {
      expect(outs[t].jobs, `${t + 1} threads`).toBe(6); // every call split
      outs[t].o.forEach((y, i) => expect(bits(y).equals(bits(outs[0].o[i])), `output ${i}, ${t + 1} threads`).toBe(true));
    }
    // and the split binary is still right
    close(outs[1].o[6], cpu.binary('add', cup(a2), [rows, cols], cup(b2), [1, cols], [rows, cols]), 'add, 2 threads');
  });

  it('mulScalar and addScalar split over 2 and 3 threads (the binary kernel, a broadcast scalar): the 1-thread bytes of the unary kernel', () => {
    // Muon's Newton–Schulz scales (k, K) matrices by constants that are not float32 numbers
    // (3.4445): the split path must round p to float32 as the unary kernel's f32 parameter does
    const n = 600_003; // not a multiple of 4: the one-float tail too
    const x = rng.normalArray(n, 1);
    x[5] = Infinity; x[6] = -0; x[7] = 0; x[n - 1] = -Infinity;
    const cases: ['mulScalar' | 'addScalar', number][] = [['mulScalar', 3.4445], ['mulScalar', -4.775], ['addScalar', 1e-7], ['addScalar', -2.0315]];
    const outs = [w1, w2, w3].map((w) => {
      const before = w.threadPool.jobs;
      const o = cases.map(([op, p]) => w.unary(op, w.upload(x, 'float32'), p));
      return { o, jobs: w.threadPool.jobs - before };
    });
    expect(outs[0].jobs).toBe(0);
    for (const t of [1, 2]) {
      expect(outs[t].jobs, `${t + 1} threads`).toBe(cases.length); // every call split
      outs[t].o.forEach((y, i) => expect(bits(y).equals(bits(outs[0].o[i])), `${cases[i][0]} ${cases[i][1]}, ${t + 1} threads`).toBe(true));
    }
    // and right: against the JS reference loop (float32 rounding of one product or sum)
    cases.forEach(([op, p], i) => close(outs[1].o[i], cpu.unary(op, cup(x), p), `${op} ${p}, 2 threads`));
  });
});
