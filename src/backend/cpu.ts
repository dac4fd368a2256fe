// The CPU backend: plain TypeScript loops over typed arrays. This is the reference that
// defines what every op means; other backends are tested against it.
//
// It is generic over the float array type: `cpu` stores float32 like every other backend,
// `cpu64` stores float64 and exists so that gradient checks can compare against finite
// differences computed in double precision.
//
// Only the hot paths are tuned: matmul (most of a training step) packs its operands so every
// dot product walks contiguous memory and keeps a 2x4 tile of sums in registers; binary ops
// have loops for the common broadcasts (same shape, scalar, trailing row).
import { ByteCounter } from './byte-counter.ts';
import {
  type Backend, type BinaryOp, type DType, type HostArray, type MatmulParams, type ReduceOp,
  type Storage, type UnaryOp, broadcastStrides, sizeOf, stridesOf,
} from './backend.ts';
import { wasmMatmul, wasmMatmulReady } from './wasm-matmul.ts';

type FloatArray = Float32Array | Float64Array;
type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;

export class CpuBackend extends ByteCounter implements Backend {
  readonly name: string;
  private readonly F: FloatCtor;
  // Freed float arrays by length, reused by the next allocation of that length. A training
  // step makes the same few hundred allocations every time; reusing them avoids the page
  // faults and garbage collection of fresh multi-megabyte typed arrays.
  private pool = new Map<number, FloatArray[]>();
  private pooledBytes = 0;
  private static readonly POOL_MIN = 1024; // smaller arrays are cheap to allocate
  private static readonly POOL_MAX_BYTES = 512 * 2 ** 20;
  // matmul's packing buffers, grown as needed and reused
  private packA: FloatArray;
  private packB: FloatArray;

  constructor(floatType: FloatCtor = Float32Array, name = 'cpu') {
    super();
    this.F = floatType;
    this.name = name;
    this.packA = new floatType(0);
    this.packB = new floatType(0);
  }

  private bytesPer(dtype: DType): number {
    return dtype === 'int32' ? 4 : this.F.BYTES_PER_ELEMENT;
  }

  /** A zero-filled float array of n elements, from the pool when one is free. */
  protected newFloat(n: number): FloatArray {
    this.grow(n * this.F.BYTES_PER_ELEMENT);
    const reuse = this.pool.get(n)?.pop();
    if (reuse) {
      this.pooledBytes -= reuse.byteLength;
      return reuse.fill(0);
    }
    return new this.F(n);
  }

  // ---- memory ----
  zeros(length: number, dtype: DType): Storage {
    if (dtype === 'float32') return this.newFloat(length);
    this.grow(length * 4);
    return new Int32Array(length);
  }
  upload(data: ArrayLike<number>, dtype: DType): Storage {
    const s = this.zeros(data.length, dtype) as HostArray;
    s.set(data);
    return s;
  }
  /** A copy (the storage itself may be reused once its tensor is disposed). */
  async read(s: Storage, dtype: DType): Promise<HostArray> {
    return this.readSync(s, dtype).slice();
  }
  /** The storage itself, no copy: valid until its tensor is disposed. */
  readSync(s: Storage, _dtype: DType): HostArray {
    return s as HostArray;
  }
  free(s: Storage): void {
    const a = s as HostArray;
    this.countFree(a.byteLength);
    if (a instanceof this.F && a.length >= CpuBackend.POOL_MIN && this.pooledBytes + a.byteLength <= CpuBackend.POOL_MAX_BYTES) {
      let list = this.pool.get(a.length);
      if (!list) this.pool.set(a.length, (list = []));
      list.push(a);
      this.pooledBytes += a.byteLength;
    }
  }
  private grow(bytes: number): void {
    this.countAlloc(bytes);
  }

