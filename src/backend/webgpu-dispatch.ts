// The WebGPU backend's recording and submitting: how an op becomes a dispatch.
//
//   - Execution. Kernels are not submitted one by one: dispatches are recorded into one
//     command encoder and submitted in batches (every MAX_PENDING dispatches, and whenever the
//     host reads). Each dispatch's parameters (sizes, strides) go into its own 256-byte slot of
//     a uniform buffer that is written once per batch, just before the submit (ParamBlock).
//   - Pipelines. One per (kernel, entry point, override constants), made on first use and kept.
//   - Ordering. Commands run in the order they were recorded, with the barriers WebGPU adds
//     between dispatches, so a buffer freed by one op and reused by the next is safe (the one
//     exception, queue.writeBuffer, is handled by upload in webgpu-buffers.ts).
//   - Limits. No binding may pass maxStorageBufferBindingSize (the effective limits: see
//     WebGPUOptions.limits). Ops keep within it by splitting (webgpu-split.ts); dispatch()
//     checks every binding, so an op that did not split stops with one clear line.
//   - Errors. A kernel cannot throw. gather / scatterAdd / the cross-entropy kernels record an
//     out-of-range index in a small error buffer (`errors`); the next read() reports it.
//     Device errors (validation, device lost) are kept and thrown by the next read or sync.
import { ByteCounter } from './byte-counter.ts';
import type { DType, Storage } from './backend.ts';
import { UserError } from '../util/errors.ts';
import {
  COPY_DST, COPY_SRC, type GpuAdapter, type GpuAdapterInfo, type GpuBuffer, type GpuComputePass, type GpuDevice, type GpuEncoder, type GpuEntry,
  type GpuPipeline, type GpuShaderModule, type KernelName, MAP_MODE_READ, MAP_READ, QUERY_RESOLVE, STORAGE, UNIFORM,
} from './webgpu-device.ts';

/** Dispatches recorded before a submit is forced (each owns one 256-byte uniform slot). */
export const MAX_PENDING = 128;
export const SLOT = 256; // bytes per uniform slot: minUniformBufferOffsetAlignment is at most 256

/** A GPU buffer holding `length` elements of `dtype`. */
export class GpuStorage implements Storage {
  freed = false;
  constructor(readonly buffer: GpuBuffer, readonly length: number, readonly dtype: DType) {}
}

/**
 * The bytes of one kernel's `Params` uniform struct, written field by field in the struct's
 * order. WGSL's uniform layout: 4-byte scalars packed, vec4 and arrays of vec4 on 16 bytes.
 */
export class ParamBlock {
  readonly u = new Uint32Array(SLOT / 4);
  readonly f = new Float32Array(this.u.buffer);
  private at = 0; // next word
  u32(...xs: number[]): this {
    for (const x of xs) this.u[this.at++] = x >>> 0;
    return this;
  }
  f32(...xs: number[]): this {
    for (const x of xs) this.f[this.at++] = x;
    return this;
  }
  /** One vec4<u32> per 4 values (array<vec4<u32>, words / 4>), 16-byte aligned, zero padded. */
  vec(xs: number[], words: number): this {
    this.at = Math.ceil(this.at / 4) * 4;
    for (let i = 0; i < words; i++) this.u[this.at + i] = (xs[i] ?? 0) >>> 0;
    this.at += words;
    return this;
  }
}

/** Part of a buffer bound on its own: `size` bytes from `offset` (a multiple of
 *  minStorageBufferOffsetAlignment). The kernel sees it as an array starting at element 0. */
export class GpuWindow {
  constructor(readonly buffer: GpuBuffer, readonly offset: number, readonly size: number) {}
}

export type Binding = GpuStorage | GpuWindow | GpuBuffer | null; // null: a binding this entry point does not use

