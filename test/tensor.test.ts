// Forward values of every op against plain scalar loops, broadcasting edge cases, error
// messages, the memory lifecycle and the seeded RNG.
//
// Tolerance: the CPU backend computes in float32; the references here compute in float64
// JavaScript numbers. Elementwise ops round once (relative 2^-24 ~ 6e-8); sums and matmuls
// over <= 32 terms of magnitude <= 1 accumulate at most ~32 roundings, so 1e-5 absolute +
// 1e-5 relative covers every case here with margin while still catching any wrong index.
import { describe, expect, it } from 'vitest';
import { sizeOf, stridesOf } from '../src/backend/backend.ts';
import * as T from '../src/tensor/index.ts';

const rng = new T.Rng(7);
const rand = (shape: number[], lo = -1, hi = 1) => Array.from({ length: sizeOf(shape) }, () => lo + (hi - lo) * rng.uniform());

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-5) {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i], a = actual[i];
    if (e === Infinity || e === -Infinity) expect(a).toBe(e);
    else expect(Math.abs(a - e), `index ${i}: ${a} vs ${e}`).toBeLessThanOrEqual(tol + tol * Math.abs(e));
  }
}

/** Reference broadcasting: value of an input at a multi-index of the output. */
function at(data: number[], shape: number[], outIdx: number[]): number {
  const off = outIdx.length - shape.length;
  const st = stridesOf(shape);
  let k = 0;
  shape.forEach((d, i) => (k += (d === 1 ? 0 : outIdx[i + off]) * st[i]));
  return data[k];
}
function indices(shape: number[]): number[][] {
  const out: number[][] = [];
  const n = sizeOf(shape), st = stridesOf(shape);
  for (let f = 0; f < n; f++) out.push(shape.map((d, i) => Math.floor(f / st[i]) % d));
  return out;
}

