// The primitive ops: the closed set that every backend implements and that autograd knows.
// Each one checks its inputs (shape, dtype, backend), calls one backend kernel, and records
// itself on the tape when an input needs a gradient. Their gradient rules are in grad.ts;
// everything else (softmax, RMSNorm, RoPE, cross-entropy, ...) is composed in composed.ts.
import type { Backend, BinaryOp, DType, ReduceOp, UnaryOp } from '../backend/backend.ts';
import { sizeOf } from '../backend/backend.ts';
import { Tensor, fromStorage, getDefaultBackend, isGradEnabled, tape, viewOf } from './tensor.ts';

/** The names of all primitive ops. grad.ts must give each one a gradient rule. */
export type PrimOp =
  | UnaryOp
  | BinaryOp
  | 'where' | 'expand' | 'sum' | 'max'
  | 'reshape' | 'permute' | 'slice' | 'pad' | 'concat'
  | 'matmul' | 'gather' | 'scatterAdd'
  // fused, each with a composed reference in composed.ts (see fused.ts)
  | 'crossEntropyFused' | 'targetLogprobsFused' | 'rmsnormFused' | 'attentionFused'
  // fused chains of elementwise ops, same results as their composed forms (see fused.ts)
  | 'swigluFused' | 'ropeFused'
  // activation recomputation: a whole sub-graph recorded as one node (checkpoint.ts)
  | 'checkpoint';

// ---------------------------------------------------------------------------------------
// checks and shape helpers
// ---------------------------------------------------------------------------------------

export class ShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShapeError';
  }
}

function fail(op: string, msg: string): never {
  throw new ShapeError(`${op}: ${msg}`);
}

export function sameBackend(op: string, ts: Tensor[]): Backend {
  const b = ts[0].backend;
  for (const t of ts) {
    if (t.backend !== b) fail(op, `inputs live on different backends (${b.name} and ${t.backend.name})`);
    t.storage; // throws use-after-dispose with the tensor's description
  }
  return b;
}

export function wantFloat(op: string, t: Tensor): void {
  if (t.dtype !== 'float32') fail(op, `expected a float32 tensor, got ${t.describe()}`);
}
function wantInt(op: string, t: Tensor): void {
  if (t.dtype !== 'int32') fail(op, `expected int32 indices, got ${t.describe()}`);
}

/** numpy broadcasting of two shapes; errors name the op and both shapes. */
export function broadcastShapes(op: string, a: number[], b: number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out = new Array<number>(r);
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1, db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) fail(op, `shapes [${a}] and [${b}] cannot be broadcast together`);
    out[i] = Math.max(da, db);
  }
  return out;
}

function padRank(shape: number[], r: number): number[] {
  return [...new Array(r - shape.length).fill(1), ...shape];
}

