// Live and peak bytes of a backend's storage: the numbers behind Backend.bytesInUse(),
// peakBytes() and resetPeak() (what `minichat plan --measure` and bench/rl-memory.bench.ts read).
// Each backend owns one and tells it when storage is made (`add`) and given back (`remove`);
// what counts as "storage" is the backend's own business (typed arrays on cpu, heap blocks on
// wasm, GPU buffers on webgpu).

export class ByteCounter {
  /** Bytes held by live storage now. */
  live = 0;
  /** The most `live` has been since the counter was made or `resetPeak()`. */
  peak = 0;

  add(bytes: number): void {
    this.live += bytes;
    if (this.live > this.peak) this.peak = this.live;
  }
  remove(bytes: number): void {
    this.live -= bytes;
  }
  /** Start a new peak measurement from what is live now. */
  resetPeak(): void {
    this.peak = this.live;
  }
}
