// The wasm backend: the fast CPU path. Tensors live in one shared WebAssembly memory
// (wasm-memory.ts) and the hot ops run as WebAssembly SIMD kernels on them in place:
// kernels/cpu/matmul.wat (matmul) and kernels/cpu/ops.wat (elementwise, reductions, RMSNorm,
// SwiGLU, RoPE; with its pieces ops-loss.wat: cross-entropy, target log-probs;
// ops-attention.wat: attention; ops-adamw-copy.wat: AdamW, permute, transpose, zero). docs/wasm.md is the learner's guide.
//
// Built on the reference. WasmBackend EXTENDS CpuBackend: its storages are Float32Array /
// Int32Array views over the wasm memory, so every CpuBackend method works on them unchanged.
// This class overrides allocation (so fallbacks allocate in wasm memory too) and the ops that
// have a kernel; an op or shape without one (where, slice, gather, log, a broadcast the
// kernels do not cover, and any Backend method added later) runs the CPU backend's loop over
// the views: slower, never wrong. test/wasm-backend.test.ts checks each kernel against cpu.
//
// Threads: `threads: N` starts N - 1 worker_threads (Node; Web Workers in a browser) running the same kernels on the
// same memory (kernels/cpu/wasm-worker.mjs); a large matmul is split into bands of rows, and
// attention (forward and backward) into bands of (batch entry, KV head) units.
// The hand-off protocol, and why it cannot stall, is in wasm-threads.ts.
//
// Relaxed SIMD (wasm-simd.ts): where the engine has it, matmul runs the relaxed build of
// matmul.wat (matmul-relaxed-shared.wasm: f32x4.relaxed_madd, a fused multiply-add on x86),
// else the plain build; `simd: 'plain' | 'relaxed'` or $MINICHAT_WASM_SIMD chooses. The
// helper threads are handed the same bytes, so every thread runs the same variant.
// In a browser (the page's training worker) the helpers are module Web Workers over the same
// memory: setWasmWorkerUrl tells where their script is served (see docs/wasm.md, "Threads").
import type { BinaryOp, DType, MatmulParams, ReduceOp, Storage, UnaryOp } from './backend.ts';
import { sizeOf, stridesOf } from './backend.ts';
import { CpuFused } from './cpu-fused.ts';
import { CpuBackend, batchIndex } from './cpu.ts';
import type { AdamWParams, AttentionShape, FusedKernels } from './fused.ts';
import { isNode } from './platform.ts';
import { findKernelFile, readKernelFile } from './wasm-matmul.ts';
import { type Helper, HelperPool, startHelper as startWorker } from './wasm-threads.ts';
import { WasmHeap } from './wasm-memory.ts';
import { type SimdVariant, chooseSimdVariant, relaxedSimdSupported } from './wasm-simd.ts';

/** ops.wasm's exports (see kernels/cpu/ops.wat for each one's contract). Pointers are bytes. */
interface OpsExports {
  binary(op: number, a: number, aRow: number, aCol: number, b: number, bRow: number, bCol: number, y: number, R: number, C: number): void;
  unary(op: number, x: number, y: number, n: number, param: number): void;
  reduce(op: number, x: number, y: number, outer: number, n: number, inner: number): void;
  rmsnorm_forward(x: number, w: number, y: number, rstd: number, R: number, C: number, eps: number): void;
  rmsnorm_backward(dy: number, x: number, w: number, rstd: number, dx: number, dw: number, R: number, C: number): void;
  cross_entropy_forward(x: number, t: number, lse: number, scratch: number, N: number, V: number): number;
  cross_entropy_backward(x: number, t: number, lse: number, dx: number, N: number, V: number, scale: number): void;
  target_logprobs_forward(x: number, t: number, lse: number, logp: number, scratch: number, M: number, V: number): void;
  target_logprobs_backward(x: number, t: number, lse: number, g: number, dx: number, M: number, V: number): void;
  attention_forward(q: number, k: number, v: number, out: number, lse: number, scratch: number, B: number, NH: number, NKV: number, T: number, S: number, HS: number, causal: number): void;
  attention_backward(dout: number, q: number, k: number, v: number, out: number, lse: number, dq: number, dk: number, dv: number, scratch: number, B: number, NH: number, NKV: number, T: number, S: number, HS: number, causal: number): void;
  adamw(w: number, g: number, m: number, v: number, n: number, lr: number, b1: number, b2: number, eps: number, wd: number, bc1: number, bc2: number): void;
  transpose(src: number, dst: number, rows: number, cols: number): void;
  permute4(x: number, y: number, d0: number, d1: number, d2: number, d3: number, s0: number, s1: number, s2: number, s3: number): void;
  zero(y: number, bytes: number): void;
  swiglu_forward(g: number, u: number, y: number, n: number): void;
  swiglu_backward(dh: number, g: number, u: number, dg: number, du: number, n: number): void;
  rope(x: number, cos: number, sin: number, y: number, R: number, T: number, HS: number, inverse: number): void;
}

