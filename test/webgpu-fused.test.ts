// The fused kernels (src/backend/fused.ts) on WebGPU against their plain-loop references
// (src/backend/cpu-fused.ts), and the references against the composed tensor-level
// definitions (src/tensor/composed.ts) with autograd, so that "the same semantics" is checked
// and not just assumed. Tolerances are written per kernel with the reason.
//
// Skips only when no WebGPU adapter can be created AND MINICHAT_REQUIRE_WEBGPU is unset.
import { afterAll, describe, expect, it } from 'vitest';
import type { HostArray, Storage } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { cpuFused } from '../src/backend/cpu-fused.ts';
import { type AttentionShape, hasFused } from '../src/backend/fused.ts';
import { webgpuOrSkip } from './gpu-device.ts';
import * as T from '../src/tensor/index.ts';

const gpu = await webgpuOrSkip('webgpu fused tests');
afterAll(() => gpu?.destroy());

const rng = new T.Rng(99);
const randn = (n: number, std = 1) => rng.normalArray(n, std);
const up = (d: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => gpu!.upload(d, dtype);
const cup = (d: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => cpu.upload(d, dtype);
const read = (s: Storage) => gpu!.read(s, 'float32') as Promise<Float32Array>;
const host = (s: Storage) => s as unknown as Float32Array;

/** |got - want| <= atol + rtol |want| everywhere; reports the worst element. */
function expectClose(got: HostArray, want: HostArray, atol: number, rtol: number, what: string) {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = -1, excess = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) - (atol + rtol * Math.abs(want[i]));
    if (!(e <= 0) && (worst < 0 || e > excess || Number.isNaN(e))) [worst, excess] = [i, e];
  }
  if (worst >= 0) expect.fail(`${what}: element ${worst}: got ${got[worst]} want ${want[worst]} (atol ${atol}, rtol ${rtol})`);
}

