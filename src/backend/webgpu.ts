// The WebGPU backend: every Backend method as a WGSL compute kernel (kernels/*.wgsl), plus the
// fused kernels of fused.ts. Tested op by op against the CPU reference (test/webgpu*.test.ts).
//
//   webgpu-device.ts    the slice of the WebGPU API used; the GPU (navigator.gpu or Dawn), the
//                       adapter's limits, every kernel compiled up front
//   webgpu-dispatch.ts  recording and submitting: batches, uniform slots, pipelines, errors
//   webgpu-buffers.ts   memory: storages, the buffer pool, uploads and reads
//   webgpu-split.ts     tensors above the binding limit: bands, windows and scratch copies
//   webgpu-ops.ts       the primitive ops, one method per Backend op
//   webgpu-fused.ts     the fused kernels' host code
// Each file's class extends the one before it; WebGPUBackend below is the last of them.
import type { Backend } from './backend.ts';
import type { FusedKernels } from './fused.ts';
import { openDevice, type WebGPUOptions } from './webgpu-device.ts';
import { WebGPUFused } from './webgpu-fused.ts';

export type { GpuEntry, LimitName, WebGPUOptions } from './webgpu-device.ts';
export { GpuStorage } from './webgpu-dispatch.ts';

export class WebGPUBackend extends WebGPUFused implements Backend, FusedKernels {
  readonly name = 'webgpu';
}

/** A WebGPU backend on the best adapter there is (see WebGPUOptions). */
export async function createWebGPUBackend(opts: WebGPUOptions = {}): Promise<WebGPUBackend> {
  const { device, adapter, modules, gpu, limits } = await openDevice(opts);
  return new WebGPUBackend(device, adapter, modules, gpu, limits);
}
