// A WebGPU device for a test file, or null to skip its GPU tests. A missing adapter is a
// skip on a user's machine without Vulkan, and a failure when MINICHAT_REQUIRE_WEBGPU is set
// (CI sets it, so a broken SwiftShader setup cannot pass silently).
import { type Backend, type MatmulParams, type Storage, sizeOf } from '../src/backend/backend.ts';
import { type WebGPUBackend, createWebGPUBackend } from '../src/backend/webgpu.ts';
import { broadcastShapes } from '../src/tensor/ops.ts';

export async function webgpuOrSkip(what: string): Promise<WebGPUBackend | null> {
  try {
    return await createWebGPUBackend();
  } catch (e) {
    if (process.env.MINICHAT_REQUIRE_WEBGPU) throw e;
    console.warn(`${what} skipped: ${(e as Error).message}`);
    return null;
  }
}

/**
 * One matmul parity case for the WebGPU tests: its params, fresh random operands, the CPU
 * backend's result and the per-element bound 2 (K + 2) u (|A| |B|)_ij (u = 2^-24) that the
 * GPU's result must stay within.
 */
export function matmulCase(cpu: Backend, randn: (n: number) => Float32Array, aShape: number[], bShape: number[], transA: boolean, transB: boolean) {
  const [ar, ac] = aShape.slice(-2), [br, bc] = bShape.slice(-2);
  const M = transA ? ac : ar, K = transA ? ar : ac, N = transB ? br : bc;
  const batchA = aShape.slice(0, -2), batchB = bShape.slice(0, -2);
  const batch = broadcastShapes('matmul', batchA, batchB);
  const p: MatmulParams = { batchA, batchB, batch, M, K, N, transA, transB };
  const a = randn(sizeOf(aShape)), b = randn(sizeOf(bShape));
  const host = (s: Storage) => s as unknown as Float32Array;
  const abs = (x: Float32Array) => x.map(Math.abs);
  const want = host(cpu.matmul(cpu.upload(a, 'float32'), cpu.upload(b, 'float32'), p));
  const bound = host(cpu.matmul(cpu.upload(abs(a), 'float32'), cpu.upload(abs(b), 'float32'), p)).map((s) => 2 * (K + 2) * 2 ** -24 * s);
  const what = `matmul [${aShape}]${transA ? 'ᵀ' : ''} @ [${bShape}]${transB ? 'ᵀ' : ''}`;
  return { p, a, b, want, bound, what };
}
