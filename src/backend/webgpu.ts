// The WebGPU backend: every Backend method as a WGSL compute kernel (kernels/*.wgsl), plus the
// fused kernels of fused.ts. Tested op by op against the CPU reference (test/webgpu*.test.ts).
//
// How it runs:
//   - Device. In a browser from navigator.gpu; in Node from the `webgpu` npm package (Dawn),
//     imported only there and only dynamically, so this file also bundles for the browser.
//     The device is created with the adapter's real limits (the defaults are far smaller:
//     128 MiB per storage binding instead of what the GPU can do).
//   - Memory. A Storage wraps a GPUBuffer. Freed buffers go back to a pool keyed by byte size,
//     so a training step that repeats the same shapes allocates nothing new after the first.
//   - Execution. Kernels are not submitted one by one: dispatches are recorded into one
//     command encoder and submitted in batches (every MAX_PENDING dispatches, and whenever the
//     host reads). Each dispatch's parameters (sizes, strides) go into its own 256-byte slot of
//     a uniform buffer that is written once per batch, just before the submit.
//   - Ordering. Commands run in the order they were recorded, with the barriers WebGPU adds
//     between dispatches, so a buffer freed by one op and reused by the next is safe. The one
//     exception is queue.writeBuffer (used by upload), which runs before commands that are
//     recorded but not yet submitted: uploading into a pooled buffer that pending commands
//     still read therefore submits those commands first.
//   - Errors. A kernel cannot throw. gather / scatterAdd record an out-of-range index in a
//     small error buffer; the next read() reports it as a RangeError.
import {
  type Backend, type BinaryOp, type DType, type HostArray, type MatmulParams, type ReduceOp,
  type Storage, type UnaryOp, broadcastStrides, sizeOf, stridesOf,
} from './backend.ts';
import { type AdamWParams, type AttentionShape, type FusedKernels, NS_COEFFS, NS_EPS, NS_STEPS } from './fused.ts';
import { kernelSource } from './kernels.ts';
import { isNode } from './platform.ts';
import { UserError } from '../util/errors.ts';

// ---------------------------------------------------------------------------------------
// The slice of the WebGPU API this file uses. Declared locally because @webgpu/types is not
// a dependency (TypeScript's DOM library does not include WebGPU yet).
// ---------------------------------------------------------------------------------------

