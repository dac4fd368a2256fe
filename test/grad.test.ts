// Every differentiable op's gradient against central finite differences, all in float64.
//
// The tensors live on `cpu64` (the CPU backend with Float64Array storage), so both the
// analytic gradient from backward() and the finite differences are computed in double
// precision. For L = sum(f(x) * R) with a fixed random R, the central difference
// (L(x+h) - L(x-h)) / 2h has truncation error O(h^2 f''') ~ 1e-10 and rounding error
// O(eps_64 / h) ~ 1e-10 at h = 1e-5, so we require |analytic - numeric| <= 1e-6 * (1 + |numeric|).
//
// The test enumerates PRIM_OPS (from the gradient table) and COMPOSED_OPS: an op added to
// either list without a case below fails the "every op has a case" test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpu, cpu64 } from '../src/backend/cpu.ts';
import * as T from '../src/tensor/index.ts';

const H = 1e-5;
const TOL = 1e-6;

interface In {
  shape: number[];
  kind?: 'any' | 'positive' | 'int';
  /** for int inputs: values in [0, max) */
  max?: number;
  data?: number[];
}

type Case = { inputs: In[]; f: (...xs: T.Tensor[]) => T.Tensor };

const rng = new T.Rng(1234);

function makeData(inp: In): number[] {
  if (inp.data) return inp.data;
  const n = inp.shape.reduce((a, b) => a * b, 1);
  return Array.from({ length: n }, () => {
    if (inp.kind === 'int') return rng.int(inp.max ?? 4);
    if (inp.kind === 'positive') return 0.5 + rng.uniform() * 1.5;
    return rng.uniform() * 2 - 1;
  });
}

function gradCheck(c: Case): { maxErr: number; checked: number } {
  const datas = c.inputs.map(makeData);
  const build = (ds: number[][], grad: boolean) =>
    c.inputs.map((inp, i) =>
      T.tensor(ds[i], inp.shape, { dtype: inp.kind === 'int' ? 'int32' : 'float32', requiresGrad: grad && inp.kind !== 'int' }),
    );
  return T.tidy(() => {
    const xs = build(datas, true);
    const out = c.f(...xs);
    const R = T.tensor(Array.from({ length: out.size }, () => rng.uniform() * 2 - 1), out.shape);
    const loss = T.sumAll(T.mul(out, R));
    T.backward(loss);
    const lossAt = (ds: number[][]) => T.noGrad(() => T.tidy(() => T.sumAll(T.mul(c.f(...build(ds, false)), R)).itemSync()));
    let maxErr = 0, checked = 0;
    c.inputs.forEach((inp, i) => {
      if (inp.kind === 'int') return;
      const g = xs[i].grad ? xs[i].grad!.toArraySync() : new Array(datas[i].length).fill(0);
      for (let j = 0; j < datas[i].length; j++) {
        const plus = datas.map((d) => [...d]), minus = datas.map((d) => [...d]);
        plus[i][j] += H;
        minus[i][j] -= H;
        const num = (lossAt(plus) - lossAt(minus)) / (2 * H);
        const err = Math.abs(g[j] - num) / (1 + Math.abs(num));
        maxErr = Math.max(maxErr, err);
        checked++;
      }
    });
    xs.forEach((x) => T.zeroGrad([x]));
    return { maxErr, checked };
  });
}

const u = (shape: number[]): In => ({ shape });
/** Fixed random RoPE tables (the same on every call of a case's f). */
const ROPE_COS = Array.from({ length: 18 }, () => rng.uniform() * 2 - 1), ROPE_SIN = Array.from({ length: 18 }, () => rng.uniform() * 2 - 1);
const pos = (shape: number[]): In => ({ shape, kind: 'positive' });

