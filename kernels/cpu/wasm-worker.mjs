// wasm-worker.mjs: one helper thread of the WebAssembly kernels (src/backend/wasm.ts
// `threads: N`, and the copying matmul of wasm-matmul.ts `initWasmMatmul({ threads: N })`;
// Node worker_threads). It instantiates the same matmul kernel (matmul-shared.wasm) over the
// SAME shared memory as the main thread, so it computes its band of rows in place. It gets the
// very bytes the main thread compiled (matmul-shared.wasm or matmul-relaxed-shared.wasm, see
// src/backend/wasm-simd.ts), so every thread runs the same build and a split matmul stays
// bit-identical to one thread. (The relaxed build compiles here too: V8 flags are per process.)
//
// The protocol is in src/backend/wasm-threads.ts (read its header): GO and DONE are sequence
// numbers in the shared control block; we sleep while GO still equals the last job we served,
// run the kernel, store DONE = that job and notify. A wake-up carries no meaning by itself:
// after every wait we re-read GO. If this thread dies, its 'exit' hook marks the block DEAD
// and leaves the error message there, so the main thread (possibly blocked, unable to receive
// events) reports one clear error instead of waiting forever.
// Plain JavaScript (not TypeScript) so that it runs in a worker without any loader.
import { parentPort, workerData } from 'node:worker_threads';

// Slots of `control`; the same numbers are in src/backend/wasm-threads.ts.
const GO = 0, DONE = 1, KERNEL = 2, ARGS = 3, STATE = 29, FAILED = 30, ALIVE = 1, DEAD = 2;
const SLOTS = 32;
// Kernel numbers: 0 = matmul.wat's matmul (6 args). 1 = exit this thread (tests use it to
// check that a helper dying in the middle of a job is reported, not waited for).
// 2, 3 = ops.wat's attention_forward (13 args) and attention_backward (17 args), when the
// wasm backend handed over opsBytes (the copying matmul of wasm-matmul.ts does not).
// 4, 5 = swiglu_forward (4 args) / swiglu_backward (6), 6 = rope (8), 7 = binary (10), from
// ops.wat too.
const K_MATMUL = 0, K_EXIT = 1, K_ATT_FWD = 2, K_ATT_BWD = 3, K_SWIGLU_FWD = 4, K_SWIGLU_BWD = 5, K_ROPE = 6, K_BINARY = 7;

const { matmulBytes, opsBytes, memory, control } = workerData;
const ctl = new Int32Array(control, 0, SLOTS);
const message = new Uint8Array(control, SLOTS * 4);
let lastError = 'the thread exited';
function say(text) {
  const bytes = new TextEncoder().encode(text).subarray(0, message.length - 1);
  message.fill(0);
  message.set(bytes);
}
process.on('exit', (code) => {
  say(`${lastError} (code ${code})`);
  Atomics.store(ctl, STATE, DEAD);
  Atomics.notify(ctl, DONE);
});
process.on('uncaughtException', (e) => {
  lastError = String(e?.message ?? e);
  process.exit(1);
});

const mm = (await WebAssembly.instantiate(matmulBytes, { env: { memory } })).instance.exports;
const ops = opsBytes ? (await WebAssembly.instantiate(opsBytes, { env: { memory } })).instance.exports : null;
/** The job's i-th argument. */
const arg = (i) => ctl[ARGS + i];
Atomics.store(ctl, STATE, ALIVE);
parentPort.postMessage('ready'); // startHelper waits for this

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
      process.exit(3);
    } else throw new Error(`unknown kernel ${kernel}`);
  } catch (e) {
    // a trap in a kernel is a bug: say what it was, and let the main thread report it
    say(String(e?.message ?? e));
    Atomics.store(ctl, FAILED, 1);
  }
  Atomics.store(ctl, DONE, seen);
  Atomics.notify(ctl, DONE);
}