describe('cpu-fused references agree with the composed tensor ops', () => {
  // float32 on both sides, different operation order: 1e-5 relative covers the rounding of
  // sums over a few dozen terms (each term rounded once, ~6e-8 each).
  const TOL = [1e-5, 1e-4] as const;

  it('cross-entropy forward and backward = composed crossEntropy and its gradient', () => {
    const [N, V] = [9, 13];
    const x = randn(N * V, 2);
    const targets = Array.from({ length: N }, (_, i) => (i % 4 === 1 ? -1 : rng.int(V)));
    const logits = T.tensor(x, [N, V], { requiresGrad: true });
    const loss = T.crossEntropy(logits, targets);
    T.backward(loss);
    const f = cpuFused.crossEntropyForward(cup(x), cup(targets, 'int32'), N, V);
    expectClose(host(f.loss), Float32Array.of(loss.itemSync()), TOL[0], TOL[1], 'loss');
    const dx = cpuFused.crossEntropyBackward(cup(x), cup(targets, 'int32'), f.lse, cup([1]), N, V);
    expectClose(host(dx), logits.grad!.dataSync(), TOL[0], TOL[1], 'dlogits');
  });

  it('target log-probs forward and backward = composed targetLogprobs and its gradient', () => {
    const [M, V] = [9, 13];
    const x = randn(M * V, 2), g = randn(M);
    const targets = Array.from({ length: M }, () => rng.int(V));
    const logits = T.tensor(x, [M, V], { requiresGrad: true });
    const logp = T.targetLogprobs(logits, targets);
    T.backward(logp, T.tensor(g, [M]));
    const f = cpuFused.targetLogprobsForward(cup(x), cup(targets, 'int32'), M, V);
    expectClose(host(f.logp), logp.dataSync(), TOL[0], TOL[1], 'logp');
    const dx = cpuFused.targetLogprobsBackward(cup(x), cup(targets, 'int32'), f.lse, cup(g), M, V);
    expectClose(host(dx), logits.grad!.dataSync(), TOL[0], TOL[1], 'dlogits');
  });

  it('RMSNorm forward and backward = composed rmsnorm', () => {
    const [R, C] = [5, 24];
    const x = randn(R * C), w = randn(C), dy = randn(R * C);
    const xt = T.tensor(x, [R, C], { requiresGrad: true }), wt = T.tensor(w, [C], { requiresGrad: true });
    const y = T.rmsnorm(xt, wt, 1e-6);
    T.backward(y, T.tensor(dy, [R, C]));
    const f = cpuFused.rmsnormForward(cup(x), cup(w), R, C, 1e-6);
    expectClose(host(f.y), y.dataSync(), TOL[0], TOL[1], 'y');
    const b = cpuFused.rmsnormBackward(cup(dy), cup(x), cup(w), f.rstd, R, C);
    expectClose(host(b.dx), xt.grad!.dataSync(), TOL[0], TOL[1], 'dx');
    expectClose(host(b.dweight!), wt.grad!.dataSync(), TOL[0], TOL[1], 'dw');
  });

  it('RoPE = composed rope; the inverse is the backward', () => {
    const [R, Tn, HS] = [3, 5, 8];
    const x = randn(R * Tn * HS), dy = randn(R * Tn * HS);
    const { cos, sin } = T.ropeTables(Tn, HS, 10000);
    const xt = T.tensor(x, [R, Tn, HS], { requiresGrad: true });
    const y = T.rope(xt, cos, sin);
    T.backward(y, T.tensor(dy, [R, Tn, HS]));
    expectClose(host(cpuFused.rope(cup(x), cos.storage, sin.storage, R, Tn, HS, false)), y.dataSync(), TOL[0], TOL[1], 'rope');
    expectClose(host(cpuFused.rope(cup(dy), cos.storage, sin.storage, R, Tn, HS, true)), xt.grad!.dataSync(), TOL[0], TOL[1], 'rope backward');
  });

  it('attention forward and backward = composed attention (grouped-query, causal, S > T)', () => {
    const s: AttentionShape = { B: 2, NH: 4, NKV: 2, T: 5, S: 7, HS: 8, causal: true };
    const q = randn(s.B * s.NH * s.T * s.HS), k = randn(s.B * s.NKV * s.S * s.HS), v = randn(s.B * s.NKV * s.S * s.HS);
    const dout = randn(q.length);
    const qt = T.tensor(q, [s.B, s.NH, s.T, s.HS], { requiresGrad: true });
    const kt = T.tensor(k, [s.B, s.NKV, s.S, s.HS], { requiresGrad: true });
    const vt = T.tensor(v, [s.B, s.NKV, s.S, s.HS], { requiresGrad: true });
    const out = T.attention(qt, kt, vt, true);
    T.backward(out, T.tensor(dout, out.shape));
    const f = cpuFused.attentionForward(cup(q), cup(k), cup(v), s);
    expectClose(host(f.out), out.dataSync(), TOL[0], TOL[1], 'out');
    const b = cpuFused.attentionBackward(cup(dout), cup(q), cup(k), cup(v), f.out, f.lse, s);
    expectClose(host(b.dq), qt.grad!.dataSync(), TOL[0], TOL[1], 'dq');
    expectClose(host(b.dk), kt.grad!.dataSync(), TOL[0], TOL[1], 'dk');
    expectClose(host(b.dv), vt.grad!.dataSync(), TOL[0], TOL[1], 'dv');
  });

  it('Newton–Schulz output is close to orthogonal (singular values near 1)', () => {
    const [rows, cols] = [6, 10];
    const X = host(cpuFused.newtonSchulz(cup(randn(rows * cols)), rows, cols));
    // Muon's coefficients do not converge to exactly 1: they push every singular value into
    // roughly [0.7, 1.2] in 5 steps (Jordan et al.). So X Xᵀ has its diagonal in that band.
    for (let i = 0; i < rows; i++) {
      let d = 0;
      for (let j = 0; j < cols; j++) d += X[i * cols + j] ** 2;
      expect(d).toBeGreaterThan(0.3);
      expect(d).toBeLessThan(1.5);
    }
  });
});