// One case (or more) per primitive op. Comparisons have no gradient of their own; their case
// checks that the gradient through a mask they produce is right (and zero for the mask).
const PRIM_CASES: Record<T.PrimOp, Case[]> = {
  neg: [{ inputs: [u([2, 3])], f: T.neg }],
  exp: [{ inputs: [u([2, 3])], f: T.exp }],
  log: [{ inputs: [pos([2, 3])], f: T.log }],
  sqrt: [{ inputs: [pos([2, 3])], f: T.sqrt }],
  rsqrt: [{ inputs: [pos([2, 3])], f: T.rsqrt }],
  tanh: [{ inputs: [u([2, 3])], f: T.tanh }],
  sigmoid: [{ inputs: [u([2, 3])], f: T.sigmoid }],
  relu: [{ inputs: [u([3, 4])], f: T.relu }],
  powScalar: [
    { inputs: [pos([2, 3])], f: (x) => T.pow(x, 1.7) },
    { inputs: [u([2, 3])], f: (x) => T.pow(x, 3) },
  ],
  mulScalar: [{ inputs: [u([2, 3])], f: (x) => T.mulScalar(x, -2.5) }],
  addScalar: [{ inputs: [u([2, 3])], f: (x) => T.addScalar(x, 0.75) }],
  add: [
    { inputs: [u([2, 3]), u([3])], f: T.add },
    { inputs: [u([2, 1, 3]), u([4, 1])], f: T.add },
    { inputs: [u([]), u([2, 2])], f: T.add },
  ],
  sub: [{ inputs: [u([2, 1, 3]), u([4, 1])], f: T.sub }],
  mul: [{ inputs: [u([2, 3]), u([2, 1])], f: T.mul }, { inputs: [u([3]), u([3])], f: (a) => T.mul(a, a) }],
  div: [{ inputs: [u([2, 3]), pos([3])], f: T.div }],
  lt: [{ inputs: [u([3, 4]), u([4])], f: (a, b) => T.mul(T.lt(a, b), a) }],
  gt: [{ inputs: [u([3, 4]), u([3, 1])], f: (a, b) => T.mul(T.gt(a, b), T.add(a, b)) }],
  eq: [{ inputs: [u([2, 3])], f: (a) => T.mul(T.eq(a, T.detach(a)), a) }],
  where: [
    { inputs: [u([2, 3]), u([2, 3]), u([3])], f: (c, a, b) => T.where(T.gt(c, T.scalar(0)), a, b) },
  ],
  expand: [{ inputs: [u([3, 1])], f: (x) => T.expand(x, [2, 3, 4]) }],
  sum: [
    { inputs: [u([2, 3, 4])], f: (x) => T.sum(x, 1) },
    { inputs: [u([2, 3, 4])], f: (x) => T.sum(x, -1, true) },
  ],
  max: [{ inputs: [u([3, 5])], f: (x) => T.max(x, 1) }, { inputs: [u([3, 5])], f: (x) => T.max(x, 0, true) }],
  reshape: [{ inputs: [u([2, 6])], f: (x) => T.mul(T.reshape(x, [3, -1]), T.reshape(x, [3, 4])) }],
  permute: [{ inputs: [u([2, 3, 4])], f: (x) => T.permute(x, [2, 0, 1]) }],
  slice: [{ inputs: [u([3, 5])], f: (x) => T.slice(x, 1, 1, 4) }],
  pad: [{ inputs: [u([3, 2])], f: (x) => T.pad(x, 0, 1, 2) }],
  concat: [{ inputs: [u([2, 3]), u([2, 1]), u([2, 2])], f: (a, b, c) => T.concat([a, b, c], 1) }],
  matmul: [
    { inputs: [u([3, 4]), u([4, 2])], f: (a, b) => T.matmul(a, b) },
    { inputs: [u([4, 3]), u([4, 2])], f: (a, b) => T.matmul(a, b, { transA: true }) },
    { inputs: [u([3, 4]), u([2, 4])], f: (a, b) => T.matmul(a, b, { transB: true }) },
    { inputs: [u([4, 3]), u([2, 4])], f: (a, b) => T.matmul(a, b, { transA: true, transB: true }) },
    { inputs: [u([2, 3, 4]), u([2, 4, 2])], f: (a, b) => T.matmul(a, b) },
    { inputs: [u([2, 3, 4]), u([5, 4])], f: (a, b) => T.matmul(a, b, { transB: true }) },
    { inputs: [u([2, 3, 4]), u([4, 5])], f: (a, b) => T.matmul(a, b) },
    { inputs: [u([3, 4]), u([2, 4, 2])], f: (a, b) => T.matmul(a, b) },
    { inputs: [u([2, 1, 4, 3]), u([3, 2, 4])], f: (a, b) => T.matmul(a, b, { transA: true, transB: true }) },
  ],
  gather: [{ inputs: [u([5, 3]), { shape: [2, 3], kind: 'int', data: [0, 4, 0, 2, 2, 0] }], f: T.gather }],
  scatterAdd: [{ inputs: [u([4, 3]), { shape: [4], kind: 'int', data: [1, 3, 1, 0] }], f: (s, i) => T.scatterAdd(s, i, 5) }],
  crossEntropyFused: [
    { inputs: [u([4, 6])], f: (x) => T.crossEntropyFused(x, [1, 5, 0, 5]) },
    { inputs: [u([4, 6])], f: (x) => T.crossEntropyFused(x, [2, 7, 3, 7], 7) },
  ],
  targetLogprobsFused: [
    { inputs: [u([4, 6])], f: (x) => T.targetLogprobsFused(x, [1, 5, 0, 5]) },
    { inputs: [u([1, 3])], f: (x) => T.targetLogprobsFused(x, [2]) },
  ],
  rmsnormFused: [
    { inputs: [u([3, 4]), u([4])], f: (x, w) => T.rmsnormFused(x, w, 1e-6) },
    { inputs: [u([2, 2, 5])], f: (x) => T.rmsnormFused(x, null, 1e-5) },
  ],
  attentionFused: [
    { inputs: [u([1, 2, 3, 4]), u([1, 2, 3, 4]), u([1, 2, 3, 4])], f: (q, k, v) => T.attentionFused(q, k, v, true) },
    { inputs: [u([1, 4, 3, 2]), u([1, 2, 3, 2]), u([1, 2, 3, 2])], f: (q, k, v) => T.attentionFused(q, k, v, true) },
    { inputs: [u([2, 2, 2, 2]), u([2, 1, 3, 2]), u([2, 1, 3, 2])], f: (q, k, v) => T.attentionFused(q, k, v, true) },
    { inputs: [u([2, 2, 2, 2]), u([2, 1, 3, 2]), u([2, 1, 3, 2])], f: (q, k, v) => T.attentionFused(q, k, v, false) },
  ],
  // the fused elementwise chains (on cpu64: the reference loops of cpu-fused.ts)
  swigluFused: [
    { inputs: [u([3, 5]), u([3, 5])], f: (g, up) => T.swigluFused(g, up) },
    { inputs: [{ shape: [7], data: [-4, -1.5, -0.3, 0, 0.2, 1.1, 3.5] }, u([7])], f: (g, up) => T.swigluFused(g, up) },
  ],
  ropeFused: [
    {
      inputs: [u([2, 3, 4])],
      f: (x) => {
        const { cos, sin } = T.ropeTables(3, 4, 10000);
        return T.ropeFused(x, cos, sin);
      },
    },
    // tables whose halves differ: the backward is the exact adjoint, not only a rotation by -angle
    {
      inputs: [u([1, 2, 3, 6])],
      f: (x) => T.ropeFused(x, T.tensor(ROPE_COS, [3, 6]), T.tensor(ROPE_SIN, [3, 6])),
    },
  ],
  // recomputation: the gradient of x and of a parameter read inside (accumulated by the re-run),
  // x also used outside the checkpoint, and a checkpoint inside a checkpoint (re-entrant backward)
  checkpoint: [
    { inputs: [u([3, 4]), u([4, 4])], f: (x, w) => T.checkpoint((h) => T.mul(T.tanh(T.matmul(h, w)), h), x, [w]) },
    { inputs: [u([3, 4]), u([4, 4])], f: (x, w) => T.add(T.checkpoint((h) => T.matmul(T.silu(h), w), x, [w]), T.mul(x, x)) },
    {
      inputs: [u([2, 3]), u([3])],
      f: (x, g) => T.checkpoint((h) => T.mul(T.checkpoint((z) => T.sigmoid(T.mul(z, g)), h, [g]), T.rmsnorm(h, g)), x, [g]),
    },
  ],
};

