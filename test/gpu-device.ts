// A WebGPU device for a test file, or null to skip its GPU tests. A missing adapter is a
// skip on a user's machine without Vulkan, and a failure when MINICHAT_REQUIRE_WEBGPU is set
// (CI sets it, so a broken SwiftShader setup cannot pass silently).
import { type WebGPUBackend, createWebGPUBackend } from '../src/backend/webgpu.ts';

export async function webgpuOrSkip(what: string): Promise<WebGPUBackend | null> {
  try {
    return await createWebGPUBackend();
  } catch (e) {
    if (process.env.MINICHAT_REQUIRE_WEBGPU) throw e;
    console.warn(`${what} skipped: ${(e as Error).message}`);
    return null;
  }
}
