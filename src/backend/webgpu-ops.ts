// The WebGPU backend's primitive ops: each Backend method is one dispatch (or a few) of a
// kernel in kernels/ (elementwise with broadcasting through strides, reductions, the tiled
// matmul, layout copies, embedding gather and a deterministic scatter-add).
import {
  type BinaryOp, type MatmulParams, type ReduceOp, type Storage, type UnaryOp, broadcastStrides, sizeOf, stridesOf,
} from './backend.ts';
import { WebGPUBuffers } from './webgpu-buffers.ts';
import { type GpuStorage, ParamBlock } from './webgpu-dispatch.ts';

const UNARY_CODES: Record<UnaryOp, number> = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, tanh: 5, sigmoid: 6, relu: 7, powScalar: 8, mulScalar: 9, addScalar: 10,
};
const BINARY_CODES: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3, lt: 4, gt: 5, eq: 6 };

const MAX_RANK = 8; // dims the broadcast / permute kernels index (two vec4<u32>)

function pad8(xs: number[]): number[] {
  return [...xs, ...new Array(Math.max(0, MAX_RANK - xs.length)).fill(0)];
}

export class WebGPUOps extends WebGPUBuffers {
  /** Matmul may use 16-byte loads where the layout allows (tests switch it off to compare). */
  vectorLoads = true;

  // ---- elementwise ----

  unary(op: UnaryOp, x: Storage, param: number): Storage {
    const xs = this.check(x);
    const y = this.alloc(xs.length, 'float32');
    const p = new ParamBlock().u32(xs.length).f32(param);
    this.dispatch('unary', 'main', { OP: UNARY_CODES[op] }, p, [xs, y], this.grid1d(xs.length));
    return y;
  }

  binary(op: BinaryOp, a: Storage, aShape: number[], b: Storage, bShape: number[], outShape: number[]): Storage {
    const n = sizeOf(outShape);
    const y = this.alloc(n, 'float32');
    checkRank('binary', outShape);
    const mode = sizeOf(aShape) === n && sizeOf(bShape) === n ? 1 : sizeOf(aShape) === n && sizeOf(bShape) === 1 ? 2 : 0;
    const p = new ParamBlock().u32(n, outShape.length, mode, 0)
      .vec(pad8(outShape), 8).vec(pad8(broadcastStrides(aShape, outShape)), 8).vec(pad8(broadcastStrides(bShape, outShape)), 8);
    this.dispatch('binary', 'main', { OP: BINARY_CODES[op] }, p, [this.check(a), this.check(b), y], this.grid1d(n));
    return y;
  }

  where(c: Storage, cShape: number[], a: Storage, aShape: number[], b: Storage, bShape: number[], outShape: number[]): Storage {
    const n = sizeOf(outShape);
    const y = this.alloc(n, 'float32');
    checkRank('where', outShape);
    const p = new ParamBlock().u32(n, outShape.length, 0, 0).vec(pad8(outShape), 8)
      .vec(pad8(broadcastStrides(cShape, outShape)), 8).vec(pad8(broadcastStrides(aShape, outShape)), 8)
      .vec(pad8(broadcastStrides(bShape, outShape)), 8);
    this.dispatch('where', 'main', undefined, p, [this.check(c), this.check(a), this.check(b), y], this.grid1d(n));
    return y;
  }

  expand(x: Storage, xShape: number[], outShape: number[]): Storage {
    const n = sizeOf(outShape);
    const y = this.alloc(n, 'float32');
    checkRank('expand', outShape);
    const p = new ParamBlock().u32(n, outShape.length, 0, 0).vec(pad8(outShape), 8).vec(pad8(broadcastStrides(xShape, outShape)), 8);
    this.dispatch('expand', 'main', undefined, p, [this.check(x), y], this.grid1d(n));
    return y;
  }

  // ---- reductions ----

  reduce(op: ReduceOp, x: Storage, shape: number[], axis: number): Storage {
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const y = this.alloc(outer * inner, 'float32');
    const p = new ParamBlock().u32(outer, n, inner);
    const OP = op === 'sum' ? 0 : 1;
    if (inner === 1) this.dispatch('reduce', 'reduce_rows', { OP }, p, [this.check(x), y], this.grid1d(outer, 1));
    else this.dispatch('reduce', 'reduce_cols', { OP }, p, [this.check(x), y], this.grid1d(outer * Math.ceil(inner / 16), 1));
    return y;
  }

