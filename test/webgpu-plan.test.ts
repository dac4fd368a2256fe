// `minichat plan --backend webgpu`: the estimate of a training step's peak memory against the
// peak one real step measures on WebGPU (Backend.peakBytes: bytes of live GPU buffers), on
// SwiftShader at small shapes, within the 15% the issue asks for (as test/plan.test.ts does
// for wasm and cpu). The WebGPU backend rounds each buffer up to 16 bytes; the estimate does
// not, which the tolerance covers at these sizes.
//
// Skips only when no WebGPU adapter can be created AND MINICHAT_REQUIRE_WEBGPU is unset.
import { afterAll, describe, expect, it } from 'vitest';
import { presetConfig } from '../src/model/gpt.ts';
import { type PlanInput, measurePeak, planMemory } from '../src/train/plan.ts';
import * as T from '../src/tensor/index.ts';
import { cpu } from '../src/backend/cpu.ts';
import { webgpuOrSkip } from './gpu-device.ts';

const gpu = await webgpuOrSkip('webgpu plan tests');
afterAll(() => {
  T.setDefaultBackend(cpu);
  gpu?.destroy();
});

const input = (o: Partial<PlanInput>): PlanInput => ({
  config: presetConfig('tiny'), batchSize: 2, seqLen: 32, gradAccum: 1, optimizer: 'muon', backend: 'webgpu',
  recompute: false, ceChunk: 0, gradClip: 1, weightDecay: 0, ...o,
});

describe.skipIf(!gpu)('plan --backend webgpu: the estimate against a measured step on WebGPU', () => {
  it('is within 15% of the measured peak on tiny, Muon and AdamW, with the memory options', async () => {
    const cases: [string, Partial<PlanInput>][] = [
      ['muon', {}],
      ['adamw', { optimizer: 'adamw', weightDecay: 0.1, batchSize: 2, seqLen: 64 }],
      ['recompute + ce-chunk', { recompute: true, ceChunk: 32, batchSize: 2, seqLen: 64 }],
    ];
    for (const [name, o] of cases) {
      const p = input(o);
      T.setDefaultBackend(gpu!);
      const est = planMemory(p).peak, meas = (await measurePeak(p, gpu!)).peak;
      console.log(`webgpu ${name}: estimate ${est}, measured ${meas}, ratio ${(est / meas).toFixed(3)}`);
      expect(est / meas, name).toBeGreaterThan(0.85);
      expect(est / meas, name).toBeLessThan(1.15);
    }
  }, 300_000);
});
