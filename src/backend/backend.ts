// The backend interface: the narrow waist between the tensor engine and the hardware.
//
// A backend owns memory (alloc / upload / read / free) and runs one kernel per primitive op.
// It knows nothing of autograd, scopes or shapes beyond the plain numbers each kernel needs:
// tensors, gradients and broadcasting rules live in src/tensor. The CPU backend (cpu.ts) is
// the executable specification: every other backend is tested against it, op by op.
//
// All tensors are contiguous and row-major, so a shape fully describes a layout.

export type DType = 'float32' | 'int32';

/** A backend's handle on a block of memory holding `length` elements. Opaque to callers. */
export interface Storage {
  readonly length: number;
}

/** What `read` returns: float data (Float32Array, or Float64Array on the float64 CPU
 *  backend used by gradient checks) or int32 ids. */
export type HostArray = Float32Array | Float64Array | Int32Array;

export type UnaryOp =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'tanh' | 'sigmoid' | 'relu'
  | 'powScalar' // x ** param
  | 'mulScalar' // x * param
  | 'addScalar'; // x + param

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'lt' | 'gt' | 'eq';

export type ReduceOp = 'sum' | 'max';

export interface Backend {
  readonly name: string;

  // ---- memory ----
  /** A new zero-filled storage. */
  zeros(length: number, dtype: DType): Storage;
  upload(data: ArrayLike<number>, dtype: DType): Storage;
  /** Copy to the host. GPU backends resolve after the device has finished. */
  read(s: Storage, dtype: DType): Promise<HostArray>;
  /** Synchronous read, only where the memory is already on the host (CPU backends). */
  readSync?(s: Storage, dtype: DType): HostArray;
  free(s: Storage): void;
  /** Bytes held right now by live storages (for the memory-is-flat tests). */
  bytesInUse(): number;
  /** The most bytes live storages held at once since the backend was made or since the
   *  last resetPeak(): the peak memory of a step (bench/rl-memory.bench.ts measures it). */
  peakBytes(): number;
  resetPeak(): void;
  /** Submit queued work now (GPU backends batch dispatches; a no-op elsewhere). */
  flush?(): void;
  /** Resolve when all submitted work has finished (a fence, for timing). */
  sync?(): Promise<void>;
  /** Release the device; the backend is unusable afterwards (lets a Node process exit). */
  destroy?(): void;

  // ---- kernels (float32 unless noted) ----
  unary(op: UnaryOp, x: Storage, param: number): Storage;
  /** Elementwise with numpy broadcasting; aShape, bShape already broadcast to outShape's rank. */
  binary(op: BinaryOp, a: Storage, aShape: number[], b: Storage, bShape: number[], outShape: number[]): Storage;
  /** cond ? a : b elementwise (cond is float, nonzero = true), broadcasting like binary. */
  where(c: Storage, cShape: number[], a: Storage, aShape: number[], b: Storage, bShape: number[], outShape: number[]): Storage;
  /** Copy x (shape xShape, same rank as outShape, dims 1 or equal) to every broadcast position. */
  expand(x: Storage, xShape: number[], outShape: number[]): Storage;
  /** Reduce along `axis` of `shape`; the result has that axis removed. */
  reduce(op: ReduceOp, x: Storage, shape: number[], axis: number): Storage;
  /**
   * Batched matmul. a: (...batchA, M, K) or (..., K, M) when transA; b: (...batchB, K, N) or
   * (..., N, K) when transB. Batch dims broadcast to `batch`. Result (...batch, M, N).
   */
  matmul(a: Storage, b: Storage, p: MatmulParams): Storage;
  permute(x: Storage, shape: number[], perm: number[]): Storage;
  /** x[..., start:end, ...] along axis. */
  slice(x: Storage, shape: number[], axis: number, start: number, end: number): Storage;
  /** Zero-pad along axis: `before` zeros, x, `after` zeros (the backward of slice). */
  pad(x: Storage, shape: number[], axis: number, before: number, after: number): Storage;
  concat(xs: Storage[], shapes: number[][], axis: number): Storage;
  /**
   * IN PLACE: dst[..., start:start+n, ...] = src along `axis`, where src has dst's shape
   * except n = srcShape[axis] positions on that axis. Returns nothing: dst is mutated. The
   * only in-place kernel besides the optimizer updates; the KV cache of the generation
   * engine (src/model/engine.ts) is preallocated and written with it, one position per step.
   */
  writeSlice(dst: Storage, dstShape: number[], src: Storage, srcShape: number[], axis: number, start: number): void;
  /** out[i, :] = table[idx[i], :]; table (V, C), idx int32 (N). */
  /** A GPU backend reports an out-of-range index at the next read(), not at the call. */
  gather(table: Storage, V: number, C: number, idx: Storage, N: number): Storage;
  /** out (V, C) = sum over i with idx[i] == v of src[i, :]; src (N, C), idx int32 (N). */
  scatterAdd(src: Storage, N: number, C: number, idx: Storage, V: number): Storage;
}

export interface MatmulParams {
  batchA: number[]; // batch dims of a (may be empty)
  batchB: number[]; // batch dims of b (may be empty)
  batch: number[]; // broadcast batch dims of the result
  M: number;
  K: number;
  N: number;
  transA: boolean;
  transB: boolean;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function sizeOf(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Strides of `shape` read as if broadcast to a same-rank `outShape`: 0 on broadcast dims. */
export function broadcastStrides(shape: number[], outShape: number[]): number[] {
  const st = stridesOf(shape);
  return shape.map((d, i) => (d === 1 && outShape[i] !== 1 ? 0 : st[i]));
}
