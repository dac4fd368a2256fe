// The WebGPU backend's primitive ops: each Backend method is one dispatch (or a few) of a
// kernel in kernels/ (elementwise with broadcasting through strides, reductions, the tiled
// matmul, layout copies, embedding gather and a deterministic scatter-add). An operand above
// the binding limit makes the op run on bands of it (webgpu-split.ts says how); below the
// limit every op is one dispatch as before, through the same code (one band).
import {
  type BinaryOp, type MatmulParams, type ReduceOp, type Storage, type UnaryOp, broadcastStrides, sizeOf, stridesOf,
} from './backend.ts';
import { type GpuStorage, ParamBlock } from './webgpu-dispatch.ts';
import { type View, WebGPUSplit } from './webgpu-split.ts';

const UNARY_CODES: Record<UnaryOp, number> = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, tanh: 5, sigmoid: 6, relu: 7, powScalar: 8, mulScalar: 9, addScalar: 10,
};
const BINARY_CODES: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3, lt: 4, gt: 5, eq: 6 };

const MAX_RANK = 8; // dims the broadcast / permute kernels index (two vec4<u32>)

function pad8(xs: number[]): number[] {
  return [...xs, ...new Array(Math.max(0, MAX_RANK - xs.length)).fill(0)];
}

export class WebGPUOps extends WebGPUSplit {
  /** Matmul may use 16-byte loads where the layout allows (tests switch it off to compare). */
  vectorLoads = true;

  // ---- elementwise ----

  unary(op: UnaryOp, x: Storage, param: number): Storage {
    const xs = this.check(x);
    const y = this.alloc(xs.length, 'float32');
    for (const [i0, i1] of this.bands(xs.length, [1, 1], 'unary')) {
      const p = new ParamBlock().u32(i1 - i0).f32(param);
      this.dispatchViews('unary', 'main', { OP: UNARY_CODES[op] }, p, [this.in(xs, i0, i1 - i0), this.out(y, i0, i1 - i0)], this.grid1d(i1 - i0));
    }
    return y;
  }

  binary(op: BinaryOp, a: Storage, aShape: number[], b: Storage, bShape: number[], outShape: number[]): Storage {
    const n = sizeOf(outShape);
    const y = this.alloc(n, 'float32');
    checkRank('binary', outShape);
    const [as, bs] = [this.check(a), this.check(b)];
    const OP = { OP: BINARY_CODES[op] };
    const scalarB = sizeOf(aShape) === n && sizeOf(bShape) === 1;
    if (scalarB || (sizeOf(aShape) === n && sizeOf(bShape) === n)) {
      // the two common cases, flat: same shapes (mode 1), or b a single number (mode 2)
      for (const [i0, i1] of this.bands(n, [1, scalarB ? 0 : 1, 1], 'binary')) {
        const p = new ParamBlock().u32(i1 - i0, 1, scalarB ? 2 : 1, 0);
        const bv = scalarB ? bs : this.in(bs, i0, i1 - i0);
        this.dispatchViews('binary', 'main', OP, p, [this.in(as, i0, i1 - i0), bv, this.out(y, i0, i1 - i0)], this.grid1d(i1 - i0));
      }
      return y;
    }
    this.broadcastBlocks('binary', outShape, [{ s: as, shape: aShape }, { s: bs, shape: bShape }], y, (os, [sa, sb], [va, vb], vy) => {
      const p = new ParamBlock().u32(sizeOf(os), os.length, 0, 0)
        .vec(pad8(os), 8).vec(pad8(broadcastStrides(sa, os)), 8).vec(pad8(broadcastStrides(sb, os)), 8);
      this.dispatchViews('binary', 'main', OP, p, [va, vb, vy], this.grid1d(sizeOf(os)));
    });
    return y;
  }

