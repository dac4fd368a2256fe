// The fast CPU matmul: kernels/cpu/matmul.wat (WebAssembly with 128-bit SIMD) run from JS.
//
// It computes what `matmulKernel` in cpu.ts computes, c (M, N) = a (M, K) · bt (N, K)ᵀ with
// both operands packed row-major and k contiguous, several times faster (see
// bench/matmul.bench.ts; the .wat explains why). The JS kernel stays the reference: the test
// (test/wasm-matmul.test.ts) checks this one against a float64 scalar loop.
//
// Use:
//   if (await initWasmMatmul()) ...          // once, at start-up; false: no WASM SIMD here
//   wasmMatmul(a, aOff, bt, btOff, M, K, N, c, cOff);   // synchronous, like matmulKernel
//
// Memory. WebAssembly code can only read its own linear memory, so each call copies A and Bt
// into it, runs the kernel, and copies C out: O(MK + NK + MN) copying against O(MKN)
// arithmetic. The memory is allocated once and grown on demand (never shrunk), then reused.
// Growing detaches the old ArrayBuffer, so the Float32Array view over it is remade.
// Measured, the copies run at the equivalent of ~1000 GFLOP/s at the (1024, 128, 384) shape
// (2-3% of a call) and ~300 at (128, 32, 128) (~7%), so an API that lets callers pack straight
// into WASM memory was not worth its complexity.
//
// Threads (optional, Node only, off by default): `initWasmMatmul({ threads: 2 })` loads
// matmul-shared.wasm (the same kernel over a shared WebAssembly.Memory) here and in one
// worker_thread (kernels/cpu/wasm-worker.mjs, the wasm backend's helper); a large enough
// matmul is then split into bands of rows of A and C, one per thread, with the main thread
// computing its own band and then waiting until the worker is done (the protocol is in
// wasm-threads.ts). Small matmuls stay single-threaded: waking a thread costs more than they
// take. This path serves the `cpu` reference backend only; training on CPU uses the wasm
// backend (wasm.ts), whose threads are the default.
//
// Loading the binary differs by platform (as for the WGSL kernels in kernels.ts):
//   - Node: read kernels/cpu/matmul.wasm from disk, found relative to this module's URL.
//   - Browser: there is no disk; the page hands the bytes over before calling init:
//         import wasmUrl from '../../kernels/cpu/matmul.wasm?url';      // Vite
//         setWasmMatmulBytes(new Uint8Array(await (await fetch(wasmUrl)).arrayBuffer()));
// This module imports nothing from Node at the top level, so a browser bundle can include it.

import { isNode } from './platform.ts';
import { type Helper, HelperPool, startHelper } from './wasm-threads.ts';

/** The kernel's exports (see the .wat). Pointers are byte offsets into `memory`. */
interface MatmulExports {
  memory: WebAssembly.Memory;
  matmul(a: number, bt: number, c: number, M: number, K: number, N: number): void;
}

let kernel: MatmulExports | null = null;
/** Helper threads of the threaded path (wasm-threads.ts). */
let pool = new HelperPool([]);
const K_MATMUL = 0; // kernel number in kernels/cpu/wasm-worker.mjs
/**
 * Matmuls smaller than this many multiply-adds (M·K·N) stay on one thread: 2²⁰ takes ~150 µs
 * on one thread here, so the tens of microseconds of waking a worker and waiting for it would
 * eat most of the gain below it. This is an estimate, NOT a tuned value: on the 2-core
 * development machine, busy with other jobs (load average ~6), the two-thread path showed no
 * reliable speed-up at any size, so it stays off by default. Re-measure on an idle machine
 * (bench/matmul.bench.ts, column wasm2t) before turning it on.
 */
const THREADS_MIN_MACS = 1 << 20;
let view = new Float32Array(0); // over kernel.memory.buffer; remade after every grow
let injectedBytes: Uint8Array<ArrayBuffer> | null = null;
let initPromise: Promise<boolean> | null = null;

/** Hand over the bytes of matmul.wasm (browser), instead of reading them from disk. */
export function setWasmMatmulBytes(bytes: Uint8Array | ArrayBuffer): void {
  injectedBytes = new Uint8Array(bytes); // a copy, so the caller may reuse its buffer
}

