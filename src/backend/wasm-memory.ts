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
// of the heap. A training step allocates the same sizes every step, so after the first step
// every request is served from a free list and the heap stops growing (tested).
// Generation and RL are different: every decoding step and every batch of replies has new
// lengths, so new classes keep being asked for while blocks of old ones sit free. Before the
// top passes the end of the memory (which would grow it), the heap therefore COALESCES: it
// sorts every free block by address, merges neighbours, hands a free run that reaches the top
// back to the top, and serves requests from the merged runs (first fit, split). Without that,
// an RL run whose live tensors were 5 MB grew the memory past its (then 2 GiB) maximum in 7 steps.
//
// Up to 4 GiB. A wasm32 address is an UNSIGNED 32-bit number, so one memory can hold 2^32
// bytes = 65536 pages (Node 20 grows a shared memory that far). Offsets at or above 2^31 are
// fine for the kernels (loads and stores treat addresses as unsigned) and for JS (offsets are
// plain numbers), but NOT for JS code that stores one in an Int32Array or runs it through
// `| 0` or `>> 2`: that makes it negative. The helper threads' control block is such an
// Int32Array: kernels/cpu/wasm-worker.mjs reads its arguments back with `>>> 0` (unsigned).
// test/wasm-memory-4g.test.ts runs the kernels on tensors that live above 2 GiB.

import { ByteCounter } from './byte-counter.ts';
import { UserError } from '../util/errors.ts';

/** Page size of WebAssembly memory, in bytes. */
const PAGE = 65536;
/**
 * The memory's maximum, in pages (65536 pages = 4 GiB, all a 32-bit address can reach); must
 * equal the maximum in ops.wat's memory import and scripts/build-wasm.ts's SHARED_MEMORY.
 */
export const MAX_PAGES = 65536;

/** The rounded size (bytes) of the block that holds `bytes`. */
export function sizeClass(bytes: number): number {
  if (bytes <= 4096) return Math.max(64, Math.ceil(bytes / 64) * 64);
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2); // a quarter of the power of two below
  return Math.ceil(bytes / step) * step;
}

/** Live/peak bytes (ByteCounter) count the bytes requested by live blocks, not rounding or the free lists. */
export class WasmHeap extends ByteCounter {
  readonly memory: WebAssembly.Memory;
  private buffer: SharedArrayBuffer;
  /** The first byte never handed out. Offset 0..63 is left unused so no storage sits at 0. */
  private top = 64;
  private readonly free = new Map<number, number[]>();
  /** Merged free runs from the last coalesce, by address (served first fit, split). */
  private runs: { ptr: number; size: number }[] = [];

  constructor(initialPages = 16) {
    super();
    this.memory = new WebAssembly.Memory({ initial: initialPages, maximum: MAX_PAGES, shared: true });
    this.buffer = this.memory.buffer as unknown as SharedArrayBuffer;
  }

  /** A block of at least `bytes` bytes; returns its byte offset. Contents are NOT cleared. */
  alloc(bytes: number): number {
    const cls = sizeClass(bytes);
    const ptr = this.free.get(cls)?.pop() ?? this.fromRuns(cls) ?? this.bump(cls);
    this.countAlloc(bytes);
    return ptr;
  }

  /** A new block at the top; coalesces before it would grow the memory, and grows if still needed. */
  private bump(cls: number): number {
    if (this.top + cls > this.buffer.byteLength) {
      this.coalesce();
      const ptr = this.fromRuns(cls);
      if (ptr !== undefined) return ptr;
      // grow before moving the top: a request that does not fit throws and hands out nothing
      if (this.top + cls > this.buffer.byteLength) this.grow(this.top + cls);
    }
    const ptr = this.top;
    this.top += cls;
    return ptr;
  }

  /** The first merged run that holds `cls` bytes, split; undefined if none does. */
  private fromRuns(cls: number): number | undefined {
    const i = this.runs.findIndex((r) => r.size >= cls);
    if (i < 0) return undefined;
    const r = this.runs[i];
    const ptr = r.ptr;
    if (r.size === cls) this.runs.splice(i, 1);
    else {
      r.ptr += cls;
      r.size -= cls;
    }
    return ptr;
  }

  /** Merge every free block (class lists and runs) with its free neighbours. */
  private coalesce(): void {
    const blocks = this.runs;
    for (const [cls, list] of this.free) for (const ptr of list) blocks.push({ ptr, size: cls });
    this.free.clear();
    blocks.sort((a, b) => a.ptr - b.ptr);
    const merged: { ptr: number; size: number }[] = [];
    for (const b of blocks) {
      const last = merged.at(-1);
      if (last && last.ptr + last.size === b.ptr) last.size += b.size;
      else merged.push({ ...b });
    }
    // a free run that ends at the top is unused space: lower the top instead
    const last = merged.at(-1);
    if (last && last.ptr + last.size === this.top) {
      this.top = last.ptr;
      merged.pop();
    }
    this.runs = merged;
  }

  /** Give back the block at `ptr` that was allocated for `bytes` bytes. */
  release(ptr: number, bytes: number): void {
    const cls = sizeClass(bytes);
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(ptr);
    this.countFree(bytes);
  }

  /** The top of the heap: bytes in live and free blocks below it, rounding included. */
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