export function mib(bytes: number): string {
  return bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/** The recorder every op goes through (and, as a ByteCounter, the live/peak bytes the buffer pool
 *  counts); the buffers (webgpu-buffers.ts), the ops (webgpu-ops.ts)
 *  and the fused kernels (webgpu-fused.ts) build on it, in that order. */
export class WebGPUDispatch extends ByteCounter {
  readonly limits: Record<string, number>;
  readonly adapterInfo: GpuAdapterInfo;
  readonly hasTimestamps: boolean;

  private readonly pipelines = new Map<string, GpuPipeline>();

  // the batch being recorded
  private encoder: GpuEncoder | null = null;
  private pass: GpuComputePass | null = null;
  private pending = 0; // dispatches in this batch
  private readonly uniformHost = new Uint8Array(MAX_PENDING * SLOT);
  private readonly uniforms: GpuBuffer;
  protected readonly pendingBuffers = new Set<GpuBuffer>(); // read or written by recorded commands

  protected readonly errors: GpuBuffer; // 4 x u32 written by gather / scatterAdd on a bad index
  protected errorsMayBeSet = false;
  protected deviceError: string | null = null;
  protected destroyed = false;
  /** Dispatches and submits since creation (for tests and the benchmark); windows / scratch:
   *  bands of a split op bound in place or through a scratch copy (webgpu-split.ts). */
  readonly stats = { dispatches: 0, submits: 0, buffersCreated: 0, windows: 0, scratch: 0 };

  constructor(
    readonly device: GpuDevice, adapter: GpuAdapter, private readonly modules: Map<KernelName, GpuShaderModule>,
    // Held for the backend's lifetime: in Node, Dawn's instance is freed when its JS object is
    // garbage-collected, and the device's event processing then crashes the process.
    private readonly gpu: GpuEntry,
    limits: Record<string, number> = device.limits,
  ) {
    super();
    this.limits = limits;
    this.adapterInfo = adapter.info ?? {};
    this.hasTimestamps = device.features.has('timestamp-query');
    this.uniforms = device.createBuffer({ size: MAX_PENDING * SLOT, usage: UNIFORM | COPY_DST });
    this.errors = device.createBuffer({ size: 16, usage: STORAGE | COPY_SRC | COPY_DST });
    device.addEventListener?.('uncapturederror', (e) => {
      this.deviceError ??= e.error.message;
    });
    void device.lost.then((info) => {
      if (!this.destroyed) this.deviceError ??= `device lost: ${info.message}`;
    });
  }

  /** Release the device (tests call this so the Node process can exit). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.device.destroy();
  }

  /** Submit everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.pending > 0) this.device.queue.writeBuffer(this.uniforms, 0, this.uniformHost.buffer, 0, this.pending * SLOT);
    this.device.queue.submit([this.encoder.finish()]);
    this.stats.submits++;
    this.encoder = null;
    this.pending = 0;
    this.pendingBuffers.clear();
  }

  /** Resolves when the GPU has finished everything submitted (and flushes first). */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    if (this.deviceError) throw new Error(`webgpu: ${this.deviceError}`);
  }

  /**
   * GPU seconds spent by the dispatches that `record` makes, from timestamp queries written
   * at the start and end of one compute pass; null when the device has no timestamp-query
   * feature (create the backend with { timestamps: true }). `record` must only dispatch
   * (no reads, clears or uploads) and make fewer than MAX_PENDING dispatches.
   */
  async timeGpu(record: () => void): Promise<number | null> {
    if (!this.hasTimestamps) return null;
    this.flush();
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 });
    const resolved = this.device.createBuffer({ size: 16, usage: QUERY_RESOLVE | COPY_SRC });
    const staging = this.device.createBuffer({ size: 16, usage: MAP_READ | COPY_DST });
    const enc = this.commandEncoder();
    const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    this.pass = pass;
    record();
    if (this.pass !== pass || this.encoder !== enc) {
      throw new Error('timeGpu: the recorded work left its compute pass (a clear, copy, read or more than MAX_PENDING dispatches)');
    }
    this.endPass();
    enc.resolveQuerySet(querySet, 0, 2, resolved, 0);
    enc.copyBufferToBuffer(resolved, 0, staging, 0, 16);
    this.flush();
    await staging.mapAsync(MAP_MODE_READ);
    const [t0, t1] = new BigInt64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    [staging, resolved].forEach((b) => b.destroy());
    querySet.destroy();
    return Number(t1 - t0) / 1e9;
  }

  /** How many more dispatches fit in the current batch (for timeGpu callers). */
  get dispatchesLeftInBatch(): number {
    return MAX_PENDING - this.pending;
  }

  // ---- recording ----

  protected check(st: Storage): GpuStorage {
    const s = st as GpuStorage;
    if (!(s instanceof GpuStorage)) throw new Error('webgpu: storage from another backend');
    if (s.freed) throw new Error('webgpu: use of a freed storage');
    return s;
  }

  protected commandEncoder(): GpuEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  protected endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  protected clear(buf: GpuBuffer): void {
    const enc = this.commandEncoder();
    this.endPass();
    enc.clearBuffer(buf);
    this.pendingBuffers.add(buf);
  }

  private pipeline(kernel: KernelName, entry: string, constants?: Record<string, number>): GpuPipeline {
    const key = `${kernel}:${entry}:${constants ? JSON.stringify(constants) : ''}`;
    let p = this.pipelines.get(key);
    if (!p) {
      p = this.device.createComputePipeline({
        layout: 'auto',
        compute: { module: this.modules.get(kernel)!, entryPoint: entry, constants },
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /**
   * Record one dispatch: binding 0 is this dispatch's uniform slot (params), bindings 1.. are
   * `bufs` in order (null skips a number that this entry point does not use).
   */
  protected dispatch(
    kernel: KernelName, entry: string, constants: Record<string, number> | undefined,
    params: ParamBlock, bufs: Binding[], grid: [number, number, number],
  ): void {
    if (grid[0] * grid[1] * grid[2] === 0) return;
    if (this.destroyed) throw new Error('webgpu: backend used after destroy()');
    if (this.pending === MAX_PENDING) this.flush();
    const pipeline = this.pipeline(kernel, entry, constants);
    const slot = this.pending++;
    this.uniformHost.set(new Uint8Array(params.u.buffer), slot * SLOT);
    const entries = [{ binding: 0, resource: { buffer: this.uniforms, offset: slot * SLOT, size: SLOT } }];
    const maxBinding = this.limits.maxStorageBufferBindingSize;
    bufs.forEach((b, i) => {
      if (!b) return;
      const buffer = b instanceof GpuStorage ? this.check(b).buffer : b instanceof GpuWindow ? b.buffer : b;
      const offset = b instanceof GpuWindow ? b.offset : 0, size = b instanceof GpuWindow ? b.size : buffer.size;
      if (size > maxBinding) {
        throw new UserError(
          `webgpu ${kernel}.${entry}: binding ${i + 1} is ${mib(size)}, above this GPU's maxStorageBufferBindingSize (${mib(maxBinding)}), ` +
            'and this op cannot split it; use a smaller batch size, sequence length or model',
        );
      }
      entries.push({ binding: i + 1, resource: { buffer, offset, size } });
      this.pendingBuffers.add(buffer);
    });
    const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    this.commandEncoder();
    this.pass ??= this.encoder!.beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(...grid);
    this.stats.dispatches++;
  }

  /** Workgroups for `threads` threads in groups of `size`, folded into 2-D past the limit. */
  protected grid1d(threads: number, size = 256): [number, number, number] {
    const groups = Math.ceil(threads / size);
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (groups <= maxDim) return [groups, 1, 1];
    return [maxDim, Math.ceil(groups / maxDim), 1];
  }
}