type MatmulFn = (a: number, bt: number, c: number, M: number, K: number, N: number) => void;

/** The op codes of ops.wat's `binary` and `unary`. */
const BINARY_CODE: Partial<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3 };
const UNARY_CODE: Partial<Record<UnaryOp, number>> = { neg: 0, relu: 1, mulScalar: 2, addScalar: 3, exp: 4, sigmoid: 5, sqrt: 6, rsqrt: 7 };

/**
 * Kernel numbers of the worker protocol (kernels/cpu/wasm-worker.mjs): matmul.wat's matmul,
 * ops.wat's attention, SwiGLU, RoPE and binary (the elementwise ones split by elements/rows).
 */
const K_DOT = 0, K_ATT_FWD = 2, K_ATT_BWD = 3, K_SWIGLU_FWD = 4, K_SWIGLU_BWD = 5, K_ROPE = 6, K_BINARY = 7;
/** The kernels' names, by number (errors, bench/profile-step.ts). */
export const KERNEL_NAMES = ['matmul', '(exit)', 'attention fwd', 'attention bwd', 'swiglu fwd', 'swiglu bwd', 'rope', 'binary'];
/**
 * "Multiply-adds" per element of the elementwise kernels for split()'s threshold (a pass of
 * a few hundred thousand elements is worth a second thread, a smaller one is not): binary is
 * one memory-bound op, RoPE two products, SwiGLU an exp and a handful of products.
 */
const EW_WORK = { binary: 1, rope: 2, swiglu: 4 } as const;
/** Keys per block of ops-attention.wat's attention_backward (its P and dS scratch tiles are G·T x ATT_BK floats). */
const ATT_BK = 64;
/** Matmuls with fewer multiply-adds than this stay on one thread (waking a worker costs ~10s of µs). */
export const THREADS_MIN_MACS = 1 << 19;

type F32 = Float32Array;
type I32 = Int32Array;
type View = F32 | I32;

export class WasmBackend extends CpuBackend implements FusedKernels {
  private readonly reference: CpuFused;
  /** The helper threads (wasm-threads.ts). */
  readonly threadPool: HelperPool;

  constructor(
    readonly heap: WasmHeap,
    private readonly ops: OpsExports,
    private readonly mm: MatmulFn,
    helpers: Helper[] = [],
    /** Which matmul build runs (wasm-simd.ts). */
    readonly simd: SimdVariant = 'plain',
  ) {
    super(Float32Array, 'wasm');
    this.threadPool = new HelperPool(helpers);
    this.reference = new CpuFused(this); // rope and Newton–Schulz: the reference loops, over our views
  }

  /** Threads matmul uses (1 = no workers). */
  get threads(): number {
    return this.threadPool.size + 1;
  }

  // ---- memory ----

  /** A float view of n elements in wasm memory, NOT zeroed (for kernels that write all of it). */
  private raw(n: number): F32 {
    return this.heap.f32(this.heap.alloc(n * 4), n);
  }
  /** Whether newFloat clears; off while a reference loop that writes every output runs. */
  private clear = true;
  protected override newFloat(n: number): F32 {
    const y = this.raw(n);
    if (this.clear) this.ops.zero(y.byteOffset, y.byteLength); // not y.fill(0): slow on shared memory (ops-adamw-copy.wat, zero)
    return y;
  }
  /**
   * Run a CpuBackend loop whose output it fully overwrites, without clearing that output
   * first (clearing an N x V block costs as much as a pass of the op itself). Only for the
   * ops listed below; pad and scatterAdd rely on the zeros and keep them.
   */
  private overwriting<R>(f: () => R): R {
    this.clear = false;
    try {
      return f();
    } finally {
      this.clear = true;
    }
  }
  override slice(x: Storage, shape: number[], axis: number, start: number, end: number): Storage {
    return this.overwriting(() => super.slice(x, shape, axis, start, end));
  }
  override concat(xs: Storage[], shapes: number[][], axis: number): Storage {
    return this.overwriting(() => super.concat(xs, shapes, axis));
  }
  override gather(table: Storage, V: number, C: number, idx: Storage, N: number): Storage {
    return this.overwriting(() => super.gather(table, V, C, idx, N));
  }
  override where(c: Storage, cShape: number[], a: Storage, aShape: number[], b: Storage, bShape: number[], outShape: number[]): Storage {
    return this.overwriting(() => super.where(c, cShape, a, aShape, b, bShape, outShape));
  }
  override zeros(length: number, dtype: DType): Storage {
    if (dtype === 'float32') return this.newFloat(length);
    const y = this.heap.i32(this.heap.alloc(length * 4), length);
    this.ops.zero(y.byteOffset, y.byteLength);
    return y;
  }
  override free(s: Storage): void {
    const v = s as View;
    // A storage outside wasm memory (a plain typed array, e.g. from a CpuBackend method added
    // later that allocates with `new Float32Array`) is not ours to release: the GC takes it.
    if (!(v.buffer instanceof SharedArrayBuffer)) return;
    this.heap.release(v.byteOffset, v.byteLength);
  }
  override bytesInUse(): number {
    return this.heap.bytesInUse();
  }
  override peakBytes(): number {
    return this.heap.peakBytes();
  }
  override resetPeak(): void {
    this.heap.resetPeak();
  }
  destroy(): void {
    this.threadPool.destroy();
  }