  // ---- elementwise ----
  unary(op: UnaryOp, xs: Storage, p: number): Storage {
    const x = xs as FloatArray;
    const n = x.length;
    const y = this.newFloat(n);
    switch (op) {
      case 'neg': for (let i = 0; i < n; i++) y[i] = -x[i]; break;
      case 'exp': for (let i = 0; i < n; i++) y[i] = Math.exp(x[i]); break;
      case 'log': for (let i = 0; i < n; i++) y[i] = Math.log(x[i]); break;
      case 'sqrt': for (let i = 0; i < n; i++) y[i] = Math.sqrt(x[i]); break;
      case 'rsqrt': for (let i = 0; i < n; i++) y[i] = 1 / Math.sqrt(x[i]); break;
      case 'tanh': for (let i = 0; i < n; i++) y[i] = Math.tanh(x[i]); break;
      case 'sigmoid': for (let i = 0; i < n; i++) y[i] = 1 / (1 + Math.exp(-x[i])); break;
      case 'relu': for (let i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0; break;
      case 'powScalar': for (let i = 0; i < n; i++) y[i] = x[i] ** p; break;
      case 'mulScalar': for (let i = 0; i < n; i++) y[i] = x[i] * p; break;
      case 'addScalar': for (let i = 0; i < n; i++) y[i] = x[i] + p; break;
      default: throw new Error(`cpu: unknown unary op ${op satisfies never}`);
    }
    return y;
  }

  binary(op: BinaryOp, as: Storage, aShape: number[], bs: Storage, bShape: number[], outShape: number[]): Storage {
    const a = as as FloatArray, b = bs as FloatArray;
    const n = sizeOf(outShape);
    const y = this.newFloat(n);
    // Fast path: a is full size and b repeats with period b.length (same shape, a scalar, or a
    // row broadcast along leading dims, as for a norm weight). Specialised per op so the loop
    // body is a single arithmetic instruction, not a call.
    if (a.length === n && isTrailingBroadcast(bShape, outShape)) {
      const m = b.length;
      switch (op) {
        case 'add': for (let i = 0, j = 0; i < n; i++, j = j + 1 === m ? 0 : j + 1) y[i] = a[i] + b[j]; return y;
        case 'sub': for (let i = 0, j = 0; i < n; i++, j = j + 1 === m ? 0 : j + 1) y[i] = a[i] - b[j]; return y;
        case 'mul': for (let i = 0, j = 0; i < n; i++, j = j + 1 === m ? 0 : j + 1) y[i] = a[i] * b[j]; return y;
        case 'div': for (let i = 0, j = 0; i < n; i++, j = j + 1 === m ? 0 : j + 1) y[i] = a[i] / b[j]; return y;
        default: break;
      }
    }
    const f = BINARY_FNS[op];
    const ia = broadcastIndex(aShape, outShape), ib = broadcastIndex(bShape, outShape);
    for (let i = 0; i < n; i++) y[i] = f(a[ia[i]], b[ib[i]]);
    return y;
  }

  where(cs: Storage, cShape: number[], as: Storage, aShape: number[], bs: Storage, bShape: number[], outShape: number[]): Storage {
    const c = cs as FloatArray, a = as as FloatArray, b = bs as FloatArray;
    const n = sizeOf(outShape);
    const y = this.newFloat(n);
    const ic = broadcastIndex(cShape, outShape), ia = broadcastIndex(aShape, outShape), ib = broadcastIndex(bShape, outShape);
    for (let i = 0; i < n; i++) y[i] = c[ic[i]] !== 0 ? a[ia[i]] : b[ib[i]];
    return y;
  }

  expand(xs: Storage, xShape: number[], outShape: number[]): Storage {
    const x = xs as FloatArray;
    const n = sizeOf(outShape);
    const y = this.newFloat(n);
    // The trailing dims that are not broadcast are contiguous in both x and y: copy them as
    // runs of `run` values (a grouped-query attention's KV heads repeated for their query
    // heads, a forked KV cache), stepping x's offset like an odometer over the leading dims.
    let d = outShape.length;
    while (d > 0 && xShape[d - 1] === outShape[d - 1]) d--;
    const run = sizeOf(outShape.slice(d));
    if (run < 16) {
      // short runs: one index per element
      const ix = broadcastIndex(xShape, outShape);
      for (let i = 0; i < n; i++) y[i] = x[ix[i]];
      return y;
    }
    const str = broadcastStrides(xShape, outShape), idx = new Array<number>(d).fill(0);
    let src = 0;
    for (let o = 0; o < n; o += run) {
      y.set(x.subarray(src, src + run), o);
      for (let k = d - 1; k >= 0; k--) {
        src += str[k];
        if (++idx[k] < outShape[k]) break;
        src -= str[k] * outShape[k];
        idx[k] = 0;
      }
    }
    return y;
  }

  // ---- reductions ----
  reduce(op: ReduceOp, xs: Storage, shape: number[], axis: number): Storage {
    const x = xs as FloatArray;
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const y = this.newFloat(outer * inner);
    for (let o = 0; o < outer; o++) {
      const base = o * n * inner;
      for (let j = 0; j < inner; j++) {
        let acc = op === 'sum' ? 0 : -Infinity;
        for (let k = 0; k < n; k++) {
          const v = x[base + k * inner + j];
          if (op === 'sum') acc += v;
          else if (v > acc || Number.isNaN(v)) acc = v;
        }
        y[o * inner + j] = acc;
      }
    }
    return y;
  }

  // ---- matmul ----
  matmul(as: Storage, bs: Storage, p: MatmulParams): Storage {
    const a = as as FloatArray, b = bs as FloatArray;
    const { M, K, N } = p;
    const nb = sizeOf(p.batch);
    const c = this.newFloat(nb * M * N);
    const ia = batchIndex(p.batchA, p.batch), ib = batchIndex(p.batchB, p.batch);
    // Pack A as (M, K) and B as Bᵀ (N, K), so every dot product reads two contiguous rows.
    if (this.packA.length < M * K) this.packA = new this.F(M * K);
    if (this.packB.length < K * N) this.packB = new this.F(K * N);
    const pa = this.packA.subarray(0, M * K), pb = this.packB.subarray(0, K * N);
    for (let z = 0; z < nb; z++) {
      const aOff = ia[z] * M * K, bOff = ib[z] * K * N;
      if (p.transA) transposeInto(a, aOff, K, M, pa);
      else pa.set(a.subarray(aOff, aOff + M * K));
      if (p.transB) pb.set(b.subarray(bOff, bOff + K * N));
      else transposeInto(b, bOff, K, N, pb);
      // The WASM SIMD kernel (kernels/cpu/matmul.wat, 8-10x faster) once initWasmMatmul()
      // has run; this loop otherwise, and always for float64.
      if (this.F === Float32Array && wasmMatmulReady()) {
        wasmMatmul(pa as Float32Array, 0, pb as Float32Array, 0, M, K, N, c as Float32Array, z * M * N);
      } else matmulKernel(pa, pb, c, z * M * N, M, K, N);
    }
    return c;
  }

  // ---- layout ----
  permute(xs: Storage, shape: number[], perm: number[]): Storage {
    const x = xs as FloatArray;
    const n = x.length;
    const y = this.newFloat(n);
    const outShape = perm.map((p) => shape[p]);
    const inStr = stridesOf(shape);
    const str = perm.map((p) => inStr[p]); // input stride for each output dim
    const r = outShape.length;
    const idx = new Array<number>(r).fill(0);
    let src = 0;
    for (let i = 0; i < n; i++) {
      y[i] = x[src];
      // odometer increment over the output index, tracking the input offset
      for (let d = r - 1; d >= 0; d--) {
        idx[d]++;
        src += str[d];
        if (idx[d] < outShape[d]) break;
        src -= str[d] * outShape[d];
        idx[d] = 0;
      }
    }
    return y;
  }

  slice(xs: Storage, shape: number[], axis: number, start: number, end: number): Storage {
    const x = xs as FloatArray;
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const m = end - start;
    const y = this.newFloat(outer * m * inner);
    for (let o = 0; o < outer; o++) {
      y.set(x.subarray((o * n + start) * inner, (o * n + end) * inner), o * m * inner);
    }
    return y;
  }

  pad(xs: Storage, shape: number[], axis: number, before: number, after: number): Storage {
    const x = xs as FloatArray;
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const m = n + before + after;
    const y = this.newFloat(outer * m * inner);
    for (let o = 0; o < outer; o++) {
      y.set(x.subarray(o * n * inner, (o + 1) * n * inner), (o * m + before) * inner);
    }
    return y;
  }

  writeSlice(dsts: Storage, dstShape: number[], srcs: Storage, srcShape: number[], axis: number, start: number): void {
    const dst = dsts as FloatArray, src = srcs as FloatArray;
    // both viewed as (outer, axisLen, inner): position k of src's axis is a contiguous run of
    // `inner` values that lands at position start + k of dst's axis
    const outer = sizeOf(dstShape.slice(0, axis)), m = dstShape[axis], n = srcShape[axis], inner = sizeOf(dstShape.slice(axis + 1));
    for (let o = 0; o < outer; o++) {
      dst.set(src.subarray(o * n * inner, (o + 1) * n * inner), (o * m + start) * inner);
    }
  }

  concat(xs: Storage[], shapes: number[][], axis: number): Storage {
    const outer = sizeOf(shapes[0].slice(0, axis)), inner = sizeOf(shapes[0].slice(axis + 1));
    const total = shapes.reduce((s, sh) => s + sh[axis], 0);
    const y = this.newFloat(outer * total * inner);
    let off = 0;
    xs.forEach((xsi, k) => {
      const x = xsi as FloatArray;
      const n = shapes[k][axis];
      for (let o = 0; o < outer; o++) {
        y.set(x.subarray(o * n * inner, (o + 1) * n * inner), (o * total + off) * inner);
      }
      off += n;
    });
    return y;
  }

  // ---- embedding ----
  gather(ts: Storage, V: number, C: number, is: Storage, N: number): Storage {
    const table = ts as FloatArray, idx = is as Int32Array;
    const y = this.newFloat(N * C);
    for (let i = 0; i < N; i++) {
      const r = idx[i];
      if (r < 0 || r >= V) throw new RangeError(`gather: index ${r} at position ${i} is outside [0, ${V})`);
      y.set(table.subarray(r * C, (r + 1) * C), i * C);
    }
    return y;
  }

  scatterAdd(ss: Storage, N: number, C: number, is: Storage, V: number): Storage {
    const src = ss as FloatArray, idx = is as Int32Array;
    const y = this.newFloat(V * C);
    for (let i = 0; i < N; i++) {
      const r = idx[i];
      if (r < 0 || r >= V) throw new RangeError(`scatterAdd: index ${r} at position ${i} is outside [0, ${V})`);
      const o = r * C, s = i * C;
      for (let j = 0; j < C; j++) y[o + j] += src[s + j];
    }
    return y;
  }
}

const BINARY_FNS: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  lt: (a, b) => (a < b ? 1 : 0),
  gt: (a, b) => (a > b ? 1 : 0),
  eq: (a, b) => (a === b ? 1 : 0),
};

