// The wasm backend's memory up to 4 GiB (src/backend/wasm-memory.ts, MAX_PAGES = 65536).
//
// A wasm32 address is an unsigned 32-bit number, so tensors at byte offsets ≥ 2^31 are legal,
// but every place that turns an offset into something else must treat it as unsigned: the
// kernels' loads and stores (unsigned by definition), the JS offset arithmetic (plain
// numbers), and the helper threads' Int32Array control block (an offset ≥ 2^31 is stored
// there as a negative int32; kernels/cpu/wasm-worker.mjs reads it back with `>>> 0`).
//
// How this runs in seconds without gigabytes of RAM: we push the heap's top up with large
// blocks that are allocated and never touched. Growing a WebAssembly memory reserves address
// space; the operating system gives a page real memory only when it is first written, so the
// process's resident size grows by the few MiB the tensors use, not by 4 GiB. Then every
// kernel that matters runs on tensors that live ABOVE 2 GiB (and, on one backend, in the last
// 16 MiB below 4 GiB) and is compared with the CPU reference on fresh random inputs, with
// the same tolerances (and reasons) as test/wasm-backend.test.ts.
import { afterAll, describe, expect, it } from 'vitest';
import type { HostArray, MatmulParams, Storage } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { cpuFused } from '../src/backend/cpu-fused.ts';
import type { AttentionShape } from '../src/backend/fused.ts';
import { type WasmBackend, createWasmBackend } from '../src/backend/wasm.ts';
import { MAX_PAGES } from '../src/backend/wasm-memory.ts';
import * as T from '../src/tensor/index.ts';
import { UserError } from '../src/util/errors.ts';