export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) fail(op, `axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Record an op on the tape if grad mode is on and any input needs a gradient. */
export function record(op: PrimOp, inputs: Tensor[], out: Tensor, attrs: Record<string, unknown> = {}): Tensor {
  if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, output: out, attrs };
    tape.push(out.node);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// creation
// ---------------------------------------------------------------------------------------

export interface CreateOptions {
  dtype?: DType;
  backend?: Backend;
  requiresGrad?: boolean;
}

export function tensor(data: ArrayLike<number>, shape: number[], opts: CreateOptions = {}): Tensor {
  const dtype = opts.dtype ?? 'float32';
  const backend = opts.backend ?? getDefaultBackend();
  for (const d of shape) if (!Number.isInteger(d) || d < 0) throw new ShapeError(`tensor: bad shape [${shape}]`);
  if (sizeOf(shape) !== data.length) {
    throw new ShapeError(`tensor: ${data.length} values do not fill shape [${shape}] (${sizeOf(shape)} elements)`);
  }
  const t = fromStorage(backend.upload(data, dtype), shape, dtype, backend, 'tensor');
  t.requiresGrad = opts.requiresGrad ?? false;
  return t;
}

export function zeros(shape: number[], opts: CreateOptions = {}): Tensor {
  const dtype = opts.dtype ?? 'float32';
  const backend = opts.backend ?? getDefaultBackend();
  const t = fromStorage(backend.zeros(sizeOf(shape), dtype), shape, dtype, backend, 'zeros');
  t.requiresGrad = opts.requiresGrad ?? false;
  return t;
}

export function full(shape: number[], value: number, opts: CreateOptions = {}): Tensor {
  return tensor(new Float32Array(sizeOf(shape)).fill(value), shape, opts);
}

export function ones(shape: number[], opts: CreateOptions = {}): Tensor {
  return full(shape, 1, opts);
}

export function scalar(value: number, opts: CreateOptions = {}): Tensor {
  return tensor([value], [], opts);
}

// ---------------------------------------------------------------------------------------
// elementwise
// ---------------------------------------------------------------------------------------

function unary(op: UnaryOp, x: Tensor, param = 0): Tensor {
  const b = sameBackend(op, [x]);
  wantFloat(op, x);
  const out = fromStorage(b.unary(op, x.storage, param), x.shape, 'float32', b, op);
  return record(op, [x], out, { param });
}

export const neg = (x: Tensor) => unary('neg', x);
export const exp = (x: Tensor) => unary('exp', x);
export const log = (x: Tensor) => unary('log', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const rsqrt = (x: Tensor) => unary('rsqrt', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', x);
export const relu = (x: Tensor) => unary('relu', x);
/** x ** p for a constant p. */
export const pow = (x: Tensor, p: number) => unary('powScalar', x, p);
/** x * s for a constant s. */
export const mulScalar = (x: Tensor, s: number) => unary('mulScalar', x, s);
/** x + s for a constant s. */
export const addScalar = (x: Tensor, s: number) => unary('addScalar', x, s);

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const be = sameBackend(op, [a, b]);
  wantFloat(op, a);
  wantFloat(op, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const r = shape.length;
  const s = be.binary(op, a.storage, padRank(a.shape, r), b.storage, padRank(b.shape, r), shape);
  const out = fromStorage(s, shape, 'float32', be, op);
  return record(op, [a, b], out);
}

export const add = (a: Tensor, b: Tensor) => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor) => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor) => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor) => binary('div', a, b);
/** 1 where a < b else 0 (no gradient). */
export const lt = (a: Tensor, b: Tensor) => binary('lt', a, b);
export const gt = (a: Tensor, b: Tensor) => binary('gt', a, b);
export const eq = (a: Tensor, b: Tensor) => binary('eq', a, b);

/** cond ? a : b, broadcasting all three; cond is float (nonzero = true). */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const be = sameBackend('where', [cond, a, b]);
  [cond, a, b].forEach((t) => wantFloat('where', t));
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, a.shape), b.shape);
  const r = shape.length;
  const s = be.where(cond.storage, padRank(cond.shape, r), a.storage, padRank(a.shape, r), b.storage, padRank(b.shape, r), shape);
  return record('where', [cond, a, b], fromStorage(s, shape, 'float32', be, 'where'));
}

/** Broadcast x to `shape` (numpy rules), materialising the copies. */
export function expand(x: Tensor, shape: number[]): Tensor {
  const be = sameBackend('expand', [x]);
  wantFloat('expand', x);
  const got = broadcastShapes('expand', x.shape, shape);
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    fail('expand', `cannot expand [${x.shape}] to [${shape}]`);
  }
  const s = be.expand(x.storage, padRank(x.shape, shape.length), shape);
  return record('expand', [x], fromStorage(s, [...shape], 'float32', be, 'expand'));
}

// ---------------------------------------------------------------------------------------
// reductions
// ---------------------------------------------------------------------------------------

function reduce(op: ReduceOp, x: Tensor, axis: number, keepdim: boolean): Tensor {
  const be = sameBackend(op, [x]);
  wantFloat(op, x);
  const a = normAxis(op, axis, x.rank);
  const shape = x.shape.filter((_, i) => i !== a);
  const out = fromStorage(be.reduce(op, x.storage, x.shape, a), shape, 'float32', be, op);
  record(op, [x], out, { axis: a });
  return keepdim ? reshape(out, x.shape.map((d, i) => (i === a ? 1 : d))) : out;
}

/** Sum along one axis. */
export const sum = (x: Tensor, axis: number, keepdim = false) => reduce('sum', x, axis, keepdim);
/** Max along one axis (the gradient flows to every position equal to the max). */
export const max = (x: Tensor, axis: number, keepdim = false) => reduce('max', x, axis, keepdim);

// ---------------------------------------------------------------------------------------
// layout
// ---------------------------------------------------------------------------------------

/** A view with another shape; one dimension may be -1. Free: no copy. */
export function reshape(x: Tensor, shape: number[]): Tensor {
  sameBackend('reshape', [x]);
  const known = shape.filter((d) => d !== -1);
  const holes = shape.length - known.length;
  const k = sizeOf(known);
  let out = shape;
  if (holes > 1) fail('reshape', `at most one -1 in [${shape}]`);
  if (holes === 1) {
    if (k === 0 || x.size % k !== 0) fail('reshape', `cannot reshape [${x.shape}] to [${shape}]`);
    out = shape.map((d) => (d === -1 ? x.size / k : d));
  }
  if (sizeOf(out) !== x.size) fail('reshape', `cannot reshape [${x.shape}] (${x.size} elements) to [${shape}]`);
  return record('reshape', [x], viewOf(x, out, 'reshape'));
}

/** Reorder dimensions: out.shape[i] = x.shape[perm[i]]. */
export function permute(x: Tensor, perm: number[]): Tensor {
  const be = sameBackend('permute', [x]);
  wantFloat('permute', x);
  const p = perm.map((a) => normAxis('permute', a, x.rank));
  if (p.length !== x.rank || new Set(p).size !== p.length) fail('permute', `[${perm}] is not a permutation of ${x.rank} axes`);
  const s = be.permute(x.storage, x.shape, p);
  return record('permute', [x], fromStorage(s, p.map((a) => x.shape[a]), 'float32', be, 'permute'), { perm: p });
}

/** Swap two axes. */
export function transpose(x: Tensor, a0 = -2, a1 = -1): Tensor {
  const perm = x.shape.map((_, i) => i);
  const i = normAxis('transpose', a0, x.rank), j = normAxis('transpose', a1, x.rank);
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permute(x, perm);
}

/** x[..., start:end, ...] along `axis`. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const be = sameBackend('slice', [x]);
  wantFloat('slice', x);
  const a = normAxis('slice', axis, x.rank);
  const n = x.shape[a];
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= n)) {
    fail('slice', `range [${start}, ${end}) is not inside axis ${a} of length ${n}`);
  }
  const shape = x.shape.map((d, i) => (i === a ? end - start : d));
  const s = be.slice(x.storage, x.shape, a, start, end);
  return record('slice', [x], fromStorage(s, shape, 'float32', be, 'slice'), { axis: a, start, end });
}

/** Zero-pad `before` and `after` entries along `axis`. */
export function pad(x: Tensor, axis: number, before: number, after: number): Tensor {
  const be = sameBackend('pad', [x]);
  wantFloat('pad', x);
  const a = normAxis('pad', axis, x.rank);
  if (before < 0 || after < 0) fail('pad', `negative padding (${before}, ${after})`);
  const shape = x.shape.map((d, i) => (i === a ? d + before + after : d));
  const s = be.pad(x.storage, x.shape, a, before, after);
  return record('pad', [x], fromStorage(s, shape, 'float32', be, 'pad'), { axis: a, before, after });
}

/** Join tensors along `axis`; all other dims must match. */
export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 0) fail('concat', 'no tensors');
  const be = sameBackend('concat', xs);
  xs.forEach((t) => wantFloat('concat', t));
  const a = normAxis('concat', axis, xs[0].rank);
  for (const t of xs) {
    if (t.rank !== xs[0].rank || t.shape.some((d, i) => i !== a && d !== xs[0].shape[i])) {
      fail('concat', `shapes [${xs[0].shape}] and [${t.shape}] differ outside axis ${a}`);
    }
  }
  const shape = xs[0].shape.map((d, i) => (i === a ? xs.reduce((s, t) => s + t.shape[a], 0) : d));
  const s = be.concat(xs.map((t) => t.storage), xs.map((t) => t.shape), a);
  return record('concat', xs, fromStorage(s, shape, 'float32', be, 'concat'), { axis: a, sizes: xs.map((t) => t.shape[a]) });
}

/**
 * IN PLACE, inference only: dst[..., start:start+n, ...] = src along `axis` (n = src's
 * length on that axis; every other dim must match). Returns dst, whose storage now holds
 * the new values. This is how the generation engine writes each step's keys and values
 * into its preallocated KV cache instead of concatenating a new, longer tensor every step.
 *
 * Deliberately NOT a PrimOp, so it has no gradient rule in grad.ts: mutating a tensor that
 * the tape may still read in the backward pass would silently corrupt gradients. It throws
 * instead of recording whenever gradients are being recorded for any input.
 */
export function writeSlice(dst: Tensor, src: Tensor, axis: number, start: number): Tensor {
  const be = sameBackend('writeSlice', [dst, src]);
  wantFloat('writeSlice', dst);
  wantFloat('writeSlice', src);
  if (isGradEnabled() && (dst.requiresGrad || src.requiresGrad)) {
    fail('writeSlice', 'is an in-place, inference-only op with no gradient; call it inside noGrad() on tensors that do not require grad');
  }
  const a = normAxis('writeSlice', axis, dst.rank);
  if (src.rank !== dst.rank || src.shape.some((d, i) => i !== a && d !== dst.shape[i])) {
    fail('writeSlice', `src [${src.shape}] differs from dst [${dst.shape}] outside axis ${a}`);
  }
  const n = src.shape[a];
  if (!(Number.isInteger(start) && start >= 0 && start + n <= dst.shape[a])) {
    fail('writeSlice', `range [${start}, ${start + n}) is not inside axis ${a} of length ${dst.shape[a]}`);
  }
  be.writeSlice(dst.storage, dst.shape, src.storage, src.shape, a, start);
  return dst;
}

// ---------------------------------------------------------------------------------------
// matmul
// ---------------------------------------------------------------------------------------

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/**
 * Batched matrix product. a: (..., M, K) (or (..., K, M) with transA), b: (..., K, N) (or
 * (..., N, K) with transB); batch dims broadcast. Result: (...batch, M, N).
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const be = sameBackend('matmul', [a, b]);
  wantFloat('matmul', a);
  wantFloat('matmul', b);
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  if (a.rank < 2 || b.rank < 2) fail('matmul', `needs rank >= 2, got [${a.shape}] and [${b.shape}]`);
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  const M = transA ? ac : ar, K = transA ? ar : ac;
  const Kb = transB ? bc : br, N = transB ? br : bc;
  if (K !== Kb) {
    fail('matmul', `inner dimensions differ: [${a.shape}]${transA ? 'ᵀ' : ''} @ [${b.shape}]${transB ? 'ᵀ' : ''} (${K} vs ${Kb})`);
  }
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  const batch = broadcastShapes('matmul', batchA, batchB);
  const s = be.matmul(a.storage, b.storage, { batchA, batchB, batch, M, K, N, transA, transB });
  return record('matmul', [a, b], fromStorage(s, [...batch, M, N], 'float32', be, 'matmul'), { transA, transB });
}

// ---------------------------------------------------------------------------------------
// embedding
// ---------------------------------------------------------------------------------------

/** Rows of a (V, C) table: out[..., :] = table[idx[...], :]. */
export function gather(table: Tensor, idx: Tensor): Tensor {
  const be = sameBackend('gather', [table, idx]);
  wantFloat('gather', table);
  wantInt('gather', idx);
  if (table.rank !== 2) fail('gather', `table must be (V, C), got [${table.shape}]`);
  const [V, C] = table.shape;
  const s = be.gather(table.storage, V, C, idx.storage, idx.size);
  return record('gather', [table, idx], fromStorage(s, [...idx.shape, C], 'float32', be, 'gather'));
}

/** The adjoint of gather: a (V, C) tensor with src's rows summed into rows idx. */
export function scatterAdd(src: Tensor, idx: Tensor, V: number): Tensor {
  const be = sameBackend('scatterAdd', [src, idx]);
  wantFloat('scatterAdd', src);
  wantInt('scatterAdd', idx);
  const C = src.shape.at(-1)!;
  if (src.size !== idx.size * C) fail('scatterAdd', `src [${src.shape}] does not match indices [${idx.shape}]`);
  const s = be.scatterAdd(src.storage, idx.size, C, idx.storage, V);
  return record('scatterAdd', [src, idx], fromStorage(s, [V, C], 'float32', be, 'scatterAdd'), { V });
}

/** Move a tensor to another backend (a copy through the host; no gradient). */
export async function toBackend(x: Tensor, backend: Backend): Promise<Tensor> {
  return tensor(await x.data(), x.shape, { dtype: x.dtype, backend });
}
