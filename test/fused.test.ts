// Fused ops against their composed references (float32 CPU): same values, same gradients.
// Tolerance 1e-5 relative + 1e-6 absolute: both compute the same maths in float32 with
// different summation orders and exp/log placements (a few ULP per element).
import { describe, expect, it } from 'vitest';
import * as T from '../src/tensor/index.ts';

const rng = new T.Rng(21);
const randT = (shape: number[], std = 1) => T.tensor(rng.normalArray(shape.reduce((a, b) => a * b, 1), std), shape, { requiresGrad: true });

function both(make: () => T.Tensor[], fused: (...x: T.Tensor[]) => T.Tensor, composed: (...x: T.Tensor[]) => T.Tensor) {
  const inputs = make();
  const run = (f: (...x: T.Tensor[]) => T.Tensor) =>
    T.tidy(() => {
      const y = f(...inputs);
      const R = T.tensor(Array.from({ length: y.size }, (_, i) => Math.sin(i + 1)), y.shape);
      T.backward(T.sumAll(T.mul(y, R)));
      const out = { y: y.toArraySync(), grads: inputs.map((x) => (x.grad ? x.grad.toArraySync() : [])) };
      T.zeroGrad(inputs);
      return out;
    });
  const a = run(fused), b = run(composed);
  const close = (x: number[], y: number[], what: string) => {
    expect(x.length, what).toBe(y.length);
    x.forEach((v, i) => expect(Math.abs(v - y[i]), `${what}[${i}]`).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(y[i])));
  };
  close(a.y, b.y, 'forward');
  a.grads.forEach((g, i) => close(g, b.grads[i], `grad of input ${i}`));
  inputs.forEach((t) => t.dispose());
}

describe('fused ops agree with their composed references', () => {
  it('cross-entropy, with and without ignored rows', () => {
    both(() => [randT([16, 50], 3)], (x) => T.crossEntropyFused(x, Array.from({ length: 16 }, (_, i) => (i * 7) % 50)), (x) => T.crossEntropy(x, Array.from({ length: 16 }, (_, i) => (i * 7) % 50)));
    const t = Array.from({ length: 16 }, (_, i) => (i % 3 === 0 ? -1 : i));
    both(() => [randT([16, 50])], (x) => T.crossEntropyFused(x, t), (x) => T.crossEntropy(x, t));
  });

  it('target log-probs, large logits and a repeated target', () => {
    const t = Array.from({ length: 24 }, (_, i) => (i * 11) % 70);
    both(() => [randT([24, 70], 4)], (x) => T.targetLogprobsFused(x, t), (x) => T.targetLogprobs(x, t));
    both(() => [randT([3, 5])], (x) => T.targetLogprobsFused(x, [4, 4, 0]), (x) => T.targetLogprobs(x, [4, 4, 0]));
  });

  it('target log-probs refuse a target outside the vocabulary, in one line', () => {
    const x = randT([2, 5]);
    expect(() => T.targetLogprobsFused(x, [0, 5])).toThrow(/target 5 at row 1 is outside \[0, 5\)/);
    expect(() => T.targetLogprobs(x, [-1, 0])).toThrow(/target -1 at row 0 is outside \[0, 5\)/);
    x.dispose();
  });

  it('RMSNorm with and without weight', () => {
    both(() => [randT([6, 32]), randT([32])], (x, w) => T.rmsnormFused(x, w, 1e-6), (x, w) => T.rmsnorm(x, w, 1e-6));
    both(() => [randT([2, 3, 8])], (x) => T.rmsnormFused(x, null, 1e-5), (x) => T.rmsnorm(x, null, 1e-5));
  });

  it('SwiGLU gate (on cpu: the reference loops of cpu-fused.ts)', () => {
    both(() => [randT([6, 13], 3), randT([6, 13])], (g, u) => T.swigluFused(g, u), (g, u) => T.mul(T.silu(g), u));
    expect(() => T.swigluFused(randT([2, 3]), randT([3, 2]))).toThrow(/gate \[2,3\] and up \[3,2\] differ in shape/);
  });

  it('RoPE: the model\'s tables, and tables whose halves differ (the backward is the adjoint)', () => {
    const { cos, sin } = T.ropeTables(5, 8, 10000);
    both(() => [randT([2, 3, 5, 8])], (x) => T.ropeFused(x, cos, sin), (x) => T.rope(x, cos, sin));
    const c = T.tensor(rng.normalArray(5 * 6, 1), [5, 6]), s = T.tensor(rng.normalArray(5 * 6, 1), [5, 6]);
    both(() => [randT([1, 5, 6])], (x) => T.ropeFused(x, c, s), (x) => T.rope(x, c, s));
    expect(() => T.ropeFused(randT([1, 4, 8]), c, s)).toThrow(/tables must be \(T, HS\) = \(4, 8\), got \[5,6\]/);
  });

  it('attention: causal, grouped-query, with a KV prefix, and non-causal', () => {
    both(() => [randT([2, 4, 9, 8]), randT([2, 2, 9, 8]), randT([2, 2, 9, 8])], (q, k, v) => T.attentionFused(q, k, v), (q, k, v) => T.attention(q, k, v));
    both(() => [randT([1, 2, 3, 4]), randT([1, 1, 7, 4]), randT([1, 1, 7, 4])], (q, k, v) => T.attentionFused(q, k, v), (q, k, v) => T.attention(q, k, v));
    both(() => [randT([1, 2, 5, 4]), randT([1, 2, 5, 4]), randT([1, 2, 5, 4])], (q, k, v) => T.attentionFused(q, k, v, false), (q, k, v) => T.attention(q, k, v, false));
  });
});