describe('forward against scalar references', () => {
  const unaries: [string, (x: T.Tensor) => T.Tensor, (v: number) => number, number, number][] = [
    ['neg', T.neg, (v) => -v, -2, 2],
    ['exp', T.exp, Math.exp, -2, 2],
    ['log', T.log, Math.log, 0.1, 3],
    ['sqrt', T.sqrt, Math.sqrt, 0, 3],
    ['rsqrt', T.rsqrt, (v) => 1 / Math.sqrt(v), 0.1, 3],
    ['tanh', T.tanh, Math.tanh, -3, 3],
    ['sigmoid', T.sigmoid, (v) => 1 / (1 + Math.exp(-v)), -5, 5],
    ['relu', T.relu, (v) => Math.max(0, v), -2, 2],
    ['powScalar', (x) => T.pow(x, 2.5), (v) => v ** 2.5, 0, 2],
    ['mulScalar', (x) => T.mulScalar(x, 3), (v) => 3 * v, -2, 2],
    ['addScalar', (x) => T.addScalar(x, -1.5), (v) => v - 1.5, -2, 2],
  ];
  for (const [name, op, ref, lo, hi] of unaries) {
    it(`unary ${name}`, () => {
      const d = rand([3, 7], lo, hi);
      T.tidy(() => close(op(T.tensor(d, [3, 7])).dataSync(), d.map(ref)));
    });
  }

  const binaries: [string, (a: T.Tensor, b: T.Tensor) => T.Tensor, (a: number, b: number) => number][] = [
    ['add', T.add, (a, b) => a + b],
    ['sub', T.sub, (a, b) => a - b],
    ['mul', T.mul, (a, b) => a * b],
    ['div', T.div, (a, b) => a / b],
    ['lt', T.lt, (a, b) => +(a < b)],
    ['gt', T.gt, (a, b) => +(a > b)],
    ['eq', T.eq, (a, b) => +(a === b)],
  ];
  const shapePairs: [number[], number[]][] = [
    [[2, 3], [2, 3]],
    [[2, 3], [3]],
    [[2, 3], []],
    [[], [4]],
    [[2, 1, 4], [3, 1]],
    [[1], [5]],
    [[3, 1, 2], [1, 4, 1]],
  ];
  for (const [name, op, ref] of binaries) {
    it(`binary ${name} with broadcasting`, () => {
      for (const [sa, sb] of shapePairs) {
        const a = rand(sa), b = name === 'eq' ? rand(sb).map((v, i) => (i % 2 ? v : Math.fround(a[0]))) : rand(sb).map((v) => (name === 'div' ? v + 2 : v));
        T.tidy(() => {
          const out = op(T.tensor(a, sa), T.tensor(b, sb));
          const shape = T.broadcastShapes('ref', sa, sb);
          expect(out.shape).toEqual(shape);
          close(out.dataSync(), indices(shape).map((ix) => ref(Math.fround(at(a, sa, ix)), Math.fround(at(b, sb, ix)))));
        });
      }
    });
  }

  it('where and expand broadcast', () => {
    const c = rand([2, 1, 3]).map((v) => +(v > 0)), a = rand([4, 1]), b = rand([3]);
    T.tidy(() => {
      const out = T.where(T.tensor(c, [2, 1, 3]), T.tensor(a, [4, 1]), T.tensor(b, [3]));
      expect(out.shape).toEqual([2, 4, 3]);
      close(out.dataSync(), indices([2, 4, 3]).map((ix) => (at(c, [2, 1, 3], ix) ? at(a, [4, 1], ix) : at(b, [3], ix))));
      const e = T.expand(T.tensor(a, [4, 1]), [2, 4, 3]);
      close(e.dataSync(), indices([2, 4, 3]).map((ix) => at(a, [4, 1], ix)));
    });
  });

  it('sum and max along every axis, with keepdim', () => {
    const shape = [2, 3, 4], d = rand(shape);
    for (let axis = 0; axis < 3; axis++) {
      T.tidy(() => {
        const outShape = shape.filter((_, i) => i !== axis);
        const s = T.sum(T.tensor(d, shape), axis), m = T.max(T.tensor(d, shape), axis, true);
        expect(s.shape).toEqual(outShape);
        expect(m.shape).toEqual(shape.map((v, i) => (i === axis ? 1 : v)));
        const refSum: number[] = [], refMax: number[] = [];
        for (const ix of indices(outShape)) {
          let acc = 0, mx = -Infinity;
          for (let k = 0; k < shape[axis]; k++) {
            const full = [...ix.slice(0, axis), k, ...ix.slice(axis)];
            const v = Math.fround(at(d, shape, full));
            acc += v;
            mx = Math.max(mx, v);
          }
          refSum.push(acc);
          refMax.push(mx);
        }
        close(s.dataSync(), refSum);
        close(m.dataSync(), refMax);
      });
    }
  });

  it('matmul: every transpose combination, batched and broadcast, ragged sizes', () => {
    const M = 5, K = 67, N = 3; // K > the kernel's 64-wide block, not a multiple of 4
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const [ba, bb] of [[[], []], [[2], [2]], [[3], []], [[], [2]], [[2, 1], [3]]] as number[][][]) {
          const sa = [...ba, ...(transA ? [K, M] : [M, K])], sb = [...bb, ...(transB ? [N, K] : [K, N])];
          const a = rand(sa), b = rand(sb);
          const batch = T.broadcastShapes('ref', ba, bb);
          T.tidy(() => {
            const out = T.matmul(T.tensor(a, sa), T.tensor(b, sb), { transA, transB });
            expect(out.shape).toEqual([...batch, M, N]);
            const ref: number[] = [];
            for (const bi of indices(batch.length ? batch : [1])) {
              for (let i = 0; i < M; i++) {
                for (let j = 0; j < N; j++) {
                  let acc = 0;
                  for (let k = 0; k < K; k++) {
                    const ai = [...bi.slice(bi.length - ba.length), ...(transA ? [k, i] : [i, k])];
                    const bj = [...bi.slice(bi.length - bb.length), ...(transB ? [j, k] : [k, j])];
                    acc += Math.fround(at(a, sa, ai.slice(-sa.length))) * Math.fround(at(b, sb, bj.slice(-sb.length)));
                  }
                  ref.push(acc);
                }
              }
            }
            close(out.dataSync(), ref, 2e-5);
          });
        }
      }
    }
  });

  it('reshape, permute, slice, pad, concat', () => {
    const d = rand([2, 3, 4]);
    T.tidy(() => {
      const x = T.tensor(d, [2, 3, 4]);
      expect(T.reshape(x, [4, -1]).shape).toEqual([4, 6]);
      close(T.reshape(x, [24]).dataSync(), d);
      const p = T.permute(x, [2, 0, 1]);
      expect(p.shape).toEqual([4, 2, 3]);
      close(p.dataSync(), indices([4, 2, 3]).map(([k, i, j]) => at(d, [2, 3, 4], [i, j, k])));
      const s = T.slice(x, 2, 1, 3);
      close(s.dataSync(), indices([2, 3, 2]).map(([i, j, k]) => at(d, [2, 3, 4], [i, j, k + 1])));
      const pd = T.pad(s, 2, 1, 1);
      close(pd.dataSync(), indices([2, 3, 4]).map(([i, j, k]) => (k === 1 || k === 2 ? at(d, [2, 3, 4], [i, j, k]) : 0)));
      const c = T.concat([T.slice(x, 1, 0, 1), T.slice(x, 1, 1, 3)], 1);
      close(c.dataSync(), d);
    });
  });

  it('gather and scatterAdd with repeated indices', () => {
    const table = rand([5, 3]), idx = [4, 0, 4, 2];
    T.tidy(() => {
      const g = T.gather(T.tensor(table, [5, 3]), T.tensor(idx, [2, 2], { dtype: 'int32' }));
      expect(g.shape).toEqual([2, 2, 3]);
      close(g.dataSync(), idx.flatMap((r) => table.slice(r * 3, r * 3 + 3)));
      const src = rand([4, 3]);
      const s = T.scatterAdd(T.tensor(src, [4, 3]), T.tensor(idx, [4], { dtype: 'int32' }), 5);
      const ref = new Array(15).fill(0);
      idx.forEach((r, i) => [0, 1, 2].forEach((j) => (ref[r * 3 + j] += Math.fround(src[i * 3 + j]))));
      close(s.dataSync(), ref);
    });
  });

  it('softmax, logSoftmax and cross-entropy with an ignore index', () => {
    const d = rand([3, 5], -4, 4), targets = [2, -1, 4];
    T.tidy(() => {
      const x = T.tensor(d, [3, 5]);
      const sm = T.softmax(x).dataSync(), lsm = T.logSoftmax(x).dataSync();
      let ce = 0;
      for (let i = 0; i < 3; i++) {
        const row = d.slice(i * 5, i * 5 + 5).map(Math.fround), m = Math.max(...row);
        const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
        close(sm.slice(i * 5, i * 5 + 5), row.map((v) => Math.exp(v - m) / z));
        close(lsm.slice(i * 5, i * 5 + 5), row.map((v) => v - m - Math.log(z)));
        if (targets[i] !== -1) ce += -(row[targets[i]] - m - Math.log(z)) / 2;
      }
      close([T.crossEntropy(x, targets).itemSync()], [ce]);
      expect(() => T.crossEntropy(x, [0, 1, 5])).toThrow(/target 5 at row 2 is outside \[0, 5\)/);
    });
  });

  it('rmsnorm and rope', () => {
    const d = rand([2, 4]), w = rand([4]);
    T.tidy(() => {
      const y = T.rmsnorm(T.tensor(d, [2, 4]), T.tensor(w, [4]), 1e-6).dataSync();
      for (let i = 0; i < 2; i++) {
        const row = d.slice(i * 4, i * 4 + 4);
        const r = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / 4 + 1e-6);
        close(y.slice(i * 4, i * 4 + 4), row.map((v, j) => v * r * w[j]));
      }
      // RoPE by hand: position t rotates the pair (x_i, x_{i+HS/2}) by angle t * theta^(-2i/HS)
      const T_ = 3, HS = 4, x = rand([T_, HS]);
      const { cos, sin } = T.ropeTables(T_, HS, 100);
      const out = T.rope(T.tensor(x, [T_, HS]), cos, sin).dataSync();
      const ref: number[] = new Array(T_ * HS);
      for (let t = 0; t < T_; t++) {
        for (let i = 0; i < HS / 2; i++) {
          const a = t * 100 ** (-(2 * i) / HS), x1 = x[t * HS + i], x2 = x[t * HS + i + HS / 2];
          ref[t * HS + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
          ref[t * HS + i + HS / 2] = x2 * Math.cos(a) + x1 * Math.sin(a);
        }
      }
      close(out, ref);
      // position 0 is the identity; the rotation preserves each pair's norm
      close(out.slice(0, HS), x.slice(0, HS));
    });
  });

  it('causal grouped-query attention against explicit loops', () => {
    const B = 1, NH = 4, NKV = 2, Tq = 3, HS = 2;
    const q = rand([B, NH, Tq, HS]), k = rand([B, NKV, Tq, HS]), v = rand([B, NKV, Tq, HS]);
    T.tidy(() => {
      const out = T.attention(T.tensor(q, [B, NH, Tq, HS]), T.tensor(k, [B, NKV, Tq, HS]), T.tensor(v, [B, NKV, Tq, HS])).dataSync();
      const ref: number[] = [];
      for (let h = 0; h < NH; h++) {
        const kh = Math.floor(h / (NH / NKV));
        for (let t = 0; t < Tq; t++) {
          const s: number[] = [];
          for (let u = 0; u <= t; u++) {
            let dot = 0;
            for (let e = 0; e < HS; e++) dot += q[(h * Tq + t) * HS + e] * k[(kh * Tq + u) * HS + e];
            s.push(dot / Math.sqrt(HS));
          }
          const m = Math.max(...s), z = s.reduce((a, b) => a + Math.exp(b - m), 0);
          for (let e = 0; e < HS; e++) ref.push(s.reduce((acc, sv, u) => acc + (Math.exp(sv - m) / z) * v[(kh * Tq + u) * HS + e], 0));
        }
      }
      close(out, ref);
    });
  });
});

