// The wasm backend's memory: ONE shared WebAssembly.Memory holding every tensor, and a small
// allocator over it (src/backend/wasm.ts; docs/wasm.md draws the layout).
//
// Why one memory. WebAssembly code reads only its own linear memory, so a kernel can work on
// a tensor without copying it only if the tensor already lives there. Every storage of the
// wasm backend is therefore a typed-array VIEW (Float32Array or Int32Array) over this memory,
// at a byte offset the allocator chose. Kernels get that offset as a pointer; JS code (the
// CPU backend's loops, reused for ops without a kernel) reads the same view like any array.
//
// Why shared. Growing a plain WebAssembly.Memory DETACHES its ArrayBuffer: every view made
// before the grow becomes empty, and every live tensor would have to be re-viewed. Growing a
// shared memory does not detach anything: old views keep pointing at the same bytes (they
// just cannot see the new pages), and only NEW views need the new, larger buffer (we re-read
// `memory.buffer` after each grow). Shared memory is also what lets worker threads run
// kernels on the same tensors. The price: in a browser it needs a cross-origin-isolated page
// (COOP/COEP headers); without one, createWasmBackend fails and the page falls back to `cpu`.
//
// The allocator. Sizes are rounded up to a size class (multiples of 64 bytes below 4 KiB;
// above, four classes per power of two, so at most 25% is wasted). Each class has a free list
// of offsets; a request takes a freed block of its class or, if there is none, bumps the top
// of the heap (growing the memory when the top passes its end). Blocks are never split or
// merged: a training step allocates the same sizes every step, so after the first step every
// request is served from a free list and the heap stops growing (tested: live bytes flat).

import { UserError } from '../util/errors.ts';

/** Page size of WebAssembly memory, in bytes. */
const PAGE = 65536;
/** The memory's maximum, in pages (2 GiB); must equal the .wat files' imports. */
export const MAX_PAGES = 32768;

/** The rounded size (bytes) of the block that holds `bytes`. */
export function sizeClass(bytes: number): number {
  if (bytes <= 4096) return Math.max(64, Math.ceil(bytes / 64) * 64);
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2); // a quarter of the power of two below
  return Math.ceil(bytes / step) * step;
}

export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  private buffer: SharedArrayBuffer;
  /** The first byte never handed out. Offset 0..63 is left unused so no storage sits at 0. */
  private top = 64;
  private readonly free = new Map<number, number[]>();
  private live = 0;

  constructor(initialPages = 16) {
    this.memory = new WebAssembly.Memory({ initial: initialPages, maximum: MAX_PAGES, shared: true });
    this.buffer = this.memory.buffer as unknown as SharedArrayBuffer;
  }

  /** A block of at least `bytes` bytes; returns its byte offset. Contents are NOT cleared. */
  alloc(bytes: number): number {
    const cls = sizeClass(bytes);
    const reuse = this.free.get(cls)?.pop();
    if (reuse !== undefined) {
      this.live += bytes;
      return reuse;
    }
    const ptr = this.top;
    // grow first: a request that does not fit throws and leaves the heap as it was
    if (ptr + cls > this.buffer.byteLength) this.grow(ptr + cls);
    this.top = ptr + cls;
    this.live += bytes;
    return ptr;
  }

  /** Give back the block at `ptr` that was allocated for `bytes` bytes. */
  release(ptr: number, bytes: number): void {
    const cls = sizeClass(bytes);
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(ptr);
    this.live -= bytes;
  }

  /** Bytes requested by live blocks (not counting rounding or the free lists). */
  bytesInUse(): number {
    return this.live;
  }

  /** Bytes the heap has ever handed out (its high-water mark, rounding included). */
  bytesReserved(): number {
    return this.top;
  }

  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.buffer, ptr, n);
  }
  i32(ptr: number, n: number): Int32Array {
    return new Int32Array(this.buffer, ptr, n);
  }

  private grow(need: number): void {
    const pages = Math.ceil((need - this.buffer.byteLength) / PAGE);
    // grow at least by a quarter, so a growing heap does not grow once per allocation
    const want = Math.max(pages, Math.ceil(this.buffer.byteLength / PAGE / 4));
    const have = this.buffer.byteLength / PAGE;
    const add = Math.min(want, MAX_PAGES - have);
    try {
      if (add < pages) throw new Error('past the maximum');
      this.memory.grow(add);
    } catch (e) {
      // a run too big for the backend is the user's settings, not a bug: one line, no stack trace
      throw new UserError(
        `wasm backend: out of memory: cannot grow the WebAssembly memory to ${(need / 2 ** 20).toFixed(0)} MiB (the maximum is ` +
          `${(MAX_PAGES * PAGE) / 2 ** 30} GiB; ${String(e)}); use smaller batches, sequences or --max-tokens, or --backend cpu`,
      );
    }
    // the old views stay valid (shared memory is never detached); new views use the new buffer
    this.buffer = this.memory.buffer as unknown as SharedArrayBuffer;
  }
}