describe.skipIf(!gpu)('webgpu fused kernels vs cpu-fused', () => {
  it('implements the FusedKernels capability', () => {
    expect(hasFused(gpu!)).toBe(true);
    expect(hasFused(cpu)).toBe(false);
  });

  it('cross-entropy forward/backward, ignore index, rows longer than a workgroup', async () => {
    for (const [N, V] of [[7, 11], [5, 1000]]) {
      const x = randn(N * V, 3);
      const targets = Int32Array.from({ length: N }, (_, i) => (i === 2 ? -1 : rng.int(V)));
      const f = gpu!.crossEntropyForward(up(x), up(targets, 'int32'), N, V);
      const r = cpuFused.crossEntropyForward(cup(x), cup(targets, 'int32'), N, V);
      // exp and log allowed a few ULP on the GPU, sums of V terms in tree order: 1e-5 relative
      expectClose(await read(f.lse), host(r.lse), 1e-5, 1e-5, `lse ${N}x${V}`);
      expectClose(await read(f.loss), host(r.loss), 1e-5, 1e-5, `loss ${N}x${V}`);
      const dl = Float32Array.of(0.7);
      const g = gpu!.crossEntropyBackward(up(x), up(targets, 'int32'), f.lse, up(dl), N, V);
      const rg = cpuFused.crossEntropyBackward(cup(x), cup(targets, 'int32'), r.lse, cup(dl), N, V);
      // probabilities from exp(x - lse): exp's ~3 + 2|x| ULP on |x - lse| up to ~20
      expectClose(await read(g), host(rg), 1e-7, 1e-5, `dlogits ${N}x${V}`);
    }
  });

  it('target log-probs forward/backward, rows longer than a workgroup, a bad target reported', async () => {
    for (const [M, V] of [[7, 11], [5, 1000]]) {
      const x = randn(M * V, 3), g = randn(M);
      const targets = Int32Array.from({ length: M }, () => rng.int(V));
      const f = gpu!.targetLogprobsForward(up(x), up(targets, 'int32'), M, V);
      const r = cpuFused.targetLogprobsForward(cup(x), cup(targets, 'int32'), M, V);
      // as cross-entropy: exp and log a few ULP on the GPU, sums of V terms in tree order
      expectClose(await read(f.lse), host(r.lse), 1e-5, 1e-5, `lse ${M}x${V}`);
      expectClose(await read(f.logp), host(r.logp), 1e-5, 1e-5, `logp ${M}x${V}`);
      const dx = gpu!.targetLogprobsBackward(up(x), up(targets, 'int32'), f.lse, up(g), M, V);
      const rdx = cpuFused.targetLogprobsBackward(cup(x), cup(targets, 'int32'), r.lse, cup(g), M, V);
      // probabilities from exp(x - lse), scaled by |g| ~ 1: as the cross-entropy gradient
      expectClose(await read(dx), host(rdx), 1e-7, 1e-5, `dlogits ${M}x${V}`);
    }
    const bad = gpu!.targetLogprobsForward(up(randn(8)), up(Int32Array.of(1, 4), 'int32'), 2, 4);
    await expect(read(bad.logp)).rejects.toThrow(/targetLogprobs \(webgpu\): target 4 at position 1/);
  });

  it('cross-entropy with every row ignored gives loss 0 and zero gradient', async () => {
    const x = randn(12);
    const t = Int32Array.of(-1, -1, -1);
    const f = gpu!.crossEntropyForward(up(x), up(t, 'int32'), 3, 4);
    expect(Array.from(await read(f.loss))).toEqual([0]);
    const g = gpu!.crossEntropyBackward(up(x), up(t, 'int32'), f.lse, up([1]), 3, 4);
    expect(Array.from(await read(g))).toEqual(new Array(12).fill(0));
  });

  it('RMSNorm forward/backward, with and without weight', async () => {
    for (const [R, C] of [[6, 40], [3, 700]]) {
      const x = randn(R * C), w = randn(C), dy = randn(R * C);
      for (const withW of [true, false]) {
        const f = gpu!.rmsnormForward(up(x), withW ? up(w) : null, R, C, 1e-6);
        const r = cpuFused.rmsnormForward(cup(x), withW ? cup(w) : null, R, C, 1e-6);
        // a sum of C squares in a different order, then inverseSqrt (2 ULP): 1e-5 relative
        expectClose(await read(f.rstd), host(r.rstd), 0, 1e-5, 'rstd');
        expectClose(await read(f.y), host(r.y), 1e-6, 1e-5, 'y');
        const b = gpu!.rmsnormBackward(up(dy), up(x), withW ? up(w) : null, f.rstd, R, C);
        const rb = cpuFused.rmsnormBackward(cup(dy), cup(x), withW ? cup(w) : null, r.rstd, R, C);
        // dx subtracts two terms of similar size: absolute tolerance scaled to the terms (~1)
        expectClose(await read(b.dx), host(rb.dx), 1e-5, 1e-4, 'dx');
        if (withW) expectClose(await read(b.dweight!), host(rb.dweight!), 1e-5, 1e-4, 'dw');
        else expect(b.dweight).toBeNull();
      }
    }
  });

  it('RoPE forward and inverse', async () => {
    const [R, Tn, HS] = [4, 6, 16];
    const x = randn(R * Tn * HS);
    const { cos, sin } = T.ropeTables(Tn, HS, 10000);
    const [c, s] = [cos.dataSync(), sin.dataSync()];
    for (const inverse of [false, true]) {
      // two products and a sum per element, each rounded once on both sides: a few ULP
      expectClose(await read(gpu!.rope(up(x), up(c), up(s), R, Tn, HS, inverse)), host(cpuFused.rope(cup(x), cup(c), cup(s), R, Tn, HS, inverse)), 1e-6, 1e-6, `rope inverse=${inverse}`);
    }
  });

  const ATT: AttentionShape[] = [
    { B: 1, NH: 2, NKV: 2, T: 5, S: 5, HS: 8, causal: true }, // plain causal
    { B: 2, NH: 4, NKV: 2, T: 70, S: 70, HS: 16, causal: true }, // GQA, more rows than a workgroup (64)
    { B: 1, NH: 2, NKV: 1, T: 3, S: 20, HS: 12, causal: true }, // KV cache: queries are the last 3 of 20
    { B: 1, NH: 3, NKV: 3, T: 9, S: 33, HS: 8, causal: false },
  ];
  for (const s of ATT) {
    it(`attention forward/backward B${s.B} NH${s.NH} NKV${s.NKV} T${s.T} S${s.S} HS${s.HS} ${s.causal ? 'causal' : 'full'}`, async () => {
      const q = randn(s.B * s.NH * s.T * s.HS), k = randn(s.B * s.NKV * s.S * s.HS), v = randn(s.B * s.NKV * s.S * s.HS);
      const dout = randn(q.length);
      const f = gpu!.attentionForward(up(q), up(k), up(v), s);
      const r = cpuFused.attentionForward(cup(q), cup(k), cup(v), s);
      // online softmax rescales partial sums by exp(m - m'); WGSL exp has ~3 + 2|x| ULP:
      // 2e-5 relative (plus 1e-6 absolute for outputs near 0) on values of order 1
      expectClose(await read(f.out), host(r.out), 1e-5, 2e-5, 'out');
      expectClose(await read(f.lse), host(r.lse), 1e-5, 2e-5, 'lse');
      const g = gpu!.attentionBackward(up(dout), up(q), up(k), up(v), f.out, f.lse, s);
      const rb = cpuFused.attentionBackward(cup(dout), cup(q), cup(k), cup(v), r.out, r.lse, s);
      // gradients sum up to S (or group * T) products of recomputed probabilities: 1e-4 relative, 2e-5 absolute
      expectClose(await read(g.dq), host(rb.dq), 2e-5, 1e-4, 'dq');
      expectClose(await read(g.dk), host(rb.dk), 2e-5, 1e-4, 'dk');
      expectClose(await read(g.dv), host(rb.dv), 2e-5, 1e-4, 'dv');
    });
  }

  it('AdamW update in place, three steps', async () => {
    const n = 1000;
    const p0 = randn(n), m0 = new Float32Array(n), v0 = new Float32Array(n);
    const gp = up(p0), gm = up(m0), gv = up(v0);
    const cp = cup(p0), cm = cup(m0), cv = cup(v0);
    for (let step = 1; step <= 3; step++) {
      const grad = randn(n);
      const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step };
      gpu!.adamwUpdate(gp, up(grad), gm, gv, n, hp);
      cpuFused.adamwUpdate(cp, cup(grad), cm, cv, n, hp);
    }
    // the CPU evaluates each line in double and rounds once per stored value; the GPU rounds
    // every operation (and sqrt / division have 2.5 ULP): ~10 ULP on m, v and the update
    expectClose(await read(gm), host(cm), 1e-7, 1e-6, 'm');
    expectClose(await read(gv), host(cv), 1e-9, 1e-6, 'v');
    expectClose(await read(gp), host(cp), 1e-7, 1e-6, 'param');
  });

  it('Newton–Schulz on the GPU matches the reference, wide and tall, reading nothing back', async () => {
    for (const [rows, cols] of [[8, 20], [24, 10]]) {
      const g = randn(rows * cols);
      const submitsBefore = gpu!.stats.submits;
      const X = gpu!.newtonSchulz(up(g), rows, cols);
      expect(gpu!.stats.submits - submitsBefore).toBeLessThanOrEqual(1); // no host round trip inside
      // 5 steps of 3 matmuls each, values of order 1 amplified by coefficients up to 4.8:
      // float32 rounding differences grow through the iteration; 1e-4 absolute
      expectClose(await read(X), host(cpuFused.newtonSchulz(cup(g), rows, cols)), 1e-4, 1e-4, `NS ${rows}x${cols}`);
    }
  });
});