  where(c: Storage, cShape: number[], a: Storage, aShape: number[], b: Storage, bShape: number[], outShape: number[]): Storage {
    const n = sizeOf(outShape);
    const y = this.alloc(n, 'float32');
    checkRank('where', outShape);
    const ins = [{ s: this.check(c), shape: cShape }, { s: this.check(a), shape: aShape }, { s: this.check(b), shape: bShape }];
    this.broadcastBlocks('where', outShape, ins, y, (os, [sc, sa, sb], [vc, va, vb], vy) => {
      const p = new ParamBlock().u32(sizeOf(os), os.length, 0, 0).vec(pad8(os), 8)
        .vec(pad8(broadcastStrides(sc, os)), 8).vec(pad8(broadcastStrides(sa, os)), 8).vec(pad8(broadcastStrides(sb, os)), 8);
      this.dispatchViews('where', 'main', undefined, p, [vc, va, vb, vy], this.grid1d(sizeOf(os)));
    });
    return y;
  }

  expand(x: Storage, xShape: number[], outShape: number[]): Storage {
    const n = sizeOf(outShape);
    const y = this.alloc(n, 'float32');
    checkRank('expand', outShape);
    this.broadcastBlocks('expand', outShape, [{ s: this.check(x), shape: xShape }], y, (os, [sx], [vx], vy) => {
      const p = new ParamBlock().u32(sizeOf(os), os.length, 0, 0).vec(pad8(os), 8).vec(pad8(broadcastStrides(sx, os)), 8);
      this.dispatchViews('expand', 'main', undefined, p, [vx, vy], this.grid1d(sizeOf(os)));
    });
    return y;
  }

  /**
   * Split a broadcasting op into blocks that fit: `fn` gets each block's output shape, its
   * inputs' shapes (same rank) and views. Bands along dim 0 where a band fits (an input
   * broadcast along dim 0 is bound whole); otherwise one dim-0 index at a time, recursing on
   * the remaining dims.
   */
  private broadcastBlocks(
    op: string, outShape: number[], ins: { s: GpuStorage; shape: number[] }[], y: GpuStorage,
    fn: (os: number[], shapes: number[][], views: View[], vy: View) => void,
  ): void {
    const rec = (os: number[], yOff: number, xs: { s: GpuStorage; shape: number[]; off: number }[]): void => {
      const n = sizeOf(os);
      if (n === 0) return;
      if (this.fits(n) && xs.every((x) => this.fits(sizeOf(x.shape)))) {
        fn(os, xs.map((x) => x.shape), xs.map((x) => this.in(x.s, x.off, sizeOf(x.shape))), this.out(y, yOff, n));
        return;
      }
      const rowOut = sizeOf(os.slice(1));
      // an input's elements per dim-0 index, or 0 where it is broadcast along dim 0
      const rows = xs.map((x) => (x.shape[0] === os[0] ? sizeOf(x.shape.slice(1)) : 0));
      const bcastFit = xs.every((x, i) => rows[i] > 0 || this.fits(sizeOf(x.shape)));
      if (bcastFit && this.fits(Math.max(rowOut, ...rows))) {
        for (const [r0, r1] of this.bands(os[0], [rowOut, ...rows], op)) {
          const sub = [r1 - r0, ...os.slice(1)];
          const shapes = xs.map((x, i) => (rows[i] ? [r1 - r0, ...x.shape.slice(1)] : x.shape));
          const views = xs.map((x, i) => this.in(x.s, x.off + r0 * rows[i], sizeOf(shapes[i])));
          fn(sub, shapes, views, this.out(y, yOff + r0 * rowOut, sizeOf(sub)));
        }
        return;
      }
      if (os.length <= 1) throw this.cannotSplit(op, 'an input', Math.max(...xs.map((x) => sizeOf(x.shape))));
      for (let i = 0; i < os[0]; i++) {
        rec(os.slice(1), yOff + i * rowOut, xs.map((x, k) => ({ s: x.s, shape: x.shape.slice(1), off: x.off + i * rows[k] })));
      }
    };
    rec(outShape, 0, ins.map((x) => ({ ...x, off: 0 })));
  }

  // ---- reductions ----

  reduce(op: ReduceOp, x: Storage, shape: number[], axis: number): Storage {
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const y = this.alloc(outer * inner, 'float32');
    this.reduceInto(op === 'sum' ? 0 : 1, this.check(x), 0, outer, n, inner, y, 0);
    return y;
  }

