// Which platform this code runs on. The backends load different things in Node (files from
// disk, Dawn from the `webgpu` package, worker_threads) than in a browser (bundled sources,
// navigator.gpu, Web Workers); this is the one test they use.

/** True in Node (tests, the CLI, benchmarks), false in a browser or a Web Worker. */
export function isNode(): boolean {
  return typeof process !== 'undefined' && !!process.versions?.node;
}

/** The most threads the default asks for: past this the bands get thin and waking costs more than it saves. */
export const DEFAULT_THREADS_CAP = 8;

/**
 * The wasm backend's default thread count on a machine with `cores` cores: min(cores,
 * DEFAULT_THREADS_CAP), at least 1. One rule for the CLI (cores = os.availableParallelism(),
 * see resolveThreads in src/cli/common.ts) and the page (cores = navigator.hardwareConcurrency,
 * web/src/worker.ts). A missing or nonsensical count (0, NaN) gives 1.
 */
export function defaultThreads(cores: number): number {
  return Number.isFinite(cores) ? Math.max(1, Math.min(Math.floor(cores), DEFAULT_THREADS_CAP)) : 1;
}