interface GpuBuffer {
  readonly size: number;
  mapAsync(mode: number): Promise<void>;
  getMappedRange(offset?: number, size?: number): ArrayBuffer;
  unmap(): void;
  destroy(): void;
}
interface GpuComputePass {
  setPipeline(p: GpuPipeline): void;
  setBindGroup(index: number, group: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
interface GpuEncoder {
  beginComputePass(desc?: { timestampWrites?: unknown }): GpuComputePass;
  copyBufferToBuffer(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void;
  clearBuffer(buf: GpuBuffer, offset?: number, size?: number): void;
  resolveQuerySet(q: unknown, first: number, count: number, dst: GpuBuffer, offset: number): void;
  finish(): unknown;
}
interface GpuPipeline {
  getBindGroupLayout(index: number): unknown;
}
interface GpuShaderModule {
  getCompilationInfo(): Promise<{ messages: readonly { type: string; message: string; lineNum: number; linePos: number }[] }>;
}
interface GpuQueue {
  submit(commands: unknown[]): void;
  writeBuffer(buf: GpuBuffer, offset: number, data: ArrayBufferLike, dataOffset?: number, size?: number): void;
  onSubmittedWorkDone(): Promise<void>;
}
interface GpuDevice {
  readonly limits: Record<string, number>;
  readonly features: ReadonlySet<string>;
  readonly queue: GpuQueue;
  readonly lost: Promise<{ reason: string; message: string }>;
  createBuffer(desc: { size: number; usage: number; mappedAtCreation?: boolean }): GpuBuffer;
  createShaderModule(desc: { code: string }): GpuShaderModule;
  createComputePipeline(desc: {
    layout: 'auto';
    compute: { module: GpuShaderModule; entryPoint: string; constants?: Record<string, number> };
  }): GpuPipeline;
  createBindGroup(desc: { layout: unknown; entries: { binding: number; resource: { buffer: GpuBuffer; offset?: number; size?: number } }[] }): unknown;
  createCommandEncoder(): GpuEncoder;
  createQuerySet(desc: { type: 'timestamp'; count: number }): { destroy(): void };
  pushErrorScope(filter: 'validation' | 'out-of-memory' | 'internal'): void;
  popErrorScope(): Promise<{ message: string } | null>;
  addEventListener?(type: 'uncapturederror', fn: (e: { error: { message: string } }) => void): void;
  destroy(): void;
}
interface GpuAdapterInfo {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
}
interface GpuAdapter {
  readonly limits: Record<string, number>;
  readonly features: ReadonlySet<string>;
  readonly info?: GpuAdapterInfo;
  requestDevice(desc?: { requiredLimits?: Record<string, number>; requiredFeatures?: string[] }): Promise<GpuDevice>;
}
/** What navigator.gpu and the `webgpu` package's create() return. */
export interface GpuEntry {
  requestAdapter(opts?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<GpuAdapter | null>;
}

// GPUBufferUsage and GPUMapMode bits (fixed by the WebGPU spec).
const MAP_READ = 0x0001, COPY_SRC = 0x0004, COPY_DST = 0x0008, UNIFORM = 0x0040, STORAGE = 0x0080, QUERY_RESOLVE = 0x0200;
const MAP_MODE_READ = 0x0001;

/** Every kernel file, compiled when the backend is created (kernels/NAME.wgsl). */
const KERNELS = [
  'unary', 'binary', 'where', 'expand', 'reduce', 'matmul', 'permute', 'slice', 'gather', 'scatter_add',
  'cross_entropy', 'rmsnorm', 'rope', 'attention', 'adamw', 'newton_schulz',
] as const;
type KernelName = (typeof KERNELS)[number];

const UNARY_CODES: Record<UnaryOp, number> = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, tanh: 5, sigmoid: 6, relu: 7, powScalar: 8, mulScalar: 9, addScalar: 10,
};
const BINARY_CODES: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3, lt: 4, gt: 5, eq: 6 };

/** Dispatches recorded before a submit is forced (each owns one 256-byte uniform slot). */
const MAX_PENDING = 128;
const SLOT = 256; // bytes per uniform slot: minUniformBufferOffsetAlignment is at most 256
const MAX_RANK = 8; // dims the broadcast / permute kernels index (two vec4<u32>)

// ---------------------------------------------------------------------------------------
// Device creation
// ---------------------------------------------------------------------------------------

export interface WebGPUOptions {
  /** A GPU entry to use instead of navigator.gpu / the webgpu package (e.g. a bundle's own). */
  gpu?: GpuEntry;
  /** Dawn toggles for the Node path, e.g. ['enable-dawn-features=allow_unsafe_apis']. */
  dawnFlags?: string[];
  /** Ask for the timestamp-query feature (benchmarks), when the adapter has it. */
  timestamps?: boolean;
}

/** navigator.gpu in a browser; Dawn from the `webgpu` package in Node. */
async function gpuEntry(opts: WebGPUOptions): Promise<GpuEntry> {
  if (opts.gpu) return opts.gpu;
  const nav = (globalThis as { navigator?: { gpu?: GpuEntry } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (isNode()) {
    // A module name in a variable: bundlers for the browser leave this import alone.
    const pkg = 'webgpu';
    let mod: { create(flags: string[]): GpuEntry; globals: object };
    try {
      mod = await import(/* @vite-ignore */ pkg);
    } catch (e) {
      throw new UserError(`webgpu: cannot load the 'webgpu' package (Dawn for Node): ${(e as Error).message}; run npm ci`);
    }
    Object.assign(globalThis, mod.globals); // GPUBufferUsage etc., as a browser would have them
    return mod.create(opts.dawnFlags ?? []);
  }
  throw new UserError('webgpu: this browser has no WebGPU (navigator.gpu is missing); try a recent Chrome or Edge');
}

const NO_ADAPTER =
  'webgpu: no GPU adapter found. Without a GPU, Dawn can run on SwiftShader, a CPU Vulkan driver: ' +
  'install Debian\'s chromium and libvulkan1, then set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json ' +
  '(and XDG_RUNTIME_DIR=/tmp); or use --backend cpu';

/** Limits worth raising from WebGPU's defaults to what the adapter really offers. */
const WANTED_LIMITS = [
  'maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ', 'maxComputeWorkgroupsPerDimension', 'maxStorageBuffersPerShaderStage',
];

export async function createWebGPUBackend(opts: WebGPUOptions = {}): Promise<WebGPUBackend> {
  const gpu = await gpuEntry(opts);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new UserError(NO_ADAPTER);
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) if (typeof adapter.limits[k] === 'number') requiredLimits[k] = adapter.limits[k];
  const requiredFeatures = opts.timestamps && adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  // Load and compile every kernel now: Backend methods are synchronous, loading is not.
  const modules = new Map<KernelName, GpuShaderModule>();
  for (const name of KERNELS) {
    const code = await kernelSource(name);
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length) {
      device.destroy();
      throw new Error(`webgpu: kernels/${name}.wgsl does not compile:\n` + errors.map((m) => `  ${m.lineNum}:${m.linePos} ${m.message}`).join('\n'));
    }
    modules.set(name, module);
  }
  return new WebGPUBackend(device, adapter, modules, gpu);
}

// ---------------------------------------------------------------------------------------
// Storage, and the per-dispatch parameter block
// ---------------------------------------------------------------------------------------

/** A GPU buffer holding `length` elements of `dtype`. */
export class GpuStorage implements Storage {
  freed = false;
  constructor(readonly buffer: GpuBuffer, readonly length: number, readonly dtype: DType) {}
}

/**
 * The bytes of one kernel's `Params` uniform struct, written field by field in the struct's
 * order. WGSL's uniform layout: 4-byte scalars packed, vec4 and arrays of vec4 on 16 bytes.
 */
class ParamBlock {
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

function pad8(xs: number[]): number[] {
  return [...xs, ...new Array(Math.max(0, MAX_RANK - xs.length)).fill(0)];
}

// ---------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------

type Binding = GpuStorage | GpuBuffer | null; // null: a binding this entry point does not use

export class WebGPUBackend implements Backend, FusedKernels {
  readonly name = 'webgpu';
  readonly limits: Record<string, number>;
  readonly adapterInfo: GpuAdapterInfo;
  readonly hasTimestamps: boolean;

  private readonly pipelines = new Map<string, GpuPipeline>();
  private readonly pool = new Map<number, GpuBuffer[]>(); // free buffers by byte size
  private readonly readPool = new Map<number, GpuBuffer[]>(); // MAP_READ staging buffers
  private live = 0; // bytes held by live storages
  private peak = 0; // the most `live` has been since resetPeak()
  private pooled = 0; // bytes held by the pool

  // the batch being recorded
  private encoder: GpuEncoder | null = null;
  private pass: GpuComputePass | null = null;
  private pending = 0; // dispatches in this batch
  private readonly uniformHost = new Uint8Array(MAX_PENDING * SLOT);
  private readonly uniforms: GpuBuffer;
  private readonly pendingBuffers = new Set<GpuBuffer>(); // read or written by recorded commands

  private readonly errors: GpuBuffer; // 4 x u32 written by gather / scatterAdd on a bad index
  private errorsMayBeSet = false;
  private deviceError: string | null = null;
  private destroyed = false;
  /** Matmul may use 16-byte loads where the layout allows (tests switch it off to compare). */
  vectorLoads = true;
  /** Dispatches and submits since creation (for tests and the benchmark). */
  readonly stats = { dispatches: 0, submits: 0, buffersCreated: 0 };

  constructor(
    readonly device: GpuDevice, adapter: GpuAdapter, private readonly modules: Map<KernelName, GpuShaderModule>,
    // Held for the backend's lifetime: in Node, Dawn's instance is freed when its JS object is
    // garbage-collected, and the device's event processing then crashes the process.
    private readonly gpu: GpuEntry,
  ) {
    this.limits = device.limits;
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

  // ---- memory ----

  private alloc(length: number, dtype: DType): GpuStorage {
    const bytes = Math.max(16, Math.ceil((length * 4) / 16) * 16);
    const lim = Math.min(this.limits.maxStorageBufferBindingSize, this.limits.maxBufferSize);
    if (bytes > lim) {
      const which = this.limits.maxStorageBufferBindingSize <= this.limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
      throw new UserError(
        `webgpu: a tensor of ${length} ${dtype} values (${mib(bytes)}) is larger than this GPU's ${which} ` +
          `(${mib(lim)}); use a smaller batch size, sequence length or model (vocabulary x tokens for the logits)`,
      );
    }
    const free = this.pool.get(bytes);
    let buffer = free?.pop();
    if (buffer) this.pooled -= bytes;
    else {
      buffer = this.device.createBuffer({ size: bytes, usage: STORAGE | COPY_SRC | COPY_DST });
      this.stats.buffersCreated++;
    }
    this.live += bytes;
    if (this.live > this.peak) this.peak = this.live;
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
    this.live -= bytes;
    this.pooled += bytes;
    const list = this.pool.get(bytes) ?? [];
    list.push(s.buffer);
    this.pool.set(bytes, list);
  }

  bytesInUse(): number {
    return this.live;
  }
  peakBytes(): number {
    return this.peak;
  }
  resetPeak(): void {
    this.peak = this.live;
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

  private check(st: Storage): GpuStorage {
    const s = st as GpuStorage;
    if (!(s instanceof GpuStorage)) throw new Error('webgpu: storage from another backend');
    if (s.freed) throw new Error('webgpu: use of a freed storage');
    return s;
  }

  private commandEncoder(): GpuEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  private clear(buf: GpuBuffer): void {
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
  private dispatch(
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
    bufs.forEach((b, i) => {
      if (!b) return;
      const buffer = b instanceof GpuStorage ? this.check(b).buffer : b;
      entries.push({ binding: i + 1, resource: { buffer, offset: 0, size: buffer.size } });
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
  private grid1d(threads: number, size = 256): [number, number, number] {
    const groups = Math.ceil(threads / size);
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (groups <= maxDim) return [groups, 1, 1];
    return [maxDim, Math.ceil(groups / maxDim), 1];
  }

  // ---- elementwise ----

  unary(op: UnaryOp, x: Storage, param: number): Storage {
    const xs = this.check(x);
    const y = this.alloc(xs.length, 'float32');
    const p = new ParamBlock().u32(xs.length).f32(param);
    this.dispatch('unary', 'main', { OP: UNARY_CODES[op] }, p, [xs, y], this.grid1d(xs.length));
    return y;
  }

  binary(op: BinaryOp, a: Storage, aShape: number[], b: Storage, bShape: number[], outShape: number[]): Storage {
    const n = sizeOf(outShape);
    const y = this.alloc(n, 'float32');
    checkRank('binary', outShape);
    const mode = sizeOf(aShape) === n && sizeOf(bShape) === n ? 1 : sizeOf(aShape) === n && sizeOf(bShape) === 1 ? 2 : 0;
    const p = new ParamBlock().u32(n, outShape.length, mode, 0)
      .vec(pad8(outShape), 8).vec(pad8(broadcastStrides(aShape, outShape)), 8).vec(pad8(broadcastStrides(bShape, outShape)), 8);
    this.dispatch('binary', 'main', { OP: BINARY_CODES[op] }, p, [this.check(a), this.check(b), y], this.grid1d(n));
    return y;
  }

  where(c: Storage, cShape: number[], a: Storage, aShape: number[], b: Storage, bShape: number[], outShape: number[]): Storage {
    const n = sizeOf(outShape);
    const y = this.alloc(n, 'float32');
    checkRank('where', outShape);
    const p = new ParamBlock().u32(n, outShape.length, 0, 0).vec(pad8(outShape), 8)
      .vec(pad8(broadcastStrides(cShape, outShape)), 8).vec(pad8(broadcastStrides(aShape, outShape)), 8)
      .vec(pad8(broadcastStrides(bShape, outShape)), 8);
    this.dispatch('where', 'main', undefined, p, [this.check(c), this.check(a), this.check(b), y], this.grid1d(n));
    return y;
  }

  expand(x: Storage, xShape: number[], outShape: number[]): Storage {
    const n = sizeOf(outShape);
    const y = this.alloc(n, 'float32');
    checkRank('expand', outShape);
    const p = new ParamBlock().u32(n, outShape.length, 0, 0).vec(pad8(outShape), 8).vec(pad8(broadcastStrides(xShape, outShape)), 8);
    this.dispatch('expand', 'main', undefined, p, [this.check(x), y], this.grid1d(n));
    return y;
  }

  // ---- reductions ----

  reduce(op: ReduceOp, x: Storage, shape: number[], axis: number): Storage {
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const y = this.alloc(outer * inner, 'float32');
    const p = new ParamBlock().u32(outer, n, inner);
    const OP = op === 'sum' ? 0 : 1;
    if (inner === 1) this.dispatch('reduce', 'reduce_rows', { OP }, p, [this.check(x), y], this.grid1d(outer, 1));
    else this.dispatch('reduce', 'reduce_cols', { OP }, p, [this.check(x), y], this.grid1d(outer * Math.ceil(inner / 16), 1));
    return y;
  }

  // ---- matmul ----

  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    const { M, K, N } = p;
    const nb = sizeOf(p.batch);
    const y = this.alloc(nb * M * N, 'float32');
    if (p.batch.length > 4) throw new Error(`webgpu matmul: at most 4 batch dims, got [${p.batch}]`);
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (nb > maxDim) throw new Error(`webgpu matmul: ${nb} matrices in one batch; at most ${maxDim}`);
    const pad4 = (xs: number[]) => [...xs, 0, 0, 0, 0].slice(0, 4);
    const ps = new ParamBlock().u32(M, N, K, p.batch.length)
      .vec(pad4(p.batch), 4).vec(pad4(batchStrides(p.batchA, p.batch)), 4).vec(pad4(batchStrides(p.batchB, p.batch)), 4);
    if (K === 0) {
      this.clear(y.buffer); // an empty sum: zeros
      return y;
    }
    // vec4 loads when an operand's contiguous dim is a multiple of 4 (then every row, and
    // every matrix of the batch, starts on a 16-byte boundary)
    const vecA = (p.transA ? M : K) % 4 === 0, vecB = (p.transB ? K : N) % 4 === 0;
    const constants = { TRANS_A: +p.transA, TRANS_B: +p.transB, VEC_A: +(vecA && this.vectorLoads), VEC_B: +(vecB && this.vectorLoads) };
    const [as, bs] = [this.check(a), this.check(b)];
    this.dispatch('matmul', 'main', constants, ps, [as, bs, y, as, bs], [Math.ceil(N / 64), Math.ceil(M / 64), nb]);
    return y;
  }

  // ---- layout ----

  permute(x: Storage, shape: number[], perm: number[]): Storage {
    const n = sizeOf(shape);
    const y = this.alloc(n, 'float32');
    checkRank('permute', shape);
    const inStr = stridesOf(shape);
    const p = new ParamBlock().u32(n, shape.length, 0, 0).vec(pad8(perm.map((d) => shape[d])), 8).vec(pad8(perm.map((d) => inStr[d])), 8);
    this.dispatch('permute', 'main', undefined, p, [this.check(x), y], this.grid1d(n));
    return y;
  }

  /** Copy `count` positions along an axis, from x[srcOff..] to y[dstOff..] (slice.wgsl). */
  private copyAxis(x: GpuStorage, y: GpuStorage, outer: number, inner: number, count: number, xLen: number, yLen: number, srcOff: number, dstOff: number): void {
    const p = new ParamBlock().u32(outer, inner, count, xLen, yLen, srcOff, dstOff);
    this.dispatch('slice', 'main', undefined, p, [x, y], this.grid1d(outer * count * inner));
  }

  slice(x: Storage, shape: number[], axis: number, start: number, end: number): Storage {
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const y = this.alloc(outer * (end - start) * inner, 'float32');
    this.copyAxis(this.check(x), y, outer, inner, end - start, n, end - start, start, 0);
    return y;
  }

  pad(x: Storage, shape: number[], axis: number, before: number, after: number): Storage {
    const outer = sizeOf(shape.slice(0, axis)), n = shape[axis], inner = sizeOf(shape.slice(axis + 1));
    const m = n + before + after;
    const y = this.alloc(outer * m * inner, 'float32');
    this.clear(y.buffer);
    this.copyAxis(this.check(x), y, outer, inner, n, n, m, 0, before);
    return y;
  }

  /** In place: the same kernel as slice/pad/concat (slice.wgsl), writing into an existing y. */
  writeSlice(dst: Storage, dstShape: number[], src: Storage, srcShape: number[], axis: number, start: number): void {
    const outer = sizeOf(dstShape.slice(0, axis)), inner = sizeOf(dstShape.slice(axis + 1));
    const n = srcShape[axis];
    this.copyAxis(this.check(src), this.check(dst), outer, inner, n, n, dstShape[axis], 0, start);
  }

  concat(xs: Storage[], shapes: number[][], axis: number): Storage {
    const outer = sizeOf(shapes[0].slice(0, axis)), inner = sizeOf(shapes[0].slice(axis + 1));
    const total = shapes.reduce((s, sh) => s + sh[axis], 0);
    const y = this.alloc(outer * total * inner, 'float32');
    let off = 0;
    xs.forEach((x, k) => {
      const n = shapes[k][axis];
      this.copyAxis(this.check(x), y, outer, inner, n, n, total, 0, off);
      off += n;
    });
    return y;
  }

  // ---- embedding ----

  gather(table: Storage, V: number, C: number, idx: Storage, N: number): Storage {
    const y = this.alloc(N * C, 'float32');
    const p = new ParamBlock().u32(N, C, V);
    this.dispatch('gather', 'main', undefined, p, [this.check(table), this.check(idx), y, this.errors], this.grid1d(N * C));
    this.errorsMayBeSet = true;
    return y;
  }

  scatterAdd(src: Storage, N: number, C: number, idx: Storage, V: number): Storage {
    const y = this.alloc(V * C, 'float32');
    const s = this.check(src), ix = this.check(idx);
    const counts = this.alloc(V, 'int32'), offsets = this.alloc(V + 1, 'int32'), list = this.alloc(N, 'int32');
    this.clear(counts.buffer);
    const p = new ParamBlock().u32(N, C, V);
    // bindings: 1 src, 2 idx, 3 out, 4 counts, 5 offsets, 6 list, 7 errors (see scatter_add.wgsl)
    this.dispatch('scatter_add', 'count', undefined, p, [null, ix, null, counts, null, null, this.errors], this.grid1d(N));
    this.dispatch('scatter_add', 'scan', undefined, p, [null, null, null, counts, offsets, null, null], [1, 1, 1]);
    this.dispatch('scatter_add', 'place', undefined, p, [null, ix, null, null, offsets, list, null], this.grid1d(N));
    if (V * C > 0) this.dispatch('scatter_add', 'accumulate', undefined, p, [s, null, y, null, offsets, list, null], this.grid1d(V * C));
    this.errorsMayBeSet = true;
    // back to the pool: commands recorded later run after these, so reuse is safe
    this.free(counts);
    this.free(offsets);
    this.free(list);
    return y;
  }

  // ---------------------------------------------------------------------------------------
  // Fused kernels (fused.ts). Reference: cpu-fused.ts.
  // ---------------------------------------------------------------------------------------

  crossEntropyForward(logits: Storage, targets: Storage, N: number, V: number): { loss: Storage; lse: Storage } {
    const lse = this.alloc(N, 'float32'), loss = this.alloc(1, 'float32'), rowLoss = this.alloc(N, 'float32');
    const p = new ParamBlock().u32(N, V);
    // bindings: 1 logits, 2 targets, 3 lse, 4 rowLoss, 5 loss, 6 dloss, 7 dlogits, 8 errors, 9 count
    this.dispatch('cross_entropy', 'forward', undefined, p, [this.check(logits), this.check(targets), lse, rowLoss, null, null, null, this.errors], this.grid1d(N, 1));
    this.dispatch('cross_entropy', 'finalize', undefined, p, [null, this.check(targets), null, rowLoss, loss], [1, 1, 1]);
    this.errorsMayBeSet = true;
    this.free(rowLoss);
    return { loss, lse };
  }

  crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, dloss: Storage, N: number, V: number): Storage {
    const dx = this.alloc(N * V, 'float32'), count = this.alloc(1, 'float32');
    const p = new ParamBlock().u32(N, V);
    const t = this.check(targets);
    this.dispatch('cross_entropy', 'count_rows', undefined, p, [null, t, null, null, null, null, null, null, count], [1, 1, 1]);
    this.dispatch('cross_entropy', 'backward', undefined, p, [this.check(logits), t, this.check(lse), null, null, this.check(dloss), dx, null, count], this.grid1d(N * V));
    this.free(count);
    return dx;
  }

  // the log-probs of target tokens: the same kernel file, bindings 10 logp and 11 dlogp
  targetLogprobsForward(logits: Storage, targets: Storage, M: number, V: number): { logp: Storage; lse: Storage } {
    const lse = this.alloc(M, 'float32'), logp = this.alloc(M, 'float32');
    const bufs: Binding[] = [this.check(logits), this.check(targets), lse, null, null, null, null, this.errors, null, logp];
    this.dispatch('cross_entropy', 'logprob_forward', undefined, new ParamBlock().u32(M, V), bufs, this.grid1d(M, 1));
    this.errorsMayBeSet = true;
    return { logp, lse };
  }

  targetLogprobsBackward(logits: Storage, targets: Storage, lse: Storage, dlogp: Storage, M: number, V: number): Storage {
    const dx = this.alloc(M * V, 'float32');
    const bufs: Binding[] = [this.check(logits), this.check(targets), this.check(lse), null, null, null, dx, null, null, null, this.check(dlogp)];
    this.dispatch('cross_entropy', 'logprob_backward', undefined, new ParamBlock().u32(M, V), bufs, this.grid1d(M * V));
    return dx;
  }

  rmsnormForward(x: Storage, weight: Storage | null, R: number, C: number, eps: number): { y: Storage; rstd: Storage } {
    const y = this.alloc(R * C, 'float32'), rstd = this.alloc(R, 'float32');
    const xs = this.check(x);
    const p = new ParamBlock().u32(R, C).f32(eps);
    // without a weight, x stands in for the unused binding (read-only aliasing is allowed)
    const w = weight ? this.check(weight) : xs;
    this.dispatch('rmsnorm', 'forward', { HAS_WEIGHT: weight ? 1 : 0 }, p, [xs, w, y, rstd], this.grid1d(R, 1));
    return { y, rstd };
  }

  rmsnormBackward(dy: Storage, x: Storage, weight: Storage | null, rstd: Storage, R: number, C: number): { dx: Storage; dweight: Storage | null } {
    const dx = this.alloc(R * C, 'float32');
    const xs = this.check(x), r = this.check(rstd), d = this.check(dy);
    const w = weight ? this.check(weight) : xs;
    const p = new ParamBlock().u32(R, C).f32(0);
    // bindings: 1 x, 2 w, 3 y, 4 rstd, 5 dy, 6 dx, 7 dw
    this.dispatch('rmsnorm', 'backward_dx', { HAS_WEIGHT: weight ? 1 : 0 }, p, [xs, w, null, r, d, dx], this.grid1d(R, 1));
    let dweight: GpuStorage | null = null;
    if (weight) {
      dweight = this.alloc(C, 'float32');
      this.dispatch('rmsnorm', 'backward_dw', undefined, p, [xs, null, null, r, d, null, dweight], [Math.ceil(C / 256), 1, 1]);
    }
    return { dx, dweight };
  }

  rope(x: Storage, cos: Storage, sin: Storage, R: number, T: number, HS: number, inverse: boolean): Storage {
    const n = R * T * HS;
    const y = this.alloc(n, 'float32');
    const p = new ParamBlock().u32(n, T, HS);
    this.dispatch('rope', 'main', { SIGN: inverse ? -1 : 1 }, p, [this.check(x), this.check(cos), this.check(sin), y], this.grid1d(n));
    return y;
  }

  private attentionParams(s: AttentionShape): ParamBlock {
    if (s.HS > 128) throw new Error(`webgpu attention: head size ${s.HS} is above the kernel's 128`);
    if (s.NH % s.NKV !== 0) throw new Error(`webgpu attention: ${s.NH} query heads is not a multiple of ${s.NKV} KV heads`);
    if (s.S < s.T) throw new Error(`webgpu attention: ${s.S} keys for ${s.T} queries; need S >= T`);
    return new ParamBlock().u32(s.B, s.NH, s.NKV, s.T, s.S, s.HS, s.causal ? 1 : 0).f32(1 / Math.sqrt(s.HS));
  }

  attentionForward(q: Storage, k: Storage, v: Storage, s: AttentionShape): { out: Storage; lse: Storage } {
    const p = this.attentionParams(s);
    const out = this.alloc(s.B * s.NH * s.T * s.HS, 'float32'), lse = this.alloc(s.B * s.NH * s.T, 'float32');
    // bindings: 1 q, 2 k, 3 v, 4 out, 5 lse (6 dout, 7 dq, 8 dk, 9 dv, 10 D: backward)
    this.dispatch('attention', 'forward', undefined, p, [this.check(q), this.check(k), this.check(v), out, lse], [Math.ceil(s.T / 64), s.B * s.NH, 1]);
    return { out, lse };
  }

  attentionBackward(dout: Storage, q: Storage, k: Storage, v: Storage, out: Storage, lse: Storage, s: AttentionShape): { dq: Storage; dk: Storage; dv: Storage } {
    const p = this.attentionParams(s);
    const nq = s.B * s.NH * s.T * s.HS, nkv = s.B * s.NKV * s.S * s.HS;
    const dq = this.alloc(nq, 'float32'), dk = this.alloc(nkv, 'float32'), dv = this.alloc(nkv, 'float32');
    const D = this.alloc(s.B * s.NH * s.T, 'float32');
    const [qs, ks, vs, os, ls, ds] = [q, k, v, out, lse, dout].map((x) => this.check(x));
    this.dispatch('attention', 'backward_d', undefined, p, [null, null, null, os, null, ds, null, null, null, D], this.grid1d(s.B * s.NH * s.T, 64));
    this.dispatch('attention', 'backward_dq', undefined, p, [qs, ks, vs, null, ls, ds, dq, null, null, D], [Math.ceil(s.T / 64), s.B * s.NH, 1]);
    this.dispatch('attention', 'backward_dkv', undefined, p, [qs, ks, vs, null, ls, ds, null, dk, dv, D], [Math.ceil(s.S / 64), s.B * s.NKV, 1]);
    this.free(D);
    return { dq, dk, dv };
  }

  adamwUpdate(param: Storage, grad: Storage, m: Storage, v: Storage, n: number, a: AdamWParams): void {
    const p = new ParamBlock().u32(n).f32(a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, 1 - a.beta1 ** a.step, 1 - a.beta2 ** a.step);
    this.dispatch('adamw', 'main', undefined, p, [this.check(param), this.check(grad), this.check(m), this.check(v)], this.grid1d(n));
  }

  /** y = alpha x + beta z (newton_schulz.wgsl). */
  private axpby(alpha: number, x: GpuStorage, beta: number, z: GpuStorage): GpuStorage {
    const y = this.alloc(x.length, 'float32');
    const p = new ParamBlock().u32(x.length).f32(alpha, beta, 0);
    this.dispatch('newton_schulz', 'axpby', undefined, p, [x, z, y], this.grid1d(x.length));
    return y;
  }

  newtonSchulz(g: Storage, rows: number, cols: number, steps = NS_STEPS): Storage {
    const [a, b, c] = NS_COEFFS;
    const n = rows * cols;
    // the wide orientation: r <= w, so that A = X Xᵀ is the small (r, r) Gram matrix
    const tall = rows > cols;
    const r = tall ? cols : rows, w = tall ? rows : cols;
    const G = tall ? (this.permute(g, [rows, cols], [1, 0]) as GpuStorage) : this.check(g);
    const inv = this.alloc(1, 'float32');
    let X = this.alloc(n, 'float32');
    const p = new ParamBlock().u32(n).f32(0, 0, NS_EPS);
    // bindings: 1 x, 2 z, 3 y, 4 s
    this.dispatch('newton_schulz', 'inv_norm', undefined, p, [G, null, null, inv], [1, 1, 1]);
    this.dispatch('newton_schulz', 'scale', undefined, p, [G, null, X, inv], this.grid1d(n));
    if (tall) this.free(G);
    this.free(inv);
    const mm = (A: GpuStorage, B: GpuStorage, M: number, K: number, N: number, transB: boolean) =>
      this.matmul(A, B, { batchA: [], batchB: [], batch: [], M, K, N, transA: false, transB }) as GpuStorage;
    for (let it = 0; it < steps; it++) {
      const A = mm(X, X, r, w, r, true); // X Xᵀ (r, r)
      const AA = mm(A, A, r, r, r, false);
      const Bm = this.axpby(b, A, c, AA); // b A + c A²
      const BX = mm(Bm, X, r, r, w, false); // (r, w)
      const next = this.axpby(a, X, 1, BX);
      [A, AA, Bm, BX, X].forEach((s) => this.free(s));
      X = next;
    }
    if (!tall) return X;
    const out = this.permute(X, [r, w], [1, 0]); // (r, w) -> (rows, cols)
    this.free(X);
    return out;
  }
}

function checkRank(op: string, shape: number[]): void {
  if (shape.length > MAX_RANK) throw new Error(`webgpu ${op}: rank ${shape.length} is above the kernels' ${MAX_RANK}; reshape first`);
}

/** Strides, in whole matrices, of an operand's batch dims as broadcast to `batch` (0 = shared). */
function batchStrides(own: number[], batch: number[]): number[] {
  const padded = [...new Array(batch.length - own.length).fill(1), ...own];
  return broadcastStrides(padded, batch);
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
