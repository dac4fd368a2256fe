// wasm-worker.mjs: one helper thread of the wasm backend (src/backend/wasm.ts, `threads: N`,
// Node worker_threads). It instantiates the same matmul kernel (matmul-shared.wasm)
// over the SAME shared memory as the main thread, so it can compute a band of rows of a
// matmul in place. No messages per call: the main thread writes the kernel number and its
// arguments into the shared Int32Array `control`, bumps GO and wakes us (Atomics.notify); we
// run the kernel, copy GO into DONE and wake the main thread, which waits (Atomics.wait) for
// every helper. Waiting in Atomics.wait costs no CPU. Plain JavaScript: no loader needed.
import { parentPort, workerData } from 'node:worker_threads';

// Slots of `control`; the same constants are in src/backend/wasm.ts.
const GO = 0, DONE = 1, KERNEL = 2, ARGS = 3, FAILED = 15;
// Kernel numbers: 0 = matmul.wat's matmul (6 args). (A number, so other kernels can be split too.)

const { matmulBytes, memory, control } = workerData;
const ctl = new Int32Array(control);
const env = { env: { memory } };
const mm = (await WebAssembly.instantiate(matmulBytes, env)).instance.exports;
parentPort.postMessage('ready'); // createWasmBackend waits for this

let seen = 0; // the last GO we served
for (;;) {
  Atomics.wait(ctl, GO, seen); // sleep while ctl[GO] === seen
  seen = Atomics.load(ctl, GO);
  const a = (i) => ctl[ARGS + i];
  try {
    if (ctl[KERNEL] === 0) mm.matmul(a(0), a(1), a(2), a(3), a(4), a(5));
    else throw new Error(`unknown kernel ${ctl[KERNEL]}`);
  } catch (e) {
    Atomics.store(ctl, FAILED, 1); // the main thread reports it (a trap here is a bug)
    console.error('wasm-worker:', e);
  }
  Atomics.store(ctl, DONE, seen);
  Atomics.notify(ctl, DONE);
}