const COMPOSED_CASES: Record<(typeof T.COMPOSED_OPS)[number], Case[]> = {
  mean: [{ inputs: [u([2, 3, 4])], f: (x) => T.mean(x, 1) }],
  sumAll: [{ inputs: [u([2, 3])], f: T.sumAll }],
  meanAll: [{ inputs: [u([2, 3])], f: T.meanAll }],
  silu: [{ inputs: [u([2, 3])], f: T.silu }],
  relu2: [{ inputs: [u([3, 4])], f: T.relu2 }],
  softmax: [{ inputs: [u([3, 5])], f: (x) => T.softmax(x, -1) }, { inputs: [u([3, 5])], f: (x) => T.softmax(x, 0) }],
  logSoftmax: [{ inputs: [u([3, 5])], f: (x) => T.logSoftmax(x, -1) }],
  crossEntropy: [
    { inputs: [u([4, 6])], f: (x) => T.crossEntropy(x, [1, 5, 0, 5]) },
    { inputs: [u([4, 6])], f: (x) => T.crossEntropy(x, [2, -1, 3, -1], -1) },
  ],
  targetLogprobs: [
    { inputs: [u([4, 6])], f: (x) => T.targetLogprobs(x, [1, 5, 0, 5]) },
    { inputs: [u([1, 3])], f: (x) => T.targetLogprobs(x, [2]) },
  ],
  rmsnorm: [{ inputs: [u([3, 4]), u([4])], f: (x, w) => T.rmsnorm(x, w, 1e-6) }],
  rope: [
    {
      inputs: [u([2, 3, 4])],
      f: (x) => {
        const { cos, sin } = T.ropeTables(3, 4, 10000);
        return T.rope(x, cos, sin);
      },
    },
  ],
  attention: [
    { inputs: [u([1, 2, 3, 4]), u([1, 2, 3, 4]), u([1, 2, 3, 4])], f: (q, k, v) => T.attention(q, k, v, true) },
    { inputs: [u([1, 4, 3, 2]), u([1, 2, 3, 2]), u([1, 2, 3, 2])], f: (q, k, v) => T.attention(q, k, v, true) },
    { inputs: [u([2, 2, 2, 2]), u([2, 1, 3, 2]), u([2, 1, 3, 2])], f: (q, k, v) => T.attention(q, k, v, false) },
  ],
};