/** True when `shape` (same rank as outShape) is all 1s followed by outShape's trailing dims. */
export function isTrailingBroadcast(shape: number[], outShape: number[]): boolean {
  let i = 0;
  while (i < shape.length && shape[i] === 1 && outShape[i] !== 1) i++;
  for (; i < shape.length; i++) if (shape[i] !== outShape[i]) return false;
  return true;
}

/** For each flat output index, the flat index into an input broadcast to outShape. */
export function broadcastIndex(shape: number[], outShape: number[]): Int32Array {
  const n = sizeOf(outShape);
  const out = new Int32Array(n);
  if (sizeOf(shape) === n) {
    for (let i = 0; i < n; i++) out[i] = i;
    return out;
  }
  const st = broadcastStrides(shape, outShape);
  const r = outShape.length;
  const idx = new Array<number>(r).fill(0);
  let src = 0;
  for (let i = 0; i < n; i++) {
    out[i] = src;
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      src += st[d];
      if (idx[d] < outShape[d]) break;
      src -= st[d] * outShape[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** For each flat batch index of `batch`, the flat batch index into `own` (broadcast). */
export function batchIndex(own: number[], batch: number[]): Int32Array {
  const padded = [...new Array(batch.length - own.length).fill(1), ...own];
  return broadcastIndex(padded, batch);
}

function transposeInto(src: FloatArray, off: number, rows: number, cols: number, dst: FloatArray): void {
  // src block is (rows, cols); dst becomes (cols, rows)
  for (let i = 0; i < rows; i++) {
    const r = off + i * cols;
    for (let j = 0; j < cols; j++) dst[j * rows + i] = src[r + j];
  }
}

/**
 * c[cOff + (M, N)] = a (M, K) · bt (N, K)ᵀ, both packed row-major so every dot product walks
 * two contiguous rows. A 2x4 register tile (8 accumulators) loads 6 values per 8 multiply-
 * adds, and nothing is stored until a tile's sums are complete: about 1.7x the speed of the
 * textbook i-k-j loop in V8 (measured in bench/engine.bench.ts).
 */
export function matmulKernel(a: FloatArray, bt: FloatArray, c: FloatArray, cOff: number, M: number, K: number, N: number): void {
  let i = 0;
  for (; i + 1 < M; i += 2) {
    const a0 = i * K, a1 = a0 + K;
    const r0 = cOff + i * N, r1 = r0 + N;
    let j = 0;
    for (; j + 3 < N; j += 4) {
      const b0 = j * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      for (let k = 0; k < K; k++) {
        const x0 = a[a0 + k], x1 = a[a1 + k];
        const y0 = bt[b0 + k], y1 = bt[b1 + k], y2 = bt[b2 + k], y3 = bt[b3 + k];
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
      }
      c[r0 + j] = c00; c[r0 + j + 1] = c01; c[r0 + j + 2] = c02; c[r0 + j + 3] = c03;
      c[r1 + j] = c10; c[r1 + j + 1] = c11; c[r1 + j + 2] = c12; c[r1 + j + 3] = c13;
    }
    for (; j < N; j++) {
      // leftover columns: one column, two rows
      const b0 = j * K;
      let s0 = 0, s1 = 0;
      for (let k = 0; k < K; k++) {
        s0 += a[a0 + k] * bt[b0 + k];
        s1 += a[a1 + k] * bt[b0 + k];
      }
      c[r0 + j] = s0;
      c[r1 + j] = s1;
    }
  }
  for (; i < M; i++) {
    // leftover row (M odd)
    for (let j = 0; j < N; j++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += a[i * K + k] * bt[j * K + k];
      c[cOff + i * N + j] = acc;
    }
  }
}

/** The float32 reference backend. */
export const cpu = new CpuBackend(Float32Array, 'cpu');
/** float64 storage: used by gradient checks against finite differences. */
export const cpu64 = new CpuBackend(Float64Array, 'cpu64');