  // ---- elementwise ----

  override unary(op: UnaryOp, xs: Storage, p: number): Storage {
    const code = UNARY_CODE[op];
    if (code === undefined) return super.unary(op, xs, p); // log, tanh, powScalar: Math.* in JS
    const x = xs as F32, y = this.raw(x.length);
    const bin = op === 'mulScalar' ? BINARY_CODE.mul! : op === 'addScalar' ? BINARY_CODE.add! : -1;
    if (bin >= 0 && this.parts(x.length, EW_WORK.binary, 4) > 1) {
      // x·p and x + p over many elements: the binary kernel with p as a broadcast scalar
      // (strides 0), split over the threads (the unary kernel runs on this thread only).
      // Bit for bit the unary result: both compute f32(x) op f32(p) with one f32x4 op (or
      // its one-lane form), and a product or sum of two floats does not depend on their order.
      const s = this.raw(1);
      s[0] = p; // rounded to float32 as the unary kernel's f32 parameter is
      this.split(K_BINARY, x.length, EW_WORK.binary, 4, (c0, c1) => [bin, (x.byteOffset + c0 * 4) >>> 0, 0, 1, s.byteOffset, 0, 0,
        (y.byteOffset + c0 * 4) >>> 0, 1, c1 - c0], `${op} (${x.length})`);
      this.free(s);
      return y;
    }
    this.ops.unary(code, x.byteOffset, y.byteOffset, x.length, p);
    return y;
  }

  override binary(op: BinaryOp, as: Storage, aShape: number[], bs: Storage, bShape: number[], outShape: number[]): Storage {
    const code = BINARY_CODE[op];
    const plan = code === undefined ? null : planBinary([aShape, bShape], outShape);
    if (!plan) return super.binary(op, as, aShape, bs, bShape, outShape);
    const a = as as F32, b = bs as F32;
    const y = this.raw(plan.R * plan.C);
    if (y.length === 0) return y;
    const [sa, sb] = plan.strides;
    const { R, C } = plan;
    const at = (p: number, s: [number, number], r: number, c: number) => (p + (r * s[0] + c * s[1]) * 4) >>> 0;
    if (R === 1) {
      // one row (same-shape operands): bands of columns, multiples of 4 so each starts a vector
      this.split(K_BINARY, C, EW_WORK.binary, 4, (c0, c1) => [code!, at(a.byteOffset, sa, 0, c0), sa[0], sa[1], at(b.byteOffset, sb, 0, c0), sb[0], sb[1],
        (y.byteOffset + c0 * 4) >>> 0, 1, c1 - c0], `${op} (${C})`);
    } else {
      this.split(K_BINARY, R, C * EW_WORK.binary, 1, (r0, r1) => [code!, at(a.byteOffset, sa, r0, 0), sa[0], sa[1], at(b.byteOffset, sb, r0, 0), sb[0], sb[1],
        (y.byteOffset + r0 * C * 4) >>> 0, r1 - r0, C], `${op} (${R}×${C})`);
    }
    return y;
  }

  override expand(xs: Storage, xShape: number[], outShape: number[]): Storage {
    const plan = planBinary([xShape], outShape);
    if (!plan || plan.R * plan.C === 0) return super.expand(xs, xShape, outShape);
    // x + 0 with x read broadcast: the binary kernel does the indexing (adding 0 is exact,
    // except that -0 becomes +0, which no op distinguishes)
    const zero = this.newFloat(1);
    const x = xs as F32, y = this.raw(plan.R * plan.C);
    const [sx] = plan.strides;
    this.ops.binary(0, x.byteOffset, sx[0], sx[1], zero.byteOffset, 0, 0, y.byteOffset, plan.R, plan.C);
    this.free(zero);
    return y;
  }