export interface WasmMatmulInitOptions {
  /**
   * How to check that this engine can run the module; default `WebAssembly.validate`, which
   * rejects the module when the engine lacks SIMD (every v128 instruction is then unknown).
   * Tests pass `() => false` to simulate such an engine.
   */
  validate?: (bytes: Uint8Array<ArrayBuffer>) => boolean;
  /**
   * Threads to split large matmuls over (default 1: no workers). Node only; > 1 starts
   * threads - 1 worker_threads that sleep between calls. Experimental: see the bench.
   */
  threads?: number;
}

/**
 * Load and compile the kernel. Resolves true when `wasmMatmul` may be called, false when this
 * engine has no WebAssembly or no WASM SIMD (callers then keep the JS kernel). Throws when
 * the .wasm file cannot be found (a broken checkout, or a browser page that did not call
 * setWasmMatmulBytes). The answer is cached (resetWasmMatmul forgets it); options apply to
 * the first call only.
 */
export function initWasmMatmul(opts: WasmMatmulInitOptions = {}): Promise<boolean> {
  initPromise ??= load(opts).catch((e: unknown) => {
    initPromise = null; // let a later call retry (e.g. after setWasmMatmulBytes)
    throw e;
  });
  return initPromise;
}

/** Forget the loaded kernel and stop its workers (tests use this to init again with other options). */
export function resetWasmMatmul(): void {
  pool.destroy();
  kernel = null;
  view = new Float32Array(0);
  initPromise = null;
}

/** Whether initWasmMatmul has succeeded, so wasmMatmul may be called. */
export function wasmMatmulReady(): boolean {
  return kernel !== null;
}

async function load(opts: WasmMatmulInitOptions): Promise<boolean> {
  if (typeof WebAssembly === 'undefined') return false;
  const threads = opts.threads ?? 1;
  if (!(Number.isInteger(threads) && threads >= 1)) throw new RangeError(`initWasmMatmul: threads must be a positive integer, got ${threads}`);
  if (threads > 1 && !isNode()) throw new Error('initWasmMatmul: threads > 1 needs Node worker_threads');
  const bytes = threads > 1 ? await readKernelFile('matmul-shared.wasm') : (injectedBytes ?? (await readKernelFile('matmul.wasm')));
  const validate = opts.validate ?? ((b: Uint8Array<ArrayBuffer>) => WebAssembly.validate(b));
  if (!validate(bytes)) return false;
  if (threads === 1) {
    const { instance } = await WebAssembly.instantiate(bytes);
    kernel = instance.exports as unknown as MatmulExports;
  } else {
    // The maximum must match the .wasm's import (scripts/build-wasm.ts, SHARED_MEMORY).
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
    const { instance } = await WebAssembly.instantiate(bytes, { env: { memory } });
    kernel = { memory, matmul: (instance.exports as unknown as MatmulExports).matmul };
    const path = await findKernelFile('wasm-worker.mjs');
    pool = new HelperPool(await Promise.all(Array.from({ length: threads - 1 }, () => startHelper(path, { matmulBytes: bytes, memory }))));
  }
  view = new Float32Array(kernel.memory.buffer);
  return true;
}

/**
 * Start a kernel worker (kernels/cpu/<file>) with a shared control block and wait until it
 * is ready. Kept for callers of the old name; see startHelper in wasm-threads.ts.
 */
export async function startKernelWorker(file: string, data: Record<string, unknown>): Promise<Helper> {
  return startHelper(await findKernelFile(file), data);
}

/**
 * c[cOff + i*N + j] = Σ_k a[aOff + i*K + k] · bt[btOff + j*K + k] for i < M, j < N: the
 * same contract as matmulKernel in cpu.ts (a is (M, K), bt is (N, K), c is (M, N), all
 * row-major). float32 only. Call initWasmMatmul first.
 */
export function wasmMatmul(
  a: Float32Array, aOff: number, bt: Float32Array, btOff: number,
  M: number, K: number, N: number,
  c: Float32Array, cOff: number,
): void {
  if (!kernel) throw new Error('wasmMatmul: call (and await) initWasmMatmul() first; it returned false or was not called');
  if (M === 0 || N === 0) return;
  // Layout in WASM memory, in float32 units: [A: M*K][Bt: N*K][C: M*N], each region starting
  // on a 16-byte boundary (not required by v128.load, but keeps whole rows aligned when K % 4 == 0).
  const pa = 0;
  const pb = align4(pa + M * K);
  const pc = align4(pb + N * K);
  const mem = ensureFloats(pc + M * N);
  mem.set(a.subarray(aOff, aOff + M * K), pa);
  mem.set(bt.subarray(btOff, btOff + N * K), pb);
  if (pool.size > 0 && M * K * N >= THREADS_MIN_MACS && M >= 4 * (pool.size + 1)) {
    runThreaded(pa * 4, pb * 4, pc * 4, M, K, N);
  } else {
    kernel.matmul(pa * 4, pb * 4, pc * 4, M, K, N);
  }
  c.set(mem.subarray(pc, pc + M * N), cOff);
}