const GiB = 2 ** 30;
const U = 2 ** -24; // float32 unit roundoff
const rng = new T.Rng(2468);
const randn = (n: number, std = 1) => rng.normalArray(n, std);
const host = (s: Storage) => s as unknown as Float32Array;
const cup = (d: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => cpu.upload(d, dtype);
const abs = (x: Float32Array) => x.map(Math.abs);
/** The fused kernels' tolerance (as test/wasm-backend.test.ts: another summation order and the polynomial exp). */
const FUSED = { atol: 1e-5, rtol: 1e-4 };

/** |got - want| <= atol + rtol |want| (or <= bound[i]). */
function expectClose(got: HostArray, want: HostArray, tol: { atol?: number; rtol?: number; bound?: ArrayLike<number> }, what: string) {
  expect(got.length, `${what}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const allowed = tol.bound ? tol.bound[i] : (tol.atol ?? 0) + (tol.rtol ?? 0) * Math.abs(want[i]);
    if (!(Math.abs(got[i] - want[i]) <= allowed)) expect.fail(`${what}: element ${i}: wasm ${got[i]} vs cpu ${want[i]} (allowed ${allowed})`);
  }
}

/** The byte offset of a wasm storage, checked to be at or above `min` (so the test tests what it says). */
function above(s: Storage, min: number): Storage {
  const off = (s as Float32Array).byteOffset;
  if (!(off >= min)) expect.fail(`storage at byte offset ${off}, expected ≥ ${min}`);
  return s;
}

const w1 = await createWasmBackend({ threads: 1 });
const w2 = await createWasmBackend({ threads: 2 });
afterAll(() => {
  w1.destroy();
  w2.destroy();
});

/** Upload to `be`, asserting the storage landed at or above `min`. */
const upTo = (be: WasmBackend, min: number) => (d: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => above(be.upload(d, dtype), min);

function checkMatmul(be: WasmBackend, min: number, M: number, K: number, N: number) {
  const up = upTo(be, min);
  const p: MatmulParams = { batchA: [], batchB: [], batch: [], M, K, N, transA: false, transB: true };
  const a = randn(M * K), b = randn(N * K);
  // the float32 dot-product bound 2 (K + 2) u (|A| |B|)_ij, as test/wasm-backend.test.ts
  const bound = host(cpu.matmul(cup(abs(a)), cup(abs(b)), p)).map((s) => 2 * (K + 2) * U * s);
  const c = above(be.matmul(up(a), up(b), p), min);
  expectClose(host(c), host(cpu.matmul(cup(a), cup(b), p)), { bound }, `matmul ${M}x${K}x${N} (${be.threads} thread(s))`);
}

/** Elementwise, reduction and the fused kernels of one training step, every storage at or above `min`. */
function checkOps(be: WasmBackend, min: number) {
  const up = upTo(be, min);
  // binary with a row broadcast (exact: one float32 rounding, as on the CPU), unary exp (polynomial, ~2 ULP)
  const x = randn(33 * 40), r = randn(40);
  expectClose(host(above(be.binary('add', up(x), [33, 40], up(r), [1, 40], [33, 40]), min)), host(cpu.binary('add', cup(x), [33, 40], cup(r), [1, 40], [33, 40])), {}, 'add');
  expectClose(host(above(be.unary('exp', up(x), 0), min)), host(cpu.unary('exp', cup(x), 0)), { rtol: 4e-7 }, 'exp');
  // a sum over 33 terms in another order: 33 u of the sum of magnitudes
  const sumBound = host(cpu.reduce('sum', cup(abs(x)), [33, 40], 0)).map((s) => 33 * U * s);
  expectClose(host(above(be.reduce('sum', up(x), [33, 40], 0), min)), host(cpu.reduce('sum', cup(x), [33, 40], 0)), { bound: sumBound }, 'sum');
  // RMSNorm, cross-entropy (the fused softmax), target log-probs
  const R = 9, C = 35;
  const h = randn(R * C), w = randn(C), dy = randn(R * C);
  const nf = be.rmsnormForward(up(h), up(w), R, C, 1e-6), nr = cpuFused.rmsnormForward(cup(h), cup(w), R, C, 1e-6);
  expectClose(host(above(nf.y, min)), host(nr.y), FUSED, 'rmsnorm y');
  const nb = be.rmsnormBackward(up(dy), up(h), up(w), nf.rstd, R, C), nbr = cpuFused.rmsnormBackward(cup(dy), cup(h), cup(w), nr.rstd, R, C);
  expectClose(host(above(nb.dx, min)), host(nbr.dx), FUSED, 'rmsnorm dx');
  expectClose(host(above(nb.dweight!, min)), host(nbr.dweight!), FUSED, 'rmsnorm dweight');
  const N = 7, V = 37;
  const logits = randn(N * V, 3), t = Int32Array.from([3, -1, 0, 36, 5, -1, 20]), dl = Float32Array.of(1.3);
  const ce = be.crossEntropyForward(up(logits), up(t, 'int32'), N, V), cer = cpuFused.crossEntropyForward(cup(logits), cup(t, 'int32'), N, V);
  expectClose(host(above(ce.loss, min)), host(cer.loss), FUSED, 'cross-entropy loss');
  expectClose(host(above(ce.lse, min)), host(cer.lse), FUSED, 'cross-entropy lse');
  const dce = be.crossEntropyBackward(up(logits), up(t, 'int32'), ce.lse, up(dl), N, V);
  expectClose(host(above(dce, min)), host(cpuFused.crossEntropyBackward(cup(logits), cup(t, 'int32'), cer.lse, cup(dl), N, V)), FUSED, 'cross-entropy dlogits');
  const tt = Int32Array.from({ length: N }, () => rng.int(V)), g = randn(N);
  const lp = be.targetLogprobsForward(up(logits), up(tt, 'int32'), N, V), lpr = cpuFused.targetLogprobsForward(cup(logits), cup(tt, 'int32'), N, V);
  expectClose(host(above(lp.logp, min)), host(lpr.logp), FUSED, 'target logp');
  const dlp = be.targetLogprobsBackward(up(logits), up(tt, 'int32'), lp.lse, up(g), N, V);
  expectClose(host(above(dlp, min)), host(cpuFused.targetLogprobsBackward(cup(logits), cup(tt, 'int32'), lpr.lse, cup(g), N, V)), FUSED, 'target dlogits');
  // AdamW in place, three steps
  const n = 103, p0 = randn(n), grad = randn(n);
  const ws = up(p0), ms = above(be.zeros(n, 'float32'), min), vs = above(be.zeros(n, 'float32'), min);
  const wc = cup(p0), mc = cpu.zeros(n, 'float32'), vc = cpu.zeros(n, 'float32');
  for (let step = 1; step <= 3; step++) {
    const p = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step };
    be.adamwUpdate(ws, up(grad), ms, vs, n, p);
    cpuFused.adamwUpdate(wc, cup(grad), mc, vc, n, p);
  }
  expectClose(host(ws), host(wc), FUSED, 'adamw param');
  expectClose(host(ms), host(mc), FUSED, 'adamw m');
  expectClose(host(vs), host(vc), FUSED, 'adamw v');
  expect(Math.abs(host(ws)[0] - p0[0])).toBeGreaterThan(1e-3); // the update really ran
}

describe('wasm memory up to 4 GiB', () => {
  it('the maximum is 4 GiB (65536 pages of 64 KiB: every 32-bit address)', () => {
    expect(MAX_PAGES * 65536).toBe(4 * GiB);
  });

  it('two threads, tensors above 2 GiB: matmul and attention split over the helper (offsets pass through the Int32 control block)', () => {
    const pad = w2.heap.alloc(2 * GiB); // never touched: address space only
    const min = 2 ** 31;
    expect(w2.heap.bytesReserved()).toBeGreaterThan(min);
    const jobs0 = w2.threadPool.jobs;
    checkMatmul(w2, min, 130, 64, 96); // 798,720 multiply-adds: above THREADS_MIN_MACS, so split
    checkMatmul(w2, min, 5, 7, 3); // small: one thread
    expect(w2.threadPool.jobs).toBe(jobs0 + 1); // the big one really went to the helper
    // attention: B·NKV = 4 units of 262,144 multiply-adds each: split in two bands
    const s: AttentionShape = { B: 2, NH: 4, NKV: 2, T: 64, S: 64, HS: 16, causal: true };
    const up = upTo(w2, min);
    const q = randn(s.B * s.NH * s.T * s.HS), k = randn(s.B * s.NKV * s.S * s.HS), v = randn(k.length), dout = randn(q.length);
    const f = w2.attentionForward(up(q), up(k), up(v), s), r = cpuFused.attentionForward(cup(q), cup(k), cup(v), s);
    expectClose(host(above(f.out, min)), host(r.out), FUSED, 'attention out');
    expectClose(host(above(f.lse, min)), host(r.lse), FUSED, 'attention lse');
    const b = w2.attentionBackward(up(dout), up(q), up(k), up(v), f.out, f.lse, s);
    const rb = cpuFused.attentionBackward(cup(dout), cup(q), cup(k), cup(v), r.out, r.lse, s);
    expectClose(host(above(b.dq, min)), host(rb.dq), FUSED, 'attention dq');
    expectClose(host(above(b.dk, min)), host(rb.dk), FUSED, 'attention dk');
    expectClose(host(above(b.dv, min)), host(rb.dv), FUSED, 'attention dv');
    expect(w2.threadPool.jobs).toBe(jobs0 + 3);
    checkOps(w2, min);
    w2.heap.release(pad, 2 * GiB);
  });

  it('one thread, tensors in the last 16 MiB below 4 GiB; past 4 GiB the one-line out-of-memory error names the limit', () => {
    // 2 + 1 + 1/2 + ... + 1/64 GiB of untouched blocks: the top ends 16 MiB (and 64 bytes) below 4 GiB
    for (let b = 2 * GiB; b >= 16 * 2 ** 20; b /= 2) w1.heap.alloc(b);
    const min = 4 * GiB - 16 * 2 ** 20;
    expect(w1.heap.bytesReserved()).toBe(min + 64);
    checkMatmul(w1, min, 67, 33, 70);
    checkMatmul(w1, min, 130, 64, 96);
    checkOps(w1, min);
    // 32 MiB more cannot fit: a UserError naming the 4 GiB limit, and the heap is unchanged
    const reserved = w1.heap.bytesReserved();
    expect(() => w1.zeros(8 << 20, 'float32')).toThrow(UserError);
    expect(() => w1.zeros(8 << 20, 'float32')).toThrow(/^wasm backend: out of memory: .*the maximum is 4 GiB.*--backend cpu$/);
    expect(w1.heap.bytesReserved()).toBe(reserved);
    expect(w1.heap.memory.buffer.byteLength).toBeLessThanOrEqual(4 * GiB);
  });
});