  // ---- layout ----

  override permute(xs: Storage, shape: number[], perm: number[]): Storage {
    if (shape.length > 4) return super.permute(xs, shape, perm);
    const x = xs as F32, y = this.raw(x.length);
    if (x.length === 0) return y;
    const inStr = stridesOf(shape);
    // output dims and the input stride of each, padded at the front to rank 4
    const pad = 4 - shape.length;
    const d = [...new Array<number>(pad).fill(1), ...perm.map((p) => shape[p])];
    const s = [...new Array<number>(pad).fill(0), ...perm.map((p) => inStr[p])];
    this.ops.permute4(x.byteOffset, y.byteOffset, d[0], d[1], d[2], d[3], s[0], s[1], s[2], s[3]);
    return y;
  }

  // ---- reductions ----

  override reduce(op: ReduceOp, xs: Storage, shape: number[], axis: number): Storage {
    const x = xs as F32;
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    if (n === 0 || outer * inner === 0) return super.reduce(op, xs, shape, axis);
    const y = this.raw(outer * inner);
    this.ops.reduce(op === 'sum' ? 0 : 1, x.byteOffset, y.byteOffset, outer, n, inner);
    return y;
  }

  // ---- matmul ----

  override matmul(as: Storage, bs: Storage, p: MatmulParams): Storage {
    const a = as as F32, b = bs as F32;
    const { M, K, N } = p;
    const nb = sizeOf(p.batch);
    const c = this.raw(nb * M * N);
    if (M * N === 0) return c;
    if (K === 0) {
      this.ops.zero(c.byteOffset, c.byteLength);
      return c;
    }
    const ia = batchIndex(p.batchA, p.batch), ib = batchIndex(p.batchB, p.batch);
    // The kernel (matmul.wat) reads A as (M, K) and B as Bᵀ (N, K). Operands already in that
    // layout are used where they are; the others are transposed into scratch blocks by the
    // SIMD transpose kernel, once per distinct batch entry. Measured on the tiny preset's
    // shapes, transpose + this kernel beat a kernel reading B (K, N) directly (SIMD over
    // columns, 4 x 8 tiles): the transposes cost 1-5% of the matmul, while the column kernel
    // ran at 18-38 GFLOP/s against 42-48 (its strided walk down B's columns misses the cache).
    const pa = p.transA ? this.raw(M * K) : null, pb = p.transB ? null : this.raw(N * K);
    let lastA = -1, lastB = -1;
    for (let z = 0; z < nb; z++) {
      let aPtr = a.byteOffset + ia[z] * M * K * 4, bPtr = b.byteOffset + ib[z] * K * N * 4;
      const cPtr = c.byteOffset + z * M * N * 4;
      if (pa) {
        if (ia[z] !== lastA) this.ops.transpose(aPtr, pa.byteOffset, K, M);
        aPtr = pa.byteOffset;
      }
      if (pb) {
        if (ib[z] !== lastB) this.ops.transpose(bPtr, pb.byteOffset, K, N);
        bPtr = pb.byteOffset;
      }
      lastA = ia[z];
      lastB = ib[z];
      const ap = aPtr, bp = bPtr;
      this.split(K_DOT, M, K * N, 4, (m0, m1) => [ap + m0 * K * 4, bp, cPtr + m0 * N * 4, m1 - m0, K, N], `matmul (${M}×${K} · ${K}×${N})`);
    }
    if (pa) this.free(pa);
    if (pb) this.free(pb);
    return c;
  }