/**
 * The threaded path: rows of A and C in equal bands (even sizes, so the 2-row tiles stay
 * full), band 0 here and one per helper; then wait until every helper has finished.
 */
function runThreaded(a: number, bt: number, c: number, M: number, K: number, N: number): void {
  const parts = pool.size + 1;
  const band = (Math.ceil(M / parts) + 1) & ~1; // rows per band, rounded up to even
  const jobs = Array.from({ length: parts - 1 }, (_, t) => {
    const m0 = Math.min(M, band * (t + 1)), m1 = Math.min(M, band * (t + 2));
    return [a + m0 * K * 4, bt, c + m0 * N * 4, m1 - m0, K, N];
  });
  const op = `matmul (${M}×${K} · ${K}×${N})`;
  pool.start(K_MATMUL, jobs, op);
  try {
    kernel!.matmul(a, bt, c, Math.min(M, band), K, N);
  } finally {
    pool.finish(op);
  }
}

/** How many threads wasmMatmul splits large matmuls over (0 before init). */
export function wasmMatmulThreads(): number {
  return kernel ? pool.size + 1 : 0;
}

/** n rounded up to a multiple of 4 floats (16 bytes). */
function align4(n: number): number {
  return (n + 3) & ~3;
}

/** A view over the WASM memory holding at least n floats, growing the memory if needed. */
function ensureFloats(n: number): Float32Array {
  const memory = kernel!.memory;
  const need = n * 4;
  if (memory.buffer.byteLength < need) {
    const PAGE = 65536; // WebAssembly page size in bytes
    try {
      memory.grow(Math.ceil((need - memory.buffer.byteLength) / PAGE));
    } catch (e) {
      throw new RangeError(`wasmMatmul: cannot grow WASM memory to ${(need / 2 ** 20).toFixed(0)} MiB (${String(e)})`);
    }
  }
  // After a grow the old buffer is detached, so remake the view.
  if (view.buffer !== memory.buffer) view = new Float32Array(memory.buffer);
  return view;
}

/** Node only: the bytes of kernels/cpu/NAME. */
export async function readKernelFile(name: string): Promise<Uint8Array<ArrayBuffer>> {
  if (!isNode()) {
    throw new Error(`wasm-matmul: no bytes for ${name}: in a browser, call setWasmMatmulBytes(...) before initWasmMatmul()`);
  }
  const fsName = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
  return new Uint8Array(await fs.readFile(await findKernelFile(name)));
}

/**
 * Node only: the path of kernels/cpu/NAME. Looks two levels above this module (src/backend/
 * → the project root), one level above (a bundle in a folder beside the project),
 * $MINICHAT_KERNEL_DIR, and the working directory, as kernels.ts does.
 */
export async function findKernelFile(name: string): Promise<string> {
  // Module names in variables keep bundlers (Vite) from pulling Node built-ins into a browser build.
  const fsName = 'node:fs', pathName = 'node:path', urlName = 'node:url';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs');
  const path = (await import(/* @vite-ignore */ pathName)) as typeof import('node:path');
  const url = (await import(/* @vite-ignore */ urlName)) as typeof import('node:url');
  const dirs: string[] = [];
  if (import.meta.url.startsWith('file:')) {
    const here = path.dirname(url.fileURLToPath(import.meta.url));
    dirs.push(path.join(here, '..', '..', 'kernels'), path.join(here, '..', 'kernels'));
  }
  if (process.env.MINICHAT_KERNEL_DIR) dirs.push(process.env.MINICHAT_KERNEL_DIR);
  dirs.push(path.join(process.cwd(), 'kernels'));
  const tried = dirs.map((dir) => path.join(dir, 'cpu', name));
  const found = tried.find((file) => fs.existsSync(file));
  if (found) return found;
  throw new Error(`wasm-matmul: ${name} not found; looked in:\n  ${tried.join('\n  ')}\nrun \`npm run build:wasm\`, or set MINICHAT_KERNEL_DIR to the project's kernels/ folder`);
}
