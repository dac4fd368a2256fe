// Tensors bigger than one binding. A GPU binds at most maxStorageBufferBindingSize bytes of a
// buffer to one kernel argument (128 MiB on many adapters), while a buffer may be bigger
// (maxBufferSize): a (B·T, V) logits tensor at B = 16, T = 512, V = 6400 is 210 MB. So an op
// whose operand is above the binding limit runs its kernel several times, each time on a
// band of it (a range of rows) that fits:
//
//   - View. A band is a View: elements [off, off + len) of a storage. The kernels are not
//     changed for it: they index from 0, and a view is bound so that element 0 is its start.
//   - Window. When the band's byte offset is a multiple of minStorageBufferOffsetAlignment
//     (256 bytes on most GPUs), it is bound in place: a window of the buffer (GpuWindow).
//   - Scratch. Otherwise it is copied (copyBufferToBuffer, which no binding limit applies to)
//     into a scratch storage that is bound instead, and an output band is copied back after
//     the dispatch. bands() picks band sizes that keep most starts aligned.
//
// What splits how (webgpu-ops.ts, webgpu-fused.ts): row-wise ops (cross-entropy, RMSNorm,
// elementwise, AdamW) into row bands; broadcasting ops along their leading dims; matmul into
// blocks of M, N and K (partial products over K added); a reduction over a long axis into
// partial reductions; the gather / scatter-add table into vocabulary bands; attention into
// bands of KV heads; layout copies with copyBufferToBuffer runs. When not even one row fits
// (a single row of the logits above the limit) the op stops with one line (cannotSplit),
// and a tensor above maxBufferSize is refused when it is allocated (webgpu-buffers.ts).
import { type GpuStorage, type Binding, GpuWindow, type ParamBlock, mib } from './webgpu-dispatch.ts';
import type { KernelName } from './webgpu-device.ts';
import { WebGPUBuffers } from './webgpu-buffers.ts';
import { UserError } from '../util/errors.ts';

/** Elements [off, off + len) of a storage, read (`mode` 'in'), written ('out'), or both ('inout'). */
export interface View {
  readonly s: GpuStorage;
  readonly off: number;
  readonly len: number;
  readonly mode: 'in' | 'out' | 'inout';
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

export class WebGPUSplit extends WebGPUBuffers {
  /** The most bytes one binding (and one scratch storage) may hold: a multiple of 16. */
  get maxBinding(): number {
    return Math.floor(Math.min(this.limits.maxStorageBufferBindingSize, this.limits.maxBufferSize) / 16) * 16;
  }
  /** The same in float32 / int32 elements. */
  get maxElems(): number {
    return this.maxBinding / 4;
  }
  /** Whether `len` elements fit one binding. */
  protected fits(len: number): boolean {
    return len * 4 <= this.maxBinding;
  }
  /** Whether a storage is too big to bind whole. */
  protected big(s: GpuStorage): boolean {
    return s.buffer.size > this.maxBinding;
  }

  protected in(s: GpuStorage, off: number, len: number): View {
    return { s, off, len, mode: 'in' };
  }
  protected out(s: GpuStorage, off: number, len: number): View {
    return { s, off, len, mode: 'out' };
  }
  protected inout(s: GpuStorage, off: number, len: number): View {
    return { s, off, len, mode: 'inout' };
  }

  /** The one-line error for an op that cannot make a band small enough. */
  protected cannotSplit(op: string, what: string, elems: number): UserError {
    const which = this.limits.maxStorageBufferBindingSize <= this.limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
    return new UserError(
      `webgpu ${op}: ${what} of ${elems} values (${mib(elems * 4)}) is larger than this GPU's ${which} (${mib(this.maxBinding)}) ` +
        'and cannot be split further; use a smaller model dimension, vocabulary or sequence length',
    );
  }

  /**
   * Split `rows` rows into bands [r0, r1) such that, for every operand, a band of its rows
   * (`widths[i]` elements per row) fits one binding. One band [0, rows) when everything
   * fits. Band sizes are rounded down to a multiple of the row count that makes every
   * operand's band start aligned (so bound in place, not copied) when that still fits.
   */
  protected bands(rows: number, widths: number[], op: string, what = 'one row'): [number, number][] {
    if (rows === 0) return [];
    const widest = Math.max(1, ...widths);
    if (!this.fits(widest)) throw this.cannotSplit(op, what, widest);
    let b = Math.min(rows, Math.floor(this.maxElems / widest));
    if (b < rows) {
      // rows per aligned start: each operand's row is w * 4 bytes; its band start r0 * w * 4
      // is a multiple of `align` when r0 is a multiple of align / gcd(align, 4 w)
      const align = this.limits.minStorageBufferOffsetAlignment;
      let g = 1;
      for (const w of widths) if (w > 0) { const gi = align / gcd(align, 4 * w); g = (g * gi) / gcd(g, gi); }
      if (b >= g) b = Math.floor(b / g) * g;
    }
    const out: [number, number][] = [];
    for (let r0 = 0; r0 < rows; r0 += b) out.push([r0, Math.min(rows, r0 + b)]);
    return out;
  }

  /** Record a copy of `len` elements (no binding: no limit but the buffers' sizes). */
  protected copy(src: GpuStorage, srcOff: number, dst: GpuStorage, dstOff: number, len: number): void {
    if (len === 0) return;
    const enc = this.commandEncoder();
    this.endPass();
    enc.copyBufferToBuffer(src.buffer, srcOff * 4, dst.buffer, dstOff * 4, len * 4);
    this.pendingBuffers.add(src.buffer);
    this.pendingBuffers.add(dst.buffer);
  }

  /**
   * dispatch() with views among the bindings: each view is bound in place (a whole storage,
   * or an aligned window) or through a scratch copy, copied back after the dispatch when it
   * is written. The same View object given twice is bound once.
   */
  protected dispatchViews(
    kernel: KernelName, entry: string, constants: Record<string, number> | undefined,
    params: ParamBlock, bufs: (Binding | View)[], grid: [number, number, number],
  ): void {
    if (grid[0] * grid[1] * grid[2] === 0) return;
    const scratch: GpuStorage[] = [], back: [GpuStorage, View][] = [];
    const seen = new Map<View, Binding>();
    const bind = (v: View): Binding => {
      const s = this.check(v.s), { off, len } = v;
      if (off === 0 && len === s.length && !this.big(s)) return s;
      if (!this.fits(len)) throw new Error(`webgpu ${kernel}.${entry}: internal: a band of ${len} values does not fit one binding`);
      if ((off * 4) % this.limits.minStorageBufferOffsetAlignment === 0) {
        this.stats.windows++;
        return new GpuWindow(s.buffer, off * 4, Math.max(4, len * 4));
      }
      this.stats.scratch++;
      const t = this.alloc(len, s.dtype);
      scratch.push(t);
      if (v.mode !== 'out') this.copy(s, off, t, 0, len);
      if (v.mode !== 'in') back.push([t, v]);
      return t;
    };
    const resolved = bufs.map((b) => {
      if (!b || !isView(b)) return b;
      let r = seen.get(b);
      if (r === undefined) seen.set(b, (r = bind(b)));
      return r;
    });
    this.dispatch(kernel, entry, constants, params, resolved, grid);
    for (const [t, v] of back) this.copy(t, 0, v.s, v.off, v.len);
    // back to the pool: later commands run after these, so reuse is safe
    for (const t of scratch) this.free(t);
  }
}

function isView(b: Binding | View): b is View {
  return b !== null && typeof b === 'object' && 'mode' in b && 'off' in b;
}