  /** Run one kernel directly (kernel numbers as in wasm-worker.mjs). */
  private runKernel(kernel: number, a: number[]): void {
    if (kernel === K_DOT) this.mm(a[0], a[1], a[2], a[3], a[4], a[5]);
    else if (kernel === K_ATT_FWD) this.ops.attention_forward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12]);
    else if (kernel === K_ATT_BWD) {
      this.ops.attention_backward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16]);
    } else if (kernel === K_SWIGLU_FWD) this.ops.swiglu_forward(a[0], a[1], a[2], a[3]);
    else if (kernel === K_SWIGLU_BWD) this.ops.swiglu_backward(a[0], a[1], a[2], a[3], a[4], a[5]);
    else if (kernel === K_ROPE) this.ops.rope(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    else if (kernel === K_BINARY) this.ops.binary(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
    else throw new Error(`internal: unknown kernel ${kernel}`);
  }

  /** How many parts split() cuts `units` units of `workPerUnit` multiply-adds each into (1: not split). */
  private parts(units: number, workPerUnit: number, align: number): number {
    const parts = this.threadPool.size + 1;
    return parts === 1 || units * workPerUnit < THREADS_MIN_MACS || units < align * parts ? 1 : parts;
  }

  /**
   * Run a kernel over units [0, units) (rows of a matmul, (batch, KV head) pairs of attention),
   * split into bands over the threads when it is large enough (units · workPerUnit ≥
   * THREADS_MIN_MACS multiply-adds): band 0 here, one per helper, then wait for all.
   * `args(u0, u1, part)` gives the kernel's arguments for units [u0, u1), part = the band's
   * number (for per-thread scratch). Bands are multiples of `align` units.
   */
  private split(kernel: number, units: number, workPerUnit: number, align: number, args: (u0: number, u1: number, part: number) => number[], op: string): void {
    const parts = this.parts(units, workPerUnit, align);
    if (parts === 1) {
      this.runKernel(kernel, args(0, units, 0));
      return;
    }
    // units per band, a multiple of `align`: for matmul 4 rows, so that every band starts
    // where the one-thread kernel starts a tile. Each unit is then computed by the same
    // instructions, and the result is bit for bit the one-thread result
    // (test/wasm-threads.test.ts and test/threads-default.test.ts check it)
    const band = Math.ceil(Math.ceil(units / parts) / align) * align;
    const jobs = Array.from({ length: parts - 1 }, (_, t) => args(Math.min(units, band * (t + 1)), Math.min(units, band * (t + 2)), t + 1));
    this.threadPool.start(kernel, jobs, op);
    try {
      this.runKernel(kernel, args(0, Math.min(units, band), 0));
    } finally {
      this.threadPool.finish(op); // even if our band threw: the helpers write into memory we may reuse
    }
  }

  // ---- fused kernels (src/backend/fused.ts) ----

  crossEntropyForward(logits: Storage, targets: Storage, N: number, V: number): { loss: Storage; lse: Storage } {
    const x = logits as F32, t = targets as I32;
    let count = 0;
    for (let i = 0; i < N; i++) {
      if (t[i] === -1) continue;
      if (t[i] < 0 || t[i] >= V) throw new RangeError(`crossEntropy: target ${t[i]} at row ${i} is outside [0, ${V})`);
      count++;
    }
    const lse = this.raw(N), loss = this.raw(1), scratch = this.raw(V);
    const total = this.ops.cross_entropy_forward(x.byteOffset, t.byteOffset, lse.byteOffset, scratch.byteOffset, N, V);
    this.free(scratch);
    loss[0] = total / Math.max(1, count);
    return { loss, lse };
  }

  crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, dloss: Storage, N: number, V: number): Storage {
    const t = targets as I32;
    let count = 0;
    for (let i = 0; i < N; i++) if (t[i] !== -1) count++;
    const dx = this.raw(N * V); // every row written by the kernel (ignored rows as zeros)
    const scale = (dloss as F32)[0] / Math.max(1, count);
    this.ops.cross_entropy_backward((logits as F32).byteOffset, t.byteOffset, (lse as F32).byteOffset, dx.byteOffset, N, V, scale);
    return dx;
  }

  targetLogprobsForward(logits: Storage, targets: Storage, M: number, V: number): { logp: Storage; lse: Storage } {
    const t = targets as I32;
    for (let i = 0; i < M; i++) {
      if (!(t[i] >= 0 && t[i] < V)) throw new RangeError(`targetLogprobs: target ${t[i]} at row ${i} is outside [0, ${V})`);
    }
    const lse = this.raw(M), logp = this.raw(M), scratch = this.raw(V);
    this.ops.target_logprobs_forward((logits as F32).byteOffset, t.byteOffset, lse.byteOffset, logp.byteOffset, scratch.byteOffset, M, V);
    this.free(scratch);
    return { logp, lse };
  }

  targetLogprobsBackward(logits: Storage, targets: Storage, lse: Storage, dlogp: Storage, M: number, V: number): Storage {
    const dx = this.raw(M * V); // every element written by the kernel
    const ptr = (x: Storage) => (x as View).byteOffset;
    this.ops.target_logprobs_backward(ptr(logits), ptr(targets), ptr(lse), ptr(dlogp), dx.byteOffset, M, V);
    return dx;
  }

  rmsnormForward(x: Storage, weight: Storage | null, R: number, C: number, eps: number): { y: Storage; rstd: Storage } {
    const y = this.raw(R * C), rstd = this.raw(R);
    this.ops.rmsnorm_forward((x as F32).byteOffset, weight ? (weight as F32).byteOffset : 0, y.byteOffset, rstd.byteOffset, R, C, eps);
    return { y, rstd };
  }

  rmsnormBackward(dy: Storage, x: Storage, weight: Storage | null, rstd: Storage, R: number, C: number): { dx: Storage; dweight: Storage | null } {
    const dx = this.raw(R * C), dw = weight ? this.newFloat(C) : null;
    this.ops.rmsnorm_backward((dy as F32).byteOffset, (x as F32).byteOffset, weight ? (weight as F32).byteOffset : 0,
      (rstd as F32).byteOffset, dx.byteOffset, dw ? dw.byteOffset : 0, R, C);
    return { dx, dweight: dw };
  }

  // SwiGLU and RoPE: elementwise, so split into bands of elements (SwiGLU) or of (R) rows
  // (RoPE) over the threads; every element is computed by the same instructions in any
  // band, so a split result is bit for bit the one-thread result.

  swigluForward(g: Storage, u: Storage, n: number): Storage {
    const y = this.raw(n);
    const gp = (g as F32).byteOffset, up = (u as F32).byteOffset, yp = y.byteOffset;
    this.split(K_SWIGLU_FWD, n, EW_WORK.swiglu, 4, (i0, i1) => [(gp + i0 * 4) >>> 0, (up + i0 * 4) >>> 0, (yp + i0 * 4) >>> 0, i1 - i0], `swiglu forward (${n})`);
    return y;
  }

  swigluBackward(dh: Storage, g: Storage, u: Storage, n: number): { dg: Storage; du: Storage } {
    const dg = this.raw(n), du = this.raw(n);
    const p = [dh, g, u].map((x) => (x as F32).byteOffset);
    this.split(K_SWIGLU_BWD, n, EW_WORK.swiglu, 4, (i0, i1) => [...p.map((b) => (b + i0 * 4) >>> 0), (dg.byteOffset + i0 * 4) >>> 0, (du.byteOffset + i0 * 4) >>> 0, i1 - i0],
      `swiglu backward (${n})`);
    return { dg, du };
  }

  rope(x: Storage, cos: Storage, sin: Storage, R: number, T: number, HS: number, inverse: boolean): Storage {
    const y = this.raw(R * T * HS);
    if (y.length === 0) return y;
    const xp = (x as F32).byteOffset, row = T * HS * 4;
    this.split(K_ROPE, R, T * HS * EW_WORK.rope, 1, (r0, r1) => [(xp + r0 * row) >>> 0, (cos as F32).byteOffset, (sin as F32).byteOffset,
      (y.byteOffset + r0 * row) >>> 0, r1 - r0, T, HS, inverse ? 1 : 0], `rope (${R}×${T}×${HS})`);
    return y;
  }

  // Attention over threads. Query head h reads KV head h / G (G = NH / NKV query heads per KV
  // head), and heads are laid out so that the G query heads of one KV head are adjacent: q
  // (B, NH, T, HS) is also (B·NKV, G, T, HS), and k, v (B, NKV, S, HS) are (B·NKV, 1, S, HS).
  // So the kernels see B·NKV independent "units" (batch entry, KV head), each with G query
  // heads and one KV head, and a band of units is one kernel call on offset pointers. A
  // unit's dk, dv gather from its own query heads only, so bands never write the same
  // memory, and each unit is computed in the same order as on one thread: bit-identical.

  /** The work of one attention unit, in multiply-adds (about: causal halves it). */
  private static attentionWork(s: AttentionShape): number {
    return (s.NH / s.NKV) * s.T * s.S * s.HS * 2;
  }

  attentionForward(q: Storage, k: Storage, v: Storage, s: AttentionShape): { out: Storage; lse: Storage } {
    const out = this.raw(s.B * s.NH * s.T * s.HS), lse = this.raw(s.B * s.NH * s.T);
    const units = s.B * s.NKV, G = s.NH / s.NKV, qUnit = G * s.T * s.HS * 4, kvUnit = s.S * s.HS * 4, lseUnit = G * s.T * 4;
    const parts = this.parts(units, WasmBackend.attentionWork(s), 1), scratch = this.raw(parts * s.S); // one scratch row per thread
    const ptr = (x: Storage) => (x as F32).byteOffset;
    this.split(K_ATT_FWD, units, WasmBackend.attentionWork(s), 1, (u0, u1, part) => [
      ptr(q) + u0 * qUnit, ptr(k) + u0 * kvUnit, ptr(v) + u0 * kvUnit, out.byteOffset + u0 * qUnit, lse.byteOffset + u0 * lseUnit,
      scratch.byteOffset + part * s.S * 4, u1 - u0, G, 1, s.T, s.S, s.HS, s.causal ? 1 : 0,
    ], `attention forward (B ${s.B}, heads ${s.NH}/${s.NKV}, T ${s.T}, S ${s.S}, HS ${s.HS})`);
    this.free(scratch);
    return { out, lse };
  }

  attentionBackward(dout: Storage, q: Storage, k: Storage, v: Storage, out: Storage, lse: Storage, s: AttentionShape): { dq: Storage; dk: Storage; dv: Storage } {
    const dq = this.newFloat(s.B * s.NH * s.T * s.HS), dk = this.newFloat(s.B * s.NKV * s.S * s.HS), dv = this.newFloat(s.B * s.NKV * s.S * s.HS);
    const units = s.B * s.NKV, G = s.NH / s.NKV, qUnit = G * s.T * s.HS * 4, kvUnit = s.S * s.HS * 4, lseUnit = G * s.T * 4;
    // per thread: D (G·T floats) and the P and dS tiles of one key block (G·T x ATT_BK each), see ops-attention.wat
    const perThread = G * s.T * (1 + 2 * ATT_BK);
    const parts = this.parts(units, WasmBackend.attentionWork(s), 1), scratch = this.raw(parts * perThread);
    const ptr = (x: Storage) => (x as F32).byteOffset;
    this.split(K_ATT_BWD, units, WasmBackend.attentionWork(s), 1, (u0, u1, part) => [
      ptr(dout) + u0 * qUnit, ptr(q) + u0 * qUnit, ptr(k) + u0 * kvUnit, ptr(v) + u0 * kvUnit, ptr(out) + u0 * qUnit, ptr(lse) + u0 * lseUnit,
      dq.byteOffset + u0 * qUnit, dk.byteOffset + u0 * kvUnit, dv.byteOffset + u0 * kvUnit,
      (scratch.byteOffset + part * perThread * 4) >>> 0, u1 - u0, G, 1, s.T, s.S, s.HS, s.causal ? 1 : 0,
    ], `attention backward (B ${s.B}, heads ${s.NH}/${s.NKV}, T ${s.T}, S ${s.S}, HS ${s.HS})`);
    this.free(scratch);
    return { dq, dk, dv };
  }

  adamwUpdate(param: Storage, grad: Storage, m: Storage, v: Storage, n: number, p: AdamWParams): void {
    const ptr = (x: Storage) => (x as F32).byteOffset;
    this.ops.adamw(ptr(param), ptr(grad), ptr(m), ptr(v), n, p.lr, p.beta1, p.beta2, p.eps, p.weightDecay, 1 - p.beta1 ** p.step, 1 - p.beta2 ** p.step);
  }

  newtonSchulz(g: Storage, rows: number, cols: number, steps?: number): Storage {
    return this.reference.newtonSchulz(g, rows, cols, steps);
  }
}

