// Helper threads for the WebAssembly kernels (Node worker_threads; in the page, module Web
// Workers started by the training worker): how the main thread hands a band of work to a
// helper and learns that it is done, with no message per call. The protocol is the same in
// both; only starting a helper differs (startHelper). In the page the pool's "main thread" is
// itself a Web Worker (web/src/worker.ts), where Atomics.wait is allowed.
//
// Each helper (kernels/cpu/wasm-worker.mjs) instantiates the same kernels over the SAME shared
// WebAssembly.Memory as the main thread, so it computes in place. Per helper there is one
// small shared control block (an Int32Array, slots below). One job:
//
//   main thread                                   helper
//   write KERNEL and ARGS                         ...sleeping in Atomics.wait(GO, seen)
//   Atomics.store(GO, seq); notify(GO)   ───►     GO ≠ seen: seen = GO, run the kernel
//   run its own band                              Atomics.store(DONE, seen); notify(DONE)
//   wait until DONE === seq              ◄───
//
// Why this cannot stall (docs/wasm.md, "Threads", tells the story of the old stall):
//   - Progress is carried only by the two counters, never by a wake-up. GO and DONE are
//     sequence numbers: each side re-reads the counter after every wait and waits again only
//     while it still holds the value it has seen. A wake that arrives early, late, twice or
//     never changes nothing about what the counters say.
//   - A lost wake-up is still possible at the engine level: on Node 20 we caught the main
//     thread asleep in Atomics.wait for 60 s with DONE already equal to its sequence number
//     (the helper had stored it and called notify). So the main thread sleeps in slices of
//     WAIT_SLICE_MS and re-reads DONE after each: a lost wake costs at most one slice, never a
//     hang. The slice is not a deadline: the loop ends only when DONE arrives or the helper is
//     known to be gone. `lostWakes` counts slices that ended with DONE already there.
//   - A helper that dies (an uncaught error, process.exit, a trap in a kernel) says so in its
//     control block: its 'exit' hook stores STATE = DEAD and its error message into the
//     block's message bytes, then notifies DONE. The main thread, which may be blocked and
//     so cannot receive the Worker's 'error'/'exit' events, reads STATE in its wait loop and
//     throws ONE UserError naming the op. The Worker events set the same flag for the case
//     where the helper vanished without running its hook (worker.terminate()).
import { UserError } from '../util/errors.ts';
import { isNode } from './platform.ts';

// Slots of a control block; the same numbers are in kernels/cpu/wasm-worker.mjs.
export const GO = 0, DONE = 1, KERNEL = 2, ARGS = 3, STATE = 29, FAILED = 30;
export const MAX_ARGS = STATE - ARGS;
/** STATE values: the helper is serving jobs / has stopped for good. */
export const ALIVE = 1, DEAD = 2;
/** Bytes of the control block: 32 int32 slots (up to 26 kernel arguments: attention's backward takes 17), then a UTF-8 error message. */
const SLOTS = 32, MESSAGE_BYTES = 512;

/** The longest the main thread sleeps before it re-reads DONE and STATE (a lost wake costs at most this). */
export const WAIT_SLICE_MS = 2;
/** Loads of DONE before sleeping: the bands are equal, so the helper is often done within microseconds. */
const SPINS = 2000;

export interface Helper {
  worker: { terminate(): unknown };
  ctl: Int32Array;
  /** The message bytes after the slots (the helper's last error, UTF-8, zero-terminated). */
  message: Uint8Array;
}

/** The Node Worker, as far as we use it. */
interface WorkerLike {
  terminate(): Promise<number>;
  unref(): void;
  on(ev: 'error', f: (e: Error) => void): unknown;
  on(ev: 'exit', f: (code: number) => void): unknown;
  once(ev: 'message', f: () => void): unknown;
  once(ev: 'error', f: (e: Error) => void): unknown;
  once(ev: 'exit', f: (code: number) => void): unknown;
}

/** The browser's Worker, as far as we use it (the root tsconfig has the DOM library, but this
 *  file also type-checks the Node side, so it is spelled out). */
interface WebWorkerLike {
  terminate(): void;
  postMessage(data: unknown): void;
  addEventListener(ev: 'message' | 'error' | 'messageerror', f: (e: { data?: unknown; message?: string }) => void, opts?: { once?: boolean }): void;
}

/**
 * Start a kernel worker and wait for its 'ready' message, with a fresh control block passed
 * as `control` beside `data`. `script` is where the worker's code is:
 *   - Node: the path of kernels/cpu/<file>; the helper is a worker_thread and gets `data`
 *     as its workerData;
 *   - a browser (the page's training worker, web/src/worker.ts): the URL of that file as the
 *     bundler serves it; the helper is a module Web Worker nested in the training worker, and
 *     gets `data` as its first message. The memory in `data` is a shared WebAssembly.Memory,
 *     which a page may post only when it is cross-origin isolated.
 */
export async function startHelper(script: string | URL, data: Record<string, unknown>): Promise<Helper> {
  const buffer = new SharedArrayBuffer(SLOTS * 4 + MESSAGE_BYTES);
  const ctl = new Int32Array(buffer, 0, SLOTS), message = new Uint8Array(buffer, SLOTS * 4);
  // From the 'ready' on, an error or exit is reported by the next job that needs this helper,
  // as one UserError; without these listeners an 'error' event would crash the process with a trace.
  const gone = (why: string) => {
    if (Atomics.load(ctl, STATE) !== DEAD) {
      writeMessage(message, why);
      Atomics.store(ctl, STATE, DEAD);
    }
    Atomics.notify(ctl, DONE);
  };
  if (!isNode()) return startWebWorker(script, { ...data, control: buffer }, { ctl, message }, gone);
  const wtName = 'node:worker_threads';
  const { Worker } = (await import(/* @vite-ignore */ wtName)) as typeof import('node:worker_threads');
  const worker = new Worker(script, { workerData: { ...data, control: buffer } }) as unknown as WorkerLike;
  worker.unref(); // a sleeping helper must not keep the process alive
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`${String(script)} exited (code ${code}) before it was ready`)));
  });
  worker.on('error', (e) => gone(e.message));
  worker.on('exit', (code) => gone(`the thread exited (code ${code})`));
  return { worker, ctl, message };
}

