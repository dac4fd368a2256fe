// Which platform this code runs on. The backends load different things in Node (files from
// disk, Dawn from the `webgpu` package, worker_threads) than in a browser (bundled sources,
// navigator.gpu, Web Workers); this is the one test they use.

/** True in Node (tests, the CLI, benchmarks), false in a browser or a Web Worker. */
export function isNode(): boolean {
  return typeof process !== 'undefined' && !!process.versions?.node;
}