/**
 * How the binary kernel can read each operand (shapes of outShape's rank, dims 1 or equal):
 * a split of outShape into rows (the leading dims) and columns (the trailing dims) such that
 * each operand is full, row-broadcast, column-broadcast or a scalar with respect to it.
 * strides[i] = [row stride, column stride] in elements. null when no split works (e.g. a
 * broadcast in a middle axis only); the caller then uses the CPU backend's general loop.
 */
export function planBinary(shapes: number[][], outShape: number[]): { R: number; C: number; strides: [number, number][] } | null {
  const r = outShape.length;
  // the first split that works has the most columns: the longest SIMD inner loops
  for (let s = 0; s <= r; s++) {
    const R = sizeOf(outShape.slice(0, s)), C = sizeOf(outShape.slice(s));
    const strides: [number, number][] = [];
    for (const sh of shapes) {
      const rowsFull = sh.slice(0, s).every((d, i) => d === outShape[i]);
      const rowsOne = sh.slice(0, s).every((d) => d === 1);
      const colsFull = sh.slice(s).every((d, i) => d === outShape[s + i]);
      const colsOne = sh.slice(s).every((d) => d === 1);
      if (rowsFull && colsFull) strides.push([C, 1]);
      else if (rowsOne && colsFull) strides.push([0, 1]);
      else if (rowsFull && colsOne) strides.push([1, 0]);
      else if (rowsOne && colsOne) strides.push([0, 0]);
      else break;
    }
    if (strides.length === shapes.length) return { R, C, strides };
  }
  return null;
}

