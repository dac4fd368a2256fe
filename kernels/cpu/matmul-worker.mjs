// matmul-worker.mjs: one helper thread of the optional multi-threaded WASM matmul
// (src/backend/wasm-matmul.ts, `initWasmMatmul({ threads: 2 })`, Node only).
//
// The main thread and each worker run the SAME kernel (matmul-shared.wasm, i.e. matmul.wat
// over a shared memory) on the SAME memory, each on its own band of rows of A and C. No
// messages are passed per matmul: the main thread writes the band's arguments into a small
// shared Int32Array `control`, bumps GO and wakes us with Atomics.notify; we run the kernel,
// copy GO into DONE and wake the main thread, which blocks in Atomics.wait until then.
// Waiting in Atomics.wait costs no CPU, so an idle worker leaves the core to others.
// Plain JavaScript (not TypeScript) so that it runs in a worker without any loader.
import { parentPort, workerData } from 'node:worker_threads';

// Slots of `control`; the same constants are in wasm-matmul.ts.
const GO = 0, DONE = 1, A = 2, BT = 3, C = 4, M = 5, K = 6, N = 7, FAILED = 8;

const { bytes, memory, control } = workerData;
const ctl = new Int32Array(control);
const { instance } = await WebAssembly.instantiate(bytes, { env: { memory } });
const matmul = instance.exports.matmul;
parentPort.postMessage('ready'); // initWasmMatmul waits for this before it resolves

let seen = 0; // the last GO we served
for (;;) {
  Atomics.wait(ctl, GO, seen); // sleep while ctl[GO] === seen
  seen = Atomics.load(ctl, GO);
  try {
    matmul(ctl[A], ctl[BT], ctl[C], ctl[M], ctl[K], ctl[N]);
  } catch (e) {
    Atomics.store(ctl, FAILED, 1); // the main thread reports it (an out-of-bounds trap is a bug)
    console.error('matmul-worker:', e);
  }
  Atomics.store(ctl, DONE, seen);
  Atomics.notify(ctl, DONE);
}