/** The browser half of startHelper: a module Web Worker, its data as the first message. */
async function startWebWorker(
  script: string | URL, data: Record<string, unknown>, block: Omit<Helper, 'worker'>, gone: (why: string) => void,
): Promise<Helper> {
  const Ctor = (globalThis as { Worker?: new (url: string | URL, opts: { type: 'module' }) => WebWorkerLike }).Worker;
  if (!Ctor) throw new Error('wasm backend: this browser has no Worker here (helper threads need Web Workers inside a Web Worker)');
  const worker = new Ctor(script, { type: 'module' });
  await new Promise<void>((resolve, reject) => {
    worker.addEventListener('message', () => resolve(), { once: true });
    // a script that fails to load or throws before it is ready: 'error' (its event carries
    // a message only for a thrown error, not for a failed fetch)
    worker.addEventListener('error', (e) => reject(new Error(`${String(script)} failed before it was ready: ${e.message || 'the script did not load'}`)), { once: true });
    worker.postMessage(data);
  });
  // A Web Worker has no 'exit' event: a helper that throws reports it here (and marks its own
  // block DEAD first, see wasm-worker.mjs); one that is terminated is reported by destroy's caller.
  worker.addEventListener('error', (e) => gone(e.message || 'the thread failed'));
  worker.addEventListener('messageerror', () => gone('a message to the thread could not be read'));
  return { worker, ...block };
}

function writeMessage(message: Uint8Array, text: string): void {
  const bytes = new TextEncoder().encode(text).subarray(0, message.length - 1);
  message.fill(0);
  message.set(bytes);
}

function readMessage(message: Uint8Array): string {
  const end = message.indexOf(0);
  // decode a copy: TextDecoder refuses views of shared memory
  return new TextDecoder().decode(message.slice(0, end < 0 ? message.length : end)) || 'no message';
}

/**
 * The helpers of one backend and the job sequence number they share. `start` hands each
 * helper its band; `finish` waits for all of them. Between the two the caller computes its
 * own band.
 */
export class HelperPool {
  private seq = 0;
  /** Wait slices that ended with DONE already stored (wake-ups the engine lost; see above). */
  lostWakes = 0;
  /** Jobs handed to the helpers so far (tests use it to check that work really was split). */
  jobs = 0;

  constructor(readonly helpers: Helper[]) {}

  get size(): number {
    return this.helpers.length;
  }

  /** Give helper t the job (kernel, args[t]); `op` names the op for errors. */
  start(kernel: number, args: number[][], op: string): void {
    this.seq = (this.seq + 1) | 0;
    if (this.seq === 0) this.seq = 1; // 0 is what a fresh helper has "seen"
    this.jobs++;
    this.helpers.forEach((h, t) => {
      this.check(h, t, op);
      const a = args[t];
      if (a.length > MAX_ARGS) throw new Error(`internal: ${a.length} kernel arguments (at most ${MAX_ARGS})`);
      h.ctl[KERNEL] = kernel;
      // Arguments are unsigned 32-bit (byte offsets up to 4 GiB, sizes): the Int32Array keeps
      // their 32 bits (an offset ≥ 2^31 reads back negative; the helper reads them `>>> 0`)
      for (let i = 0; i < a.length; i++) {
        if (!(Number.isInteger(a[i]) && a[i] >= 0 && a[i] < 2 ** 32)) throw new Error(`internal: kernel argument ${i} is ${a[i]} (not an unsigned 32-bit integer)`);
        h.ctl[ARGS + i] = a[i];
      }
      Atomics.store(h.ctl, GO, this.seq); // publishes the plain stores above (Atomics are sequentially consistent)
      Atomics.notify(h.ctl, GO);
    });
  }

  /** Block until every helper has finished the job `start` gave it. */
  finish(op: string): void {
    const seq = this.seq;
    this.helpers.forEach((h, t) => {
      let spins = 0;
      for (let done = Atomics.load(h.ctl, DONE); done !== seq; done = Atomics.load(h.ctl, DONE)) {
        this.check(h, t, op);
        if (spins++ < SPINS) continue;
        if (Atomics.wait(h.ctl, DONE, done, WAIT_SLICE_MS) === 'timed-out' && Atomics.load(h.ctl, DONE) === seq) this.lostWakes++;
      }
      this.check(h, t, op);
    });
  }

  /** Throw the UserError for a helper that has died or whose kernel failed. */
  private check(h: Helper, t: number, op: string): void {
    const state = Atomics.load(h.ctl, STATE), failed = Atomics.load(h.ctl, FAILED);
    if (state !== DEAD && !failed) return;
    const what = state === DEAD ? 'stopped' : 'failed';
    throw new UserError(`wasm backend: worker thread ${t + 1} of ${this.helpers.length} ${what} during ${op}: ${readMessage(h.message)} (rerun with --threads 1 to compute without worker threads)`);
  }

  /** Stop the helpers (they are also unref'd, so a process can exit without this). */
  destroy(): void {
    for (const h of this.helpers) void h.worker.terminate();
    this.helpers.length = 0;
  }
}