  /** y[yOff..] = the reduction of x[xOff..] viewed as (outer, n, inner) over n. */
  private reduceInto(OP: number, x: GpuStorage, xOff: number, outer: number, n: number, inner: number, y: GpuStorage, yOff: number): void {
    const run = (vx: View, vy: View, o: number, k: number) => {
      const p = new ParamBlock().u32(o, k, inner);
      if (inner === 1) this.dispatchViews('reduce', 'reduce_rows', { OP }, p, [vx, vy], this.grid1d(o, 1));
      else this.dispatchViews('reduce', 'reduce_cols', { OP }, p, [vx, vy], this.grid1d(o * Math.ceil(inner / 16), 1));
    };
    if (this.fits(n * inner)) {
      // bands of whole (n, inner) slabs
      for (const [o0, o1] of this.bands(outer, [n * inner, inner], 'reduce')) {
        run(this.in(x, xOff + o0 * n * inner, (o1 - o0) * n * inner), this.out(y, yOff + o0 * inner, (o1 - o0) * inner), o1 - o0, n);
      }
      return;
    }
    // one slab is too big: reduce bands of the axis into partial results (J, inner), then
    // reduce those (sum of sums, max of maxes); at least two rows per band, so J < n
    if (!this.fits(2 * inner)) throw this.cannotSplit('reduce', 'a row', 2 * inner);
    const kb = Math.floor(this.maxElems / inner), J = Math.ceil(n / kb);
    for (let o = 0; o < outer; o++) {
      const part = this.alloc(J * inner, 'float32');
      for (let j = 0; j < J; j++) {
        const k0 = j * kb, k1 = Math.min(n, k0 + kb);
        run(this.in(x, xOff + (o * n + k0) * inner, (k1 - k0) * inner), this.out(part, j * inner, inner), 1, k1 - k0);
      }
      this.reduceInto(OP, part, 0, 1, J, inner, y, yOff + o * inner);
      this.free(part);
    }
  }