export interface WasmBackendOptions {
  /** Threads for matmul (default 1); > 1 starts threads - 1 worker_threads (Node) or Web Workers (a browser, after setWasmWorkerUrl). */
  threads?: number;
  /**
   * The matmul build: 'relaxed' (f32x4.relaxed_madd) or 'plain' (mul + add). Default:
   * $MINICHAT_WASM_SIMD if set (plain, relaxed or auto), else relaxed where the engine has it
   * (Node 20 only after enableRelaxedSimd() in wasm-simd.ts, which bin/minichat.mjs calls).
   */
  simd?: SimdVariant;
}

let injected: { ops?: Uint8Array; matmul?: Uint8Array; relaxed?: Uint8Array } = {};

/**
 * Browser: hand over the bytes of ops.wasm and matmul-shared.wasm, and optionally
 * matmul-relaxed-shared.wasm (there is no disk to read). Without the relaxed bytes the page
 * runs the plain build.
 */
export function setWasmBackendBytes(ops: Uint8Array | ArrayBuffer, matmulShared: Uint8Array | ArrayBuffer, matmulRelaxedShared?: Uint8Array | ArrayBuffer): void {
  injected = { ops: new Uint8Array(ops), matmul: new Uint8Array(matmulShared), relaxed: matmulRelaxedShared ? new Uint8Array(matmulRelaxedShared) : undefined };
}