  // ---- matmul ----

  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    const { M, K, N } = p;
    const nb = sizeOf(p.batch);
    const y = this.alloc(nb * M * N, 'float32');
    if (p.batch.length > 4) throw new Error(`webgpu matmul: at most 4 batch dims, got [${p.batch}]`);
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (nb > maxDim) throw new Error(`webgpu matmul: ${nb} matrices in one batch; at most ${maxDim}`);
    const pad4 = (xs: number[]) => [...xs, 0, 0, 0, 0].slice(0, 4);
    const ps = new ParamBlock().u32(M, N, K, p.batch.length)
      .vec(pad4(p.batch), 4).vec(pad4(batchStrides(p.batchA, p.batch)), 4).vec(pad4(batchStrides(p.batchB, p.batch)), 4);
    if (K === 0) {
      this.clear(y.buffer); // an empty sum: zeros
      return y;
    }
    // vec4 loads when an operand's contiguous dim is a multiple of 4 (then every row, and
    // every matrix of the batch, starts on a 16-byte boundary)
    const vecA = (p.transA ? M : K) % 4 === 0, vecB = (p.transB ? K : N) % 4 === 0;
    const constants = { TRANS_A: +p.transA, TRANS_B: +p.transB, VEC_A: +(vecA && this.vectorLoads), VEC_B: +(vecB && this.vectorLoads) };
    const [as, bs] = [this.check(a), this.check(b)];
    this.dispatch('matmul', 'main', constants, ps, [as, bs, y, as, bs], [Math.ceil(N / 64), Math.ceil(M / 64), nb]);
    return y;
  }

  // ---- layout ----

  permute(x: Storage, shape: number[], perm: number[]): Storage {
    const n = sizeOf(shape);
    const y = this.alloc(n, 'float32');
    checkRank('permute', shape);
    const inStr = stridesOf(shape);
    const p = new ParamBlock().u32(n, shape.length, 0, 0).vec(pad8(perm.map((d) => shape[d])), 8).vec(pad8(perm.map((d) => inStr[d])), 8);
    this.dispatch('permute', 'main', undefined, p, [this.check(x), y], this.grid1d(n));
    return y;
  }

  /** Copy `count` positions along an axis, from x[srcOff..] to y[dstOff..] (slice.wgsl). */
  private copyAxis(x: GpuStorage, y: GpuStorage, outer: number, inner: number, count: number, xLen: number, yLen: number, srcOff: number, dstOff: number): void {
    const p = new ParamBlock().u32(outer, inner, count, xLen, yLen, srcOff, dstOff);
    this.dispatch('slice', 'main', undefined, p, [x, y], this.grid1d(outer * count * inner));
  }

  slice(x: Storage, shape: number[], axis: number, start: number, end: number): Storage {
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const y = this.alloc(outer * (end - start) * inner, 'float32');
    this.copyAxis(this.check(x), y, outer, inner, end - start, n, end - start, start, 0);
    return y;
  }

  pad(x: Storage, shape: number[], axis: number, before: number, after: number): Storage {
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const m = n + before + after;
    const y = this.alloc(outer * m * inner, 'float32');
    this.clear(y.buffer);
    this.copyAxis(this.check(x), y, outer, inner, n, n, m, 0, before);
    return y;
  }

  /** In place: the same kernel as slice/pad/concat (slice.wgsl), writing into an existing y. */
  writeSlice(dst: Storage, dstShape: number[], src: Storage, srcShape: number[], axis: number, start: number): void {
    const outer = sizeOf(dstShape.slice(0, axis)), inner = sizeOf(dstShape.slice(axis + 1));
    const n = srcShape[axis];
    this.copyAxis(this.check(src), this.check(dst), outer, inner, n, n, dstShape[axis], 0, start);
  }

  concat(xs: Storage[], shapes: number[][], axis: number): Storage {
    const outer = sizeOf(shapes[0].slice(0, axis)), inner = sizeOf(shapes[0].slice(axis + 1));
    const total = shapes.reduce((s, sh) => s + sh[axis], 0);
    const y = this.alloc(outer * total * inner, 'float32');
    let off = 0;
    xs.forEach((x, k) => {
      const n = shapes[k][axis];
      this.copyAxis(this.check(x), y, outer, inner, n, n, total, 0, off);
      off += n;
    });
    return y;
  }

  // ---- embedding ----

  gather(table: Storage, V: number, C: number, idx: Storage, N: number): Storage {
    const y = this.alloc(N * C, 'float32');
    const p = new ParamBlock().u32(N, C, V);
    this.dispatch('gather', 'main', undefined, p, [this.check(table), this.check(idx), y, this.errors], this.grid1d(N * C));
    this.errorsMayBeSet = true;
    return y;
  }

  scatterAdd(src: Storage, N: number, C: number, idx: Storage, V: number): Storage {
    const y = this.alloc(V * C, 'float32');
    const s = this.check(src), ix = this.check(idx);
    const counts = this.alloc(V, 'int32'), offsets = this.alloc(V + 1, 'int32'), list = this.alloc(N, 'int32');
    this.clear(counts.buffer);
    const p = new ParamBlock().u32(N, C, V);
    // bindings: 1 src, 2 idx, 3 out, 4 counts, 5 offsets, 6 list, 7 errors (see scatter_add.wgsl)
    this.dispatch('scatter_add', 'count', undefined, p, [null, ix, null, counts, null, null, this.errors], this.grid1d(N));
    this.dispatch('scatter_add', 'scan', undefined, p, [null, null, null, counts, offsets, null, null], [1, 1, 1]);
    this.dispatch('scatter_add', 'place', undefined, p, [null, ix, null, null, offsets, list, null], this.grid1d(N));
    if (V * C > 0) this.dispatch('scatter_add', 'accumulate', undefined, p, [s, null, y, null, offsets, list, null], this.grid1d(V * C));
    this.errorsMayBeSet = true;
    // back to the pool: commands recorded later run after these, so reuse is safe
    this.free(counts);
    this.free(offsets);
    this.free(list);
    return y;
  }
}

function checkRank(op: string, shape: number[]): void {
  if (shape.length > MAX_RANK) throw new Error(`webgpu ${op}: rank ${shape.length} is above the kernels' ${MAX_RANK}; reshape first`);
}

/** Strides, in whole matrices, of an operand's batch dims as broadcast to `batch` (0 = shared). */
function batchStrides(own: number[], batch: number[]): number[] {
  const padded = [...new Array(batch.length - own.length).fill(1), ...own];
  return broadcastStrides(padded, batch);
}