describe('errors say what and where', () => {
  it('bad shapes', () => {
    T.tidy(() => {
      const a = T.zeros([2, 3]), b = T.zeros([4, 3]);
      expect(() => T.add(a, b)).toThrow('add: shapes [2,3] and [4,3] cannot be broadcast together');
      expect(() => T.matmul(a, b)).toThrow(/matmul: inner dimensions differ: \[2,3\] @ \[4,3\] \(3 vs 4\)/);
      expect(() => T.reshape(a, [4, 2])).toThrow(/reshape: cannot reshape \[2,3\] \(6 elements\) to \[4,2\]/);
      expect(() => T.sum(a, 2)).toThrow(/sum: axis 2 is out of range for rank 2/);
      expect(() => T.slice(a, 1, 2, 5)).toThrow(/slice: range \[2, 5\) is not inside axis 1 of length 3/);
      expect(() => T.concat([a, T.zeros([2, 2, 1])], 1)).toThrow(/concat: shapes/);
      expect(() => T.permute(a, [0, 0])).toThrow(/not a permutation/);
      expect(() => T.tensor([1, 2, 3], [2, 2])).toThrow(/3 values do not fill shape \[2,2\]/);
    });
  });

  it('wrong dtypes and out-of-range indices', () => {
    T.tidy(() => {
      const ids = T.tensor([0, 1], [2], { dtype: 'int32' });
      expect(() => T.exp(ids)).toThrow(/exp: expected a float32 tensor, got tensor #\d+ int32\[2\]/);
      expect(() => T.gather(T.zeros([3, 2]), T.zeros([2]))).toThrow(/gather: expected int32 indices/);
      expect(() => T.gather(T.zeros([3, 2]), T.tensor([3], [1], { dtype: 'int32' }))).toThrow(/index 3 at position 0 is outside \[0, 3\)/);
    });
  });

  it('use after dispose names the tensor and the op that made it', () => {
    const a = T.ones([2]);
    const b = T.exp(a);
    b.dispose();
    expect(() => T.add(a, b)).toThrow(/use after dispose: tensor #\d+ float32\[2\] \(made by exp\) was disposed/);
    a.dispose();
  });
});

describe('memory lifecycle', () => {
  it('tidy frees intermediates, keeps returned and kept tensors; views share storage', () => {
    const before = T.memory();
    const kept = T.tidy(() => {
      const x = T.ones([4, 4]);
      T.keep(T.exp(x));
      const v = T.reshape(x, [16]);
      return T.add(v, v);
    });
    expect(T.memory().tensors - before.tensors).toBe(2); // the returned sum and the kept exp
    kept.dispose();
    const v = T.reshape(T.ones([4]), [2, 2]);
    expect(v.dataSync().length).toBe(4);
  });

  it('a 200-step training loop keeps live tensors and bytes flat', () => {
    const r = new T.Rng(3);
    const W1 = T.tensor(r.normalArray(8 * 16, 0.3), [8, 16], { requiresGrad: true });
    const W2 = T.tensor(r.normalArray(16 * 4, 0.3), [16, 4], { requiresGrad: true });
    const X = T.tensor(r.normalArray(32 * 8), [32, 8]);
    const y = Array.from({ length: 32 }, () => r.int(4));
    const state = [T.zeros([8, 16]), T.zeros([16, 4])];
    const counts: { tensors: number; bytes: number }[] = [];
    let first = 0, last = 0;
    for (let step = 0; step < 200; step++) {
      const loss = T.tidy(() => {
        const l = T.crossEntropy(T.matmul(T.relu(T.matmul(X, W1)), W2), y);
        T.backward(l);
        return l.itemSync();
      });
      T.noGrad(() =>
        T.tidy(() =>
          [W1, W2].forEach((p, i) => {
            state[i].assign(T.add(T.mulScalar(state[i], 0.9), p.grad!));
            p.assign(T.sub(p, T.mulScalar(state[i], 0.1)));
          }),
        ),
      );
      T.zeroGrad([W1, W2]);
      if (step === 0) first = loss;
      last = loss;
      counts.push(T.memory());
    }
    expect(last).toBeLessThan(first); // it really trained
    // from step 1 on, exactly the same number of live tensors and bytes
    for (const c of counts.slice(1)) expect(c).toEqual(counts[1]);
    [W1, W2, X, ...state].forEach((t) => t.dispose());
  });
});

describe('seeded RNG', () => {
  it('replays exactly and restores state', () => {
    const a = new T.Rng(42), b = new T.Rng(42), c = new T.Rng(43);
    const seqA = Array.from({ length: 5 }, () => a.uniform());
    expect(Array.from({ length: 5 }, () => b.uniform())).toEqual(seqA);
    expect(Array.from({ length: 5 }, () => c.uniform())).not.toEqual(seqA);
    a.normal(); // leaves a cached spare normal in the state
    const st = a.getState();
    const next = [a.normal(), a.normal(), a.int(10), a.uniform()];
    const d = new T.Rng(0);
    d.setState(JSON.parse(JSON.stringify(st)));
    expect([d.normal(), d.normal(), d.int(10), d.uniform()]).toEqual(next);
  });

  it('distributions have the right moments', () => {
    const r = new T.Rng(5), n = 20000;
    const u = Array.from({ length: n }, () => r.uniform());
    const z = Array.from({ length: n }, () => r.normal());
    const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
    expect(Math.abs(mean(u) - 0.5)).toBeLessThan(0.01); // sd of the mean: 0.29/sqrt(2e4) = 0.002
    expect(Math.abs(mean(z))).toBeLessThan(0.03); // sd 0.007
    expect(Math.abs(mean(z.map((v) => v * v)) - 1)).toBeLessThan(0.05); // sd 0.01
    const counts = new Array(3).fill(0);
    for (let i = 0; i < n; i++) counts[r.categorical([1, 2, 7])]++;
    expect(Math.abs(counts[2] / n - 0.7)).toBeLessThan(0.02); // sd 0.003
    expect(Math.abs(counts[0] / n - 0.1)).toBeLessThan(0.02);
    const ints = new Array(6).fill(0);
    for (let i = 0; i < 6000; i++) ints[r.int(6)]++;
    for (const k of ints) expect(Math.abs(k - 1000)).toBeLessThan(150); // sd 29
  });
});