let workerUrl: string | URL | undefined;

/**
 * Browser: where the helper thread's script (kernels/cpu/wasm-worker.mjs) is served, for
 * `threads` > 1; the page's training worker passes `new URL(..., import.meta.url)` so that
 * the bundler serves the file. The helpers are then module Web Workers (wasm-threads.ts).
 */
export function setWasmWorkerUrl(url: string | URL): void {
  workerUrl = url;
}

/** Can this engine run the wasm backend? (WebAssembly with SIMD and shared memory.) */
export function wasmBackendSupported(): boolean {
  if (typeof WebAssembly === 'undefined' || typeof SharedArrayBuffer === 'undefined') return false;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    return true;
  } catch {
    return false;
  }
}

/**
 * Start the wasm backend: compile the kernels, make the shared memory, start the matmul
 * threads. Throws a one-line error when this engine cannot (no SIMD, no shared memory:
 * a browser page that is not cross-origin isolated); callers fall back to `cpu`.
 */
export async function createWasmBackend(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
  const threads = opts.threads ?? 1;
  if (!(Number.isInteger(threads) && threads >= 1)) throw new RangeError(`wasm backend: threads must be a positive integer, got ${threads}`);
  if (!wasmBackendSupported()) {
    throw new Error('wasm backend: this engine has no shared WebAssembly memory (in a browser the page must be cross-origin isolated: COOP/COEP headers)');
  }
  const node = isNode();
  if (threads > 1 && !node && !workerUrl) throw new Error('wasm backend: threads > 1 in a browser needs the helper\'s URL: call setWasmWorkerUrl(...) first');
  const opsBytes = injected.ops ?? (await readKernelFile('ops.wasm'));
  // relaxed only where this engine has it and (in a page) its bytes were handed over
  const relaxedOk = relaxedSimdSupported() && (!injected.ops || !!injected.relaxed);
  const simd = chooseSimdVariant(opts.simd, node ? process.env.MINICHAT_WASM_SIMD : undefined, relaxedOk);
  const mmBytes = simd === 'relaxed'
    ? (injected.relaxed ?? (await readKernelFile('matmul-relaxed-shared.wasm')))
    : (injected.matmul ?? (await readKernelFile('matmul-shared.wasm')));
  if (!WebAssembly.validate(opsBytes as Uint8Array<ArrayBuffer>) || !WebAssembly.validate(mmBytes as Uint8Array<ArrayBuffer>)) {
    throw new Error('wasm backend: this engine cannot run the kernels (no WebAssembly SIMD)');
  }
  const heap = new WasmHeap();
  const env = { env: { memory: heap.memory } };
  const ops = (await WebAssembly.instantiate(opsBytes as Uint8Array<ArrayBuffer>, env)).instance.exports as unknown as OpsExports;
  const mm = (await WebAssembly.instantiate(mmBytes as Uint8Array<ArrayBuffer>, env)).instance.exports.matmul as MatmulFn;
  const helpers = await Promise.all(Array.from({ length: threads - 1 }, () => startHelper(mmBytes, opsBytes, heap.memory)));
  return new WasmBackend(heap, ops, mm, helpers, simd);
}

/** Start one kernel worker on `memory` and wait until its kernels are instantiated. */
async function startHelper(matmulBytes: Uint8Array, opsBytes: Uint8Array, memory: WebAssembly.Memory): Promise<Helper> {
  return startWorker(isNode() ? await findKernelFile('wasm-worker.mjs') : workerUrl!, { matmulBytes, opsBytes, memory });
}
