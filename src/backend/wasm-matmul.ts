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
//
// Loading the binary differs by platform (as for the WGSL kernels in kernels.ts):
//   - Node: read kernels/cpu/matmul.wasm from disk, found relative to this module's URL.
//   - Browser: there is no disk; the page hands the bytes over before calling init:
//         import wasmUrl from '../../kernels/cpu/matmul.wasm?url';      // Vite
//         setWasmMatmulBytes(new Uint8Array(await (await fetch(wasmUrl)).arrayBuffer()));
// This module imports nothing from Node at the top level, so a browser bundle can include it.

/** The kernel's exports (see the .wat). Pointers are byte offsets into `memory`. */
interface MatmulExports {
  memory: WebAssembly.Memory;
  matmul(a: number, bt: number, c: number, M: number, K: number, N: number): void;
}

let kernel: MatmulExports | null = null;
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

/** Forget the loaded kernel (tests use this to run init again with other options). */
export function resetWasmMatmul(): void {
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
  const bytes = injectedBytes ?? (await readWasmFromDisk());
  const validate = opts.validate ?? ((b: Uint8Array<ArrayBuffer>) => WebAssembly.validate(b));
  if (!validate(bytes)) return false;
  const { instance } = await WebAssembly.instantiate(bytes);
  kernel = instance.exports as unknown as MatmulExports;
  view = new Float32Array(kernel.memory.buffer);
  return true;
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
  kernel.matmul(pa * 4, pb * 4, pc * 4, M, K, N);
  c.set(mem.subarray(pc, pc + M * N), cOff);
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

/**
 * Node only: the bytes of kernels/cpu/matmul.wasm. Looks two levels above this module
 * (src/backend/ → the project root), one level above (a bundle in a folder beside the
 * project), $MINICHAT_KERNEL_DIR, and the working directory, as kernels.ts does.
 */
async function readWasmFromDisk(): Promise<Uint8Array<ArrayBuffer>> {
  const isNode = typeof process !== 'undefined' && !!process.versions?.node;
  if (!isNode) {
    throw new Error('wasm-matmul: no bytes for matmul.wasm: in a browser, call setWasmMatmulBytes(...) before initWasmMatmul()');
  }
  // Module names in variables keep bundlers (Vite) from pulling Node built-ins into a browser build.
  const fsName = 'node:fs/promises', pathName = 'node:path', urlName = 'node:url';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
  const path = (await import(/* @vite-ignore */ pathName)) as typeof import('node:path');
  const url = (await import(/* @vite-ignore */ urlName)) as typeof import('node:url');
  const dirs: string[] = [];
  if (import.meta.url.startsWith('file:')) {
    const here = path.dirname(url.fileURLToPath(import.meta.url));
    dirs.push(path.join(here, '..', '..', 'kernels'), path.join(here, '..', 'kernels'));
  }
  if (process.env.MINICHAT_KERNEL_DIR) dirs.push(process.env.MINICHAT_KERNEL_DIR);
  dirs.push(path.join(process.cwd(), 'kernels'));
  const tried: string[] = [];
  for (const dir of dirs) {
    const file = path.join(dir, 'cpu', 'matmul.wasm');
    tried.push(file);
    try {
      return new Uint8Array(await fs.readFile(file));
    } catch {
      // not here; try the next place
    }
  }
  throw new Error(`wasm-matmul: matmul.wasm not found; looked in:\n  ${tried.join('\n  ')}\nrun \`npm run build:wasm\`, or set MINICHAT_KERNEL_DIR to the project's kernels/ folder`);
}
