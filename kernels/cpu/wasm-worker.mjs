// wasm-worker.mjs: one helper thread of the WebAssembly kernels (src/backend/wasm.ts
// `threads: N`, and the copying matmul of wasm-matmul.ts `initWasmMatmul({ threads: N })`;
// Node worker_threads, or Web Workers in the page: see below). It instantiates the same matmul kernel (matmul-shared.wasm) over the
// SAME shared memory as the main thread, so it computes its band of rows in place. It gets the
// very bytes the main thread compiled (matmul-shared.wasm or matmul-relaxed-shared.wasm, see
// src/backend/wasm-simd.ts), so every thread runs the same build and a split matmul stays
// bit-identical to one thread. (The relaxed build compiles here too: V8 flags are per process.)
//
// The protocol is in src/backend/wasm-threads.ts (read its header): GO and DONE are sequence
// numbers in the shared control block; we sleep while GO still equals the last job we served,
// run the kernel, store DONE = that job and notify. A wake-up carries no meaning by itself:
// after every wait we re-read GO. If this thread dies, its 'exit' hook (in a browser: its 'error' listener) marks the block DEAD
// and leaves the error message there, so the main thread (possibly blocked, unable to receive
// events) reports one clear error instead of waiting forever.
// Plain JavaScript (not TypeScript) so that it runs in a worker without any loader.
//
// Two hosts, one loop. Node: a worker_thread, its data in workerData, 'ready' posted to
// parentPort. A browser (the page's wasm backend, src/backend/wasm-threads.ts startWebWorker):
// a module Web Worker started by the training worker, its data the first message it receives,
// 'ready' posted back with postMessage. Nothing is imported statically, so the browser never
// sees node:worker_threads (the name is in a variable: bundlers leave it alone).

// Slots of `control`; the same numbers are in src/backend/wasm-threads.ts.
const GO = 0, DONE = 1, KERNEL = 2, ARGS = 3, STATE = 29, FAILED = 30, ALIVE = 1, DEAD = 2;
const SLOTS = 32;
// Kernel numbers: 0 = matmul.wat's matmul (6 args). 1 = exit this thread (tests use it to
// check that a helper dying in the middle of a job is reported, not waited for).
// 2, 3 = ops-attention.wat's attention_forward (13 args) and attention_backward (17 args), when the
// wasm backend handed over opsBytes (the copying matmul of wasm-matmul.ts does not).
// 4, 5 = swiglu_forward (4 args) / swiglu_backward (6), 6 = rope (8), 7 = binary (10), from
// ops.wat too.
const K_MATMUL = 0, K_EXIT = 1, K_ATT_FWD = 2, K_ATT_BWD = 3, K_SWIGLU_FWD = 4, K_SWIGLU_BWD = 5, K_ROPE = 6, K_BINARY = 7;

const node = typeof process !== 'undefined' && !!process.versions?.node;
const wtName = 'node:worker_threads';
const wt = node ? await import(/* @vite-ignore */ wtName) : null;
/** Our data: Node's workerData, or the browser's first message. */
const { matmulBytes, opsBytes, memory, control } = node
  ? wt.workerData
  : await new Promise((resolve) => self.addEventListener('message', (e) => resolve(e.data), { once: true }));
const ready = () => (node ? wt.parentPort.postMessage('ready') : self.postMessage('ready')); // startHelper waits for this
const ctl = new Int32Array(control, 0, SLOTS);
const message = new Uint8Array(control, SLOTS * 4);
let lastError = 'the thread exited';
function say(text) {
  const bytes = new TextEncoder().encode(text).subarray(0, message.length - 1);
  message.fill(0);
  message.set(bytes);
}
/** Mark this helper gone for good, with the reason, and wake the main thread to read it. */
function die(text) {
  say(text);
  Atomics.store(ctl, STATE, DEAD);
  Atomics.notify(ctl, DONE);
}
if (node) {
  process.on('exit', (code) => die(`${lastError} (code ${code})`));
  process.on('uncaughtException', (e) => {
    lastError = String(e?.message ?? e);
    process.exit(1);
  });
} else {
  // A Web Worker has no exit hook: an uncaught error is the way it dies, so it marks the block
  // here (the training worker may be blocked in Atomics.wait and unable to see the event).
  self.addEventListener('error', (e) => die(String(e?.message ?? e)));
  self.addEventListener('unhandledrejection', (e) => die(String(e?.reason?.message ?? e?.reason)));
}

const mm = (await WebAssembly.instantiate(matmulBytes, { env: { memory } })).instance.exports;
const ops = opsBytes ? (await WebAssembly.instantiate(opsBytes, { env: { memory } })).instance.exports : null;
/**
 * The job's i-th argument, read as UNSIGNED: the arguments are byte offsets and sizes, and an
 * offset at or above 2 GiB (the memory holds up to 4) is stored in the Int32Array as a
 * negative number; `>>> 0` gives back the offset (wasm would wrap it the same way, but a
 * negative pointer in JS is a trap for the next reader).
 */
const arg = (i) => ctl[ARGS + i] >>> 0;
Atomics.store(ctl, STATE, ALIVE);
ready();

let seen = 0; // the last job we served
for (;;) {
  // sleep while GO === seen; the loop, not the wake-up, decides that there is a new job
  while (Atomics.load(ctl, GO) === seen) Atomics.wait(ctl, GO, seen);
  seen = Atomics.load(ctl, GO);
  const kernel = ctl[KERNEL];
  try {
    if (kernel === K_MATMUL) mm.matmul(arg(0), arg(1), arg(2), arg(3), arg(4), arg(5));
    else if (kernel === K_ATT_FWD && ops) {
      ops.attention_forward(arg(0), arg(1), arg(2), arg(3), arg(4), arg(5), arg(6), arg(7), arg(8), arg(9), arg(10), arg(11), arg(12));
    } else if (kernel === K_ATT_BWD && ops) {
      ops.attention_backward(arg(0), arg(1), arg(2), arg(3), arg(4), arg(5), arg(6), arg(7), arg(8), arg(9), arg(10), arg(11), arg(12),
        arg(13), arg(14), arg(15), arg(16));
    } else if (kernel === K_SWIGLU_FWD && ops) ops.swiglu_forward(arg(0), arg(1), arg(2), arg(3));
    else if (kernel === K_SWIGLU_BWD && ops) ops.swiglu_backward(arg(0), arg(1), arg(2), arg(3), arg(4), arg(5));
    else if (kernel === K_ROPE && ops) ops.rope(arg(0), arg(1), arg(2), arg(3), arg(4), arg(5), arg(6), arg(7));
    else if (kernel === K_BINARY && ops) ops.binary(arg(0), arg(1), arg(2), arg(3), arg(4), arg(5), arg(6), arg(7), arg(8), arg(9));
    else if (kernel === K_EXIT) {
      lastError = 'asked to exit (test hook)';
      if (node) process.exit(3);
      die(`${lastError} (closed)`);
      self.close();
      break;
    } else throw new Error(`unknown kernel ${kernel}`);
  } catch (e) {
    // a trap in a kernel is a bug: say what it was, and let the main thread report it
    say(String(e?.message ?? e));
    Atomics.store(ctl, FAILED, 1);
  }
  Atomics.store(ctl, DONE, seen);
  Atomics.notify(ctl, DONE);
}
