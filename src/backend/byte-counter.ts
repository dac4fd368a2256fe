// Live and peak bytes of a backend's storage: Backend.bytesInUse(), peakBytes() and
// resetPeak() (what `minichat plan --measure` and bench/rl-memory.bench.ts read), written once.
// The cpu backend, the wasm heap (wasm-memory.ts) and the WebGPU buffer pool extend it and
// call `countAlloc` when storage is made and `countFree` when it is given back; what counts as
// storage is theirs to say (typed arrays on cpu, heap blocks on wasm, GPU buffers on webgpu).

export class ByteCounter {
  private live = 0; // bytes held by live storage now
  private peak = 0; // the most `live` has been since construction or resetPeak()

  protected countAlloc(bytes: number): void {
    this.live += bytes;
    if (this.live > this.peak) this.peak = this.live;
  }
  protected countFree(bytes: number): void {
    this.live -= bytes;
  }

  /** Bytes held by live storage. */
  bytesInUse(): number {
    return this.live;
  }
  /** The most bytes live storage held at once since the counter was made or resetPeak(). */
  peakBytes(): number {
    return this.peak;
  }
  /** Start a new peak measurement from what is live now. */
  resetPeak(): void {
    this.peak = this.live;
  }
}
