// The WebGPU device: the slice of the WebGPU API the backend uses, where the GPU comes from,
// and what is set up once before the first op (the rest of the backend: webgpu.ts).
//
//   - Where. In a browser from navigator.gpu; in Node from the `webgpu` npm package (Dawn),
//     imported only there and only dynamically, so this file also bundles for the browser.
//   - Limits. The device is created with the adapter's real limits (the defaults are far
//     smaller: 128 MiB per storage binding instead of what the GPU can do). The backend may be
//     told to act as if the buffer limits were lower (WebGPUOptions.limits): then the same
//     splitting that a big tensor needs on a real GPU runs on small tensors (the tests).
//   - Kernels. Every kernels/NAME.wgsl is loaded and compiled here, up front: Backend methods
//     are synchronous, and loading a file is not.
import { kernelSource } from './kernels.ts';
import { isNode } from './platform.ts';
import { UserError } from '../util/errors.ts';

// ---------------------------------------------------------------------------------------
// The slice of the WebGPU API the backend uses. Declared locally because @webgpu/types is
// not a dependency (TypeScript's DOM library does not include WebGPU yet).
// ---------------------------------------------------------------------------------------

export interface GpuBuffer {
  readonly size: number;
  mapAsync(mode: number): Promise<void>;
  getMappedRange(offset?: number, size?: number): ArrayBuffer;
  unmap(): void;
  destroy(): void;
}
export interface GpuComputePass {
  setPipeline(p: GpuPipeline): void;
  setBindGroup(index: number, group: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
export interface GpuEncoder {
  beginComputePass(desc?: { timestampWrites?: unknown }): GpuComputePass;
  copyBufferToBuffer(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void;
  clearBuffer(buf: GpuBuffer, offset?: number, size?: number): void;
  resolveQuerySet(q: unknown, first: number, count: number, dst: GpuBuffer, offset: number): void;
  finish(): unknown;
}
export interface GpuPipeline {
  getBindGroupLayout(index: number): unknown;
}
export interface GpuShaderModule {
  getCompilationInfo(): Promise<{ messages: readonly { type: string; message: string; lineNum: number; linePos: number }[] }>;
}
export interface GpuQueue {
  submit(commands: unknown[]): void;
  writeBuffer(buf: GpuBuffer, offset: number, data: ArrayBufferLike, dataOffset?: number, size?: number): void;
  onSubmittedWorkDone(): Promise<void>;
}
export interface GpuDevice {
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
export interface GpuAdapterInfo {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
}
export interface GpuAdapter {
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
export const MAP_READ = 0x0001, COPY_SRC = 0x0004, COPY_DST = 0x0008, UNIFORM = 0x0040, STORAGE = 0x0080, QUERY_RESOLVE = 0x0200;
export const MAP_MODE_READ = 0x0001;

/** Every kernel file, compiled when the backend is created (kernels/NAME.wgsl). */
export const KERNELS = [
  'unary', 'binary', 'where', 'expand', 'reduce', 'matmul', 'permute', 'slice', 'gather', 'scatter_add',
  'cross_entropy', 'rmsnorm', 'rope', 'attention', 'adamw', 'newton_schulz',
] as const;
export type KernelName = (typeof KERNELS)[number];

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
  /**
   * Act as if the GPU's buffer limits were these (bytes), never looser than the adapter's:
   * smaller maxStorageBufferBindingSize / maxBufferSize, a larger (power-of-two)
   * minStorageBufferOffsetAlignment. Tests lower them so that ops split their bindings into
   * bands, as they must on a real GPU for tensors above its limits (docs/webgpu.md).
   */
  limits?: Partial<Record<LimitName, number>>;
}

/** The limits that WebGPUOptions.limits may tighten. */
export const LIMIT_NAMES = ['maxStorageBufferBindingSize', 'maxBufferSize', 'minStorageBufferOffsetAlignment'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

/**
 * The limits the backend works to: the device's, with WebGPUOptions.limits applied. A value
 * looser than the adapter's, or not a positive integer, is a UserError.
 */
export function effectiveLimits(device: Record<string, number>, wanted: WebGPUOptions['limits'] = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k in device) out[k] = device[k]; // GPUSupportedLimits: getters on the prototype
  for (const [k, v] of Object.entries(wanted)) {
    if (v === undefined) continue;
    if (!(LIMIT_NAMES as readonly string[]).includes(k)) throw new UserError(`webgpu: limits.${k} cannot be set; only ${LIMIT_NAMES.join(', ')}`);
    const have = out[k];
    if (!Number.isInteger(v) || v <= 0) throw new UserError(`webgpu: limits.${k} must be a positive integer number of bytes, got ${v}`);
    if (k === 'minStorageBufferOffsetAlignment') {
      if ((v & (v - 1)) !== 0 || v < have) throw new UserError(`webgpu: limits.${k} must be a power of two no smaller than this adapter's ${have}, got ${v}`);
    } else {
      if (v > have) throw new UserError(`webgpu: limits.${k} = ${v} is above this adapter's ${have}; it can only be lowered`);
      if (v < 1024) throw new UserError(`webgpu: limits.${k} = ${v} is below the 1024 bytes the backend needs at least`);
    }
    out[k] = v;
  }
  return out;
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

/** A device with every kernel compiled, and what it came from. */
export interface OpenedDevice {
  gpu: GpuEntry;
  adapter: GpuAdapter;
  device: GpuDevice;
  modules: Map<KernelName, GpuShaderModule>;
  /** The limits the backend works to (effectiveLimits). */
  limits: Record<string, number>;
}

/** The adapter, a device with its real limits (and timestamps if asked for), every kernel compiled. */
export async function openDevice(opts: WebGPUOptions = {}): Promise<OpenedDevice> {
  const gpu = await gpuEntry(opts);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new UserError(NO_ADAPTER);
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) if (typeof adapter.limits[k] === 'number') requiredLimits[k] = adapter.limits[k];
  const requiredFeatures = opts.timestamps && adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  let limits: Record<string, number>;
  try {
    limits = effectiveLimits(device.limits, opts.limits);
  } catch (e) {
    device.destroy();
    throw e;
  }
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
  return { gpu, adapter, device, modules, limits };
}
