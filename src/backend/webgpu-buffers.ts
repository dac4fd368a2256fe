// The WebGPU backend's memory: a Storage wraps a GPUBuffer; freed buffers go back to a pool
// keyed by byte size, so a training step that repeats the same shapes allocates nothing new
// after the first. Reads go through MAP_READ staging buffers, pooled the same way.
//
// One ordering rule lives here: queue.writeBuffer (upload) runs before commands that are
// recorded but not yet submitted, so uploading into a pooled buffer that pending commands
// still read submits those commands first.
import type { DType, HostArray, Storage } from './backend.ts';
import { COPY_DST, COPY_SRC, type GpuBuffer, MAP_MODE_READ, MAP_READ, STORAGE } from './webgpu-device.ts';
import { GpuStorage, WebGPUDispatch, mib } from './webgpu-dispatch.ts';
import { UserError } from '../util/errors.ts';

export class WebGPUBuffers extends WebGPUDispatch {
  private readonly pool = new Map<number, GpuBuffer[]>(); // free buffers by byte size
  private readonly readPool = new Map<number, GpuBuffer[]>(); // MAP_READ staging buffers
  private pooled = 0; // bytes held by the pool

  /**
   * A new storage of `length` values. A tensor above maxBufferSize cannot be one buffer, and
   * the ops do not split a tensor across buffers (only their bindings: webgpu-split.ts): a
   * UserError naming the tensor (`what`, e.g. 'the matmul output [16, 512, 6400]').
   */
  protected alloc(length: number, dtype: DType, what?: string): GpuStorage {
    const bytes = Math.max(16, Math.ceil((length * 4) / 16) * 16);
    const lim = this.limits.maxBufferSize;
    if (bytes > lim) {
      throw new UserError(
        `webgpu: ${what ?? 'a tensor'} of ${length} ${dtype} values (${mib(bytes)}) is larger than this GPU's maxBufferSize ` +
          `(${mib(lim)}); use a smaller batch size, sequence length or model (vocabulary x tokens for the logits, or --ce-chunk)`,
      );
    }
    const free = this.pool.get(bytes);
    let buffer = free?.pop();
    if (buffer) this.pooled -= bytes;
    else {
      buffer = this.device.createBuffer({ size: bytes, usage: STORAGE | COPY_SRC | COPY_DST });
      this.stats.buffersCreated++;
    }
    this.countAlloc(bytes);
    return new GpuStorage(buffer, length, dtype);
  }

  zeros(length: number, dtype: DType): Storage {
    const s = this.alloc(length, dtype);
    this.clear(s.buffer);
    return s;
  }

  upload(data: ArrayLike<number>, dtype: DType): Storage {
    const s = this.alloc(data.length, dtype);
    // writeBuffer runs ahead of recorded-but-unsubmitted commands: if those still use this
    // (pooled) buffer, submit them first.
    if (this.pendingBuffers.has(s.buffer)) this.flush();
    const host = dtype === 'int32' ? Int32Array.from(data) : Float32Array.from(data);
    if (host.byteLength > 0) this.device.queue.writeBuffer(s.buffer, 0, host.buffer, host.byteOffset, host.byteLength);
    return s;
  }

  async read(st: Storage, dtype: DType): Promise<HostArray> {
    const s = this.check(st);
    const bytes = s.buffer.size;
    const staging = this.readPool.get(bytes)?.pop() ?? this.device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
    const checkErrors = this.errorsMayBeSet;
    const errStaging = checkErrors ? this.device.createBuffer({ size: 16, usage: MAP_READ | COPY_DST }) : null;
    const enc = this.commandEncoder();
    this.endPass();
    enc.copyBufferToBuffer(s.buffer, 0, staging, 0, bytes);
    if (errStaging) enc.copyBufferToBuffer(this.errors, 0, errStaging, 0, 16);
    this.flush();
    await staging.mapAsync(MAP_MODE_READ);
    const raw = staging.getMappedRange(0, s.length * 4).slice(0);
    staging.unmap();
    const list = this.readPool.get(bytes) ?? [];
    list.push(staging);
    this.readPool.set(bytes, list);
    if (this.deviceError) throw new Error(`webgpu: ${this.deviceError}`);
    if (errStaging) {
      await errStaging.mapAsync(MAP_MODE_READ);
      const e = new Int32Array(errStaging.getMappedRange().slice(0));
      errStaging.unmap();
      errStaging.destroy();
      this.errorsMayBeSet = false;
      if (e[0] !== 0) {
        this.clear(this.errors);
        const op = ['', 'gather', 'scatterAdd', 'crossEntropy', 'targetLogprobs'][e[0]] ?? 'a kernel';
        const what = e[0] >= 3 ? 'target' : 'index';
        throw new RangeError(`${op} (webgpu): ${what} ${e[2]} at position ${e[1]} was outside the table; the result read now is not valid`);
      }
    }
    return dtype === 'int32' ? new Int32Array(raw) : new Float32Array(raw);
  }

  free(st: Storage): void {
    const s = st as GpuStorage;
    if (s.freed) throw new Error('webgpu: storage freed twice');
    s.freed = true;
    const bytes = s.buffer.size;
    this.countFree(bytes);
    this.pooled += bytes;
    const list = this.pool.get(bytes) ?? [];
    list.push(s.buffer);
    this.pool.set(bytes, list);
  }

  /** Bytes kept by the pool for reuse (not in use, not returned to the driver). */
  bytesPooled(): number {
    return this.pooled;
  }

  /** Give the pool's buffers back to the driver. */
  releasePool(): void {
    this.flush();
    for (const list of this.pool.values()) for (const b of list) b.destroy();
    this.pool.clear();
    this.pooled = 0;
  }
}