beforeAll(() => T.setDefaultBackend(cpu64));
afterAll(() => T.setDefaultBackend(cpu));

describe('gradient checks (float64 finite differences)', () => {
  it('every primitive and composed op has a gradient case', () => {
    for (const op of T.PRIM_OPS) expect(PRIM_CASES[op]?.length ?? 0, `primitive ${op}`).toBeGreaterThan(0);
    for (const op of T.COMPOSED_OPS) expect(COMPOSED_CASES[op]?.length ?? 0, `composed ${op}`).toBeGreaterThan(0);
  });

  const all = [
    ...Object.entries(PRIM_CASES).map(([k, v]) => ['primitive', k, v] as const),
    ...Object.entries(COMPOSED_CASES).map(([k, v]) => ['composed', k, v] as const),
  ];
  for (const [kind, name, cases] of all) {
    it(`${kind} ${name}`, () => {
      for (const c of cases) {
        const { maxErr, checked } = gradCheck(c);
        expect(checked).toBeGreaterThan(0);
        expect(maxErr, `${name}: max relative error`).toBeLessThan(TOL);
      }
    });
  }

  it('a leaf used twice accumulates both contributions', () => {
    const { maxErr } = gradCheck({ inputs: [u([3])], f: (x) => T.add(T.mul(x, x), T.exp(x)) });
    expect(maxErr).toBeLessThan(TOL);
  });

  it('gradients accumulate across backward calls until zeroGrad', () => {
    T.tidy(() => {
      const x = T.tensor([1, 2, 3], [3], { requiresGrad: true });
      T.backward(T.sumAll(T.mul(x, x)));
      T.backward(T.sumAll(T.mul(x, x)));
      expect(x.grad!.toArraySync()).toEqual([4, 8, 12]);
      T.zeroGrad([x]);
      expect(x.grad).toBeNull();
    });
  });

  it('a frozen matmul operand gets no gradient; the other gets the same as when both train', () => {
    T.tidy(() => {
      const a = [1, -2, 0.5, 3, 0.25, -1], b = [2, 1, -1, 0.5, 4, -3];
      const A1 = T.tensor(a, [2, 3], { requiresGrad: true }), B1 = T.tensor(b, [3, 2], { requiresGrad: true });
      const A2 = T.tensor(a, [2, 3], { requiresGrad: true }), B2 = T.tensor(b, [3, 2]); // B2 frozen
      T.backward(T.sumAll(T.mul(T.matmul(A1, B1), T.matmul(A1, B1))));
      T.backward(T.sumAll(T.mul(T.matmul(A2, B2), T.matmul(A2, B2))));
      expect(B2.grad).toBeNull();
      expect(A2.grad!.toArraySync()).toEqual(A1.grad!.toArraySync());
      expect(A1.grad!.toArraySync().some((v) => v !== 0)).toBe(true);
    });
  });

  it('noGrad records nothing and backward refuses a loss without grad', () => {
    T.tidy(() => {
      const x = T.tensor([1, 2], [2], { requiresGrad: true });
      const y = T.noGrad(() => T.sumAll(T.mul(x, x)));
      expect(y.requiresGrad).toBe(false);
      expect(() => T.backward(y)).toThrow(/does not depend on anything that requires grad/);
      expect(() => T.backward(T.mul(x, x))).toThrow(/must be a scalar/);
    });
  });
});