  // ---- matmul ----

  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    const { M, K, N } = p;
    const nb = sizeOf(p.batch);
    const y = this.alloc(nb * M * N, 'float32', `the matmul output [${[...p.batch, M, N].join(', ')}]`);
    if (p.batch.length > 4) throw new Error(`webgpu matmul: at most 4 batch dims, got [${p.batch}]`);
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (nb > maxDim) throw new Error(`webgpu matmul: ${nb} matrices in one batch; at most ${maxDim}`);
    if (K === 0) {
      this.clear(y.buffer); // an empty sum: zeros
      return y;
    }
    const [as, bs] = [this.check(a), this.check(b)];
    const sa = batchStrides(p.batchA, p.batch), sb = batchStrides(p.batchB, p.batch);
    if (!this.big(as) && !this.big(bs) && !this.big(y)) {
      this.matmulKernel(as, bs, y, M, K, N, p.transA, p.transB, p.batch, sa, sb, nb);
      return y;
    }
    // too big for one dispatch: matrix by matrix, each in blocks (matmulBlocks)
    for (let z = 0; z < nb; z++) {
      let rem = z, aMat = 0, bMat = 0;
      for (let d = p.batch.length - 1; d >= 0; d--) {
        const c = rem % p.batch[d];
        rem = Math.floor(rem / p.batch[d]);
        aMat += c * sa[d];
        bMat += c * sb[d];
      }
      this.matmulBlocks(as, aMat * M * K, bs, bMat * K * N, y, z * M * N, M, K, N, p.transA, p.transB);
    }
    return y;
  }

  /** One dispatch of matmul.wgsl (a, b, y: storages, or views of single matrices). */
  private matmulKernel(
    a: GpuStorage | View, b: GpuStorage | View, y: GpuStorage | View, M: number, K: number, N: number, transA: boolean, transB: boolean,
    batch: number[] = [], sa: number[] = [], sb: number[] = [], nb = 1,
  ): void {
    const pad4 = (xs: number[]) => [...xs, 0, 0, 0, 0].slice(0, 4);
    const ps = new ParamBlock().u32(M, N, K, batch.length).vec(pad4(batch), 4).vec(pad4(sa), 4).vec(pad4(sb), 4);
    // vec4 loads when an operand's contiguous dim is a multiple of 4 (then every row, and
    // every matrix of the batch, starts on a 16-byte boundary)
    const vecA = (transA ? M : K) % 4 === 0, vecB = (transB ? K : N) % 4 === 0;
    const constants = { TRANS_A: +transA, TRANS_B: +transB, VEC_A: +(vecA && this.vectorLoads), VEC_B: +(vecB && this.vectorLoads) };
    this.dispatchViews('matmul', 'main', constants, ps, [a, b, y, a, b], [Math.ceil(N / 64), Math.ceil(M / 64), nb]);
  }

  /**
   * One matrix product y = op(a) op(b) (a at aOff, b at bOff, y at yOff) in blocks of
   * (mb, kb, nb) whose operands each fit one binding: block sizes start whole and the
   * largest of the three blocks is halved along its larger dim until all fit. A block that
   * is whole stored rows is a view; one that is part of each row is gathered into scratch
   * with one copy per row. Partial products over K are added; the result block is copied
   * into y (one copy per row when it is not whole rows).
   */
  private matmulBlocks(
    as: GpuStorage, aOff: number, bs: GpuStorage, bOff: number, y: GpuStorage, yOff: number,
    M: number, K: number, N: number, transA: boolean, transB: boolean,
  ): void {
    if (this.fits(M * K) && this.fits(K * N) && this.fits(M * N)) {
      this.matmulKernel(this.in(as, aOff, M * K), this.in(bs, bOff, K * N), this.out(y, yOff, M * N), M, K, N, transA, transB);
      return;
    }
    const dims = { m: M, n: N, k: K };
    for (;;) {
      const blocks: [number, 'm' | 'n' | 'k', 'm' | 'n' | 'k'][] = [[dims.m * dims.k, 'm', 'k'], [dims.k * dims.n, 'k', 'n'], [dims.m * dims.n, 'm', 'n']];
      const [size, d1, d2] = blocks.reduce((x, z) => (z[0] > x[0] ? z : x));
      if (this.fits(size)) break;
      const d = dims[d1] >= dims[d2] ? d1 : d2;
      dims[d] = Math.ceil(dims[d] / 2);
    }
    // a block of a stored (R, C) matrix: rows [r0, r1), columns [c0, c1)
    const block = (s: GpuStorage, off: number, C: number, r0: number, r1: number, c0: number, c1: number): { v: GpuStorage | View; tmp?: GpuStorage } => {
      if (c0 === 0 && c1 === C) return { v: this.in(s, off + r0 * C, (r1 - r0) * C) };
      const t = this.alloc((r1 - r0) * (c1 - c0), 'float32');
      for (let r = r0; r < r1; r++) this.copy(s, off + r * C + c0, t, (r - r0) * (c1 - c0), c1 - c0);
      return { v: t, tmp: t };
    };
    const range = (n: number, b: number) => Array.from({ length: Math.ceil(n / b) }, (_, i) => [i * b, Math.min(n, (i + 1) * b)]);
    for (const [m0, m1] of range(M, dims.m)) {
      for (const [n0, n1] of range(N, dims.n)) {
        const mb = m1 - m0, nb = n1 - n0;
        let acc: GpuStorage | null = null;
        for (const [k0, k1] of range(K, dims.k)) {
          const A = transA ? block(as, aOff, M, k0, k1, m0, m1) : block(as, aOff, K, m0, m1, k0, k1);
          const B = transB ? block(bs, bOff, K, n0, n1, k0, k1) : block(bs, bOff, N, k0, k1, n0, n1);
          const part = this.alloc(mb * nb, 'float32');
          this.matmulKernel(A.v, B.v, part, mb, k1 - k0, nb, transA, transB);
          for (const t of [A.tmp, B.tmp]) if (t) this.free(t);
          if (acc) {
            const sum = this.binary('add', acc, [mb * nb], part, [mb * nb], [mb * nb]) as GpuStorage;
            this.free(acc);
            this.free(part);
            acc = sum;
          } else acc = part;
        }
        if (nb === N) this.copy(acc!, 0, y, yOff + m0 * N, mb * N);
        else for (let r = 0; r < mb; r++) this.copy(acc!, r * nb, y, yOff + (m0 + r) * N + n0, nb);
        this.free(acc!);
      }
    }
  }

  // ---- layout ----

  permute(x: Storage, shape: number[], perm: number[]): Storage {
    const n = sizeOf(shape);
    const y = this.alloc(n, 'float32');
    checkRank('permute', shape);
    const xs = this.check(x);
    if (!this.big(xs) && !this.big(y)) this.permuteKernel(xs, shape, perm, y);
    else this.permuteSplit(xs, shape, perm, y);
    return y;
  }

  private permuteKernel(x: GpuStorage | View, shape: number[], perm: number[], y: GpuStorage | View): void {
    const n = sizeOf(shape);
    const inStr = stridesOf(shape);
    const p = new ParamBlock().u32(n, shape.length, 0, 0).vec(pad8(perm.map((d) => shape[d])), 8).vec(pad8(perm.map((d) => inStr[d])), 8);
    this.dispatchViews('permute', 'main', undefined, p, [x, y], this.grid1d(n));
  }

  /**
   * A permute too big for one dispatch: bands of the input's first dim (contiguous) are
   * permuted one by one, and each result is written into its place in y along the axis
   * that first dim moved to (writeSlice, itself split). Size-1 dims are dropped first; when
   * not even one index of the first dim fits, it goes one index at a time, recursing.
   */
  private permuteSplit(xs: GpuStorage, shape0: number[], perm0: number[], y: GpuStorage): void {
    const keep = shape0.map((_, d) => d).filter((d) => shape0[d] !== 1);
    const shape = keep.map((d) => shape0[d]);
    const perm = perm0.filter((d) => shape0[d] !== 1).map((d) => keep.indexOf(d));
    if (shape.length <= 1 || perm.every((d, i) => d === i)) {
      this.copy(xs, 0, y, 0, xs.length); // nothing moves
      return;
    }
    const outShape = perm.map((d) => shape[d]);
    const q = perm.indexOf(0); // where the input's first dim goes
    const row = sizeOf(shape.slice(1));
    if (this.fits(row)) {
      for (const [r0, r1] of this.bands(shape[0], [row], 'permute')) {
        const bandShape = [r1 - r0, ...shape.slice(1)];
        const bandOut = perm.map((d) => bandShape[d]);
        const vx = this.in(xs, r0 * row, (r1 - r0) * row);
        if (q === 0) this.permuteKernel(vx, bandShape, perm, this.out(y, r0 * row, (r1 - r0) * row));
        else {
          const t = this.alloc(sizeOf(bandShape), 'float32');
          this.permuteKernel(vx, bandShape, perm, t);
          this.writeSlice(y, outShape, t, bandOut, q, r0);
          this.free(t);
        }
      }
      return;
    }
    const sub = perm.filter((d) => d !== 0).map((d) => d - 1);
    const slab = this.alloc(row, 'float32');
    for (let i = 0; i < shape[0]; i++) {
      this.copy(xs, i * row, slab, 0, row);
      const t = this.permute(slab, shape.slice(1), sub) as GpuStorage;
      this.writeSlice(y, outShape, t, outShape.map((s, d) => (d === q ? 1 : s)), q, i);
      this.free(t);
    }
    this.free(slab);
  }

  /**
   * Copy `count` positions along an axis, from x[srcOff..] to y[dstOff..] (slice.wgsl). Too
   * big for one dispatch: bands of whole outer rows when a row of x and of y fits (y's band
   * read and written back when it is copied), otherwise one copyBufferToBuffer per outer row
   * (each run of count x inner values is contiguous in both).
   */
  private copyAxis(x: GpuStorage, y: GpuStorage, outer: number, inner: number, count: number, xLen: number, yLen: number, srcOff: number, dstOff: number): void {
    const run = (vx: GpuStorage | View, vy: GpuStorage | View, o: number) => {
      const p = new ParamBlock().u32(o, inner, count, xLen, yLen, srcOff, dstOff);
      this.dispatchViews('slice', 'main', undefined, p, [vx, vy], this.grid1d(o * count * inner));
    };
    if (!this.big(x) && !this.big(y)) return run(x, y, outer);
    if (outer > 64 && this.fits(xLen * inner) && this.fits(yLen * inner)) {
      const whole = count === yLen; // the band of y is all written: no need to read it first
      for (const [o0, o1] of this.bands(outer, [xLen * inner, yLen * inner], 'copy')) {
        const vy = whole ? this.out(y, o0 * yLen * inner, (o1 - o0) * yLen * inner) : this.inout(y, o0 * yLen * inner, (o1 - o0) * yLen * inner);
        run(this.in(x, o0 * xLen * inner, (o1 - o0) * xLen * inner), vy, o1 - o0);
      }
      return;
    }
    for (let o = 0; o < outer; o++) this.copy(x, (o * xLen + srcOff) * inner, y, (o * yLen + dstOff) * inner, count * inner);
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
    const y = this.alloc(N * C, 'float32', `the gathered rows [${N}, ${C}]`);
    const ts = this.check(table), ix = this.check(idx);
    // bands of positions (idx, out) and, when the table is too big, bands of its rows: each
    // dispatch writes only the positions whose index falls in its table band
    const tableBands = this.big(ts) ? this.bands(V, [C], 'gather', 'one table row') : [[0, V]];
    for (const [n0, n1] of this.bands(N, [1, C], 'gather')) {
      const vy = tableBands.length > 1 ? this.inout(y, n0 * C, (n1 - n0) * C) : this.out(y, n0 * C, (n1 - n0) * C);
      for (const [v0, v1] of tableBands) {
        const p = new ParamBlock().u32(n1 - n0, C, V, v0, v1, n0);
        const bufs = [this.in(ts, v0 * C, (v1 - v0) * C), this.in(ix, n0, n1 - n0), vy, this.errors];
        this.dispatchViews('gather', 'main', undefined, p, bufs, this.grid1d((n1 - n0) * C));
      }
    }
    this.errorsMayBeSet = true;
    return y;
  }

  scatterAdd(src: Storage, N: number, C: number, idx: Storage, V: number): Storage {
    const y = this.alloc(V * C, 'float32', `the scatter-add output [${V}, ${C}]`);
    const s = this.check(src), ix = this.check(idx);
    if (!this.fits(V + 1) || !this.fits(N)) throw this.cannotSplit('scatterAdd', 'the index list', Math.max(V + 1, N));
    const counts = this.alloc(V, 'int32'), offsets = this.alloc(V + 1, 'int32'), list = this.alloc(N, 'int32');
    this.clear(counts.buffer);
    const p = new ParamBlock().u32(N, C, V, 0, V, 0, N, 0);
    // bindings: 1 src, 2 idx, 3 out, 4 counts, 5 offsets, 6 list, 7 errors (see scatter_add.wgsl)
    this.dispatch('scatter_add', 'count', undefined, p, [null, ix, null, counts, null, null, this.errors], this.grid1d(N));
    this.dispatch('scatter_add', 'scan', undefined, p, [null, null, null, counts, offsets, null, null], [1, 1, 1]);
    this.dispatch('scatter_add', 'place', undefined, p, [null, ix, null, null, offsets, list, null], this.grid1d(N));
    // accumulate: bands of output rows; when src is too big, bands of its rows too, each
    // adding the rows of its band (in increasing i, so the sum's order stays the CPU's)
    const srcBands = this.big(s) ? this.bands(N, [C], 'scatterAdd', 'one row') : [[0, N]];
    for (const [v0, v1] of this.bands(V, [C], 'scatterAdd', 'one row')) {
      const vy = srcBands.length > 1 ? this.inout(y, v0 * C, (v1 - v0) * C) : this.out(y, v0 * C, (v1 - v0) * C);
      srcBands.forEach(([n0, n1], j) => {
        const pa = new ParamBlock().u32(N, C, V, v0, v1, n0, n1, j > 0 ? 1 : 0);
        this.dispatchViews('scatter_add', 'accumulate', undefined, pa, [this.in(s, n0 * C, (n1 - n0) * C), null, vy, null, offsets, list, null], this.grid1d((v1 - v0) * C));
      });
    }
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
