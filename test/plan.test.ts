// `minichat plan` (src/train/plan.ts, src/cli/plan.ts): the estimate of a training step's peak
// memory against the peak one real step measures (Backend.peakBytes through the Trainer), the
// largest-batch answer, and bad input. Shapes are small so each real step takes well under a
// second; they still cover the cases where the activations, the backward and the optimizer
// step each set the peak.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Backend } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { createWasmBackend } from '../src/backend/wasm.ts';
import { parseOnly } from '../src/cli/main.ts';
import { paramSpecs, presetConfig } from '../src/model/gpt.ts';
import { type PlanInput, largestBatch, measurePeak, parseBytes, planMemory } from '../src/train/plan.ts';
import { gradAccumOf, validateSpec } from '../src/train/spec.ts';

const bin = fileURLToPath(new URL('../bin/minichat.mjs', import.meta.url));
const input = (preset: string, backend: 'wasm' | 'cpu', o: Partial<PlanInput> = {}): PlanInput => ({
  config: presetConfig(preset), batchSize: 2, seqLen: 32, gradAccum: 1, optimizer: 'muon', backend, recompute: false, ceChunk: 0, gradClip: 1, weightDecay: 0, ...o,
});

/** Estimate / measured for one configuration; printed so a drift is visible before it fails. */
async function ratio(p: PlanInput, be: Backend): Promise<{ est: number; meas: number; r: number }> {
  const est = planMemory(p).peak, meas = (await measurePeak(p, be)).peak;
  const { config: _c, ...shown } = p;
  console.log(`${JSON.stringify(shown)}: estimate ${est}, measured ${meas}, ratio ${(est / meas).toFixed(3)}`);
  return { est, meas, r: est / meas };
}

describe('plan: the estimate against a measured training step', () => {
  const seen = new Map<string, { est: number; meas: number }>();
  it('is within 15% of the measured peak on tiny and small, wasm and cpu, with each memory option', async () => {
    const wasm = await createWasmBackend();
    const cases: [string, string, Backend, Partial<PlanInput>][] = [
      // the optimizer step sets the peak: Muon's temporaries (one matrix's, the per-parameter tidy),
      // and on cpu the composed AdamW's
      ['optimizer-bound', 'tiny', wasm, { batchSize: 1, seqLen: 8 }],
      ['optimizer-bound cpu', 'tiny', cpu, { batchSize: 1, seqLen: 8, optimizer: 'adamw', weightDecay: 0.1 }],
      ['default', 'tiny', wasm, {}],
      ['plain', 'tiny', wasm, { batchSize: 8, seqLen: 128 }], // the backward sets it, with or without the options
      ['recompute', 'tiny', wasm, { batchSize: 8, seqLen: 128, recompute: true }],
      ['both', 'tiny', wasm, { batchSize: 8, seqLen: 128, recompute: true, ceChunk: 256 }],
      ['accum', 'tiny', wasm, { batchSize: 2, seqLen: 64, gradAccum: 2, ceChunk: 100, optimizer: 'adamw' }],
      ['small', 'small', wasm, { batchSize: 1, seqLen: 32 }],
      ['cpu', 'tiny', cpu, { batchSize: 2, seqLen: 64, optimizer: 'adamw', weightDecay: 0.1 }], // composed attention and AdamW
    ];
    for (const [name, preset, be, o] of cases) {
      const r = await ratio(input(preset, be.name as 'wasm' | 'cpu', o), be);
      seen.set(name, r);
      expect(r.r, `${preset} ${be.name} ${JSON.stringify(o)}`).toBeGreaterThan(0.85);
      expect(r.r, `${preset} ${be.name} ${JSON.stringify(o)}`).toBeLessThan(1.15);
      if (name.startsWith('optimizer-bound')) expect(planMemory(input(preset, be.name as 'wasm' | 'cpu', o)).peakAt).toBe('optimizer step');
    }
    wasm.destroy();
  });

  it('recompute and ce-chunk lower both the estimated and the measured peak', () => {
    const [plain, re, both] = ['plain', 'recompute', 'both'].map((k) => seen.get(k)!);
    expect(re.est).toBeLessThan(plain.est);
    expect(re.meas).toBeLessThan(plain.meas);
    expect(both.est).toBeLessThan(re.est);
    expect(both.meas).toBeLessThan(re.meas);
  });
});

describe('plan: the largest batch that fits', () => {
  it('is monotone in the budget and consistent with the estimate', () => {
    for (const [preset, o] of [['tiny', {}], ['minimind2', { seqLen: 512 }], ['minimind2', { seqLen: 512, recompute: true, ceChunk: 512 }]] as const) {
      const p = input(preset, 'wasm', o);
      let last = 0;
      for (const gib of [0.01, 0.5, 1, 2, 4, 8, 12, 24]) {
        const budget = gib * 2 ** 30, B = largestBatch(p, budget);
        expect(B, `${preset} ${gib} GiB`).toBeGreaterThanOrEqual(last);
        if (B > 0) expect(planMemory({ ...p, batchSize: B }).peak).toBeLessThanOrEqual(budget);
        expect(planMemory({ ...p, batchSize: B + 1 }).peak).toBeGreaterThan(budget);
        last = B;
      }
      expect(last, preset).toBeGreaterThan(0);
    }
    // the backward's peak grows with the batch (the optimizer step's does not: the peak, the
    // larger of the two, never falls), and the memory options never make it grow
    const p = input('minimind2', 'wasm', { seqLen: 256 });
    for (let B = 1; B < 32; B++) {
      const [a, b] = [planMemory({ ...p, batchSize: B }), planMemory({ ...p, batchSize: B + 1 })];
      expect(b.backwardPeak).toBeGreaterThan(a.backwardPeak);
      expect(b.peak).toBeGreaterThanOrEqual(a.peak);
      expect(planMemory({ ...p, batchSize: B, recompute: true }).peak).toBeLessThanOrEqual(planMemory({ ...p, batchSize: B }).peak);
    }
    expect(largestBatch(input('minimind2', 'wasm'), 2 ** 20)).toBe(0); // 1 MiB holds no 104M model
  });

  it('counts FLOPs as 6 per parameter-multiply per token plus attention, and more with recompute', () => {
    const p = planMemory(input('small', 'wasm', { seqLen: 32 }));
    const c = presetConfig('small');
    // every parameter but the norm gains multiplies once per token (the tied embedding as the head)
    const matmulParams = paramSpecs(c).filter((s) => s.role !== 'gain').reduce((n, s) => n + s.shape[0] * s.shape[1], 0);
    const attn = 3 * c.numLayers * 4 * c.numHeads * c.headDim * (33 / 2);
    expect(p.flopsPerToken).toBeCloseTo(6 * matmulParams + attn, -3);
    expect(p.flopsPerStep).toBe(p.flopsPerToken * 64);
    // Muon's Newton–Schulz: 5 iterations of X Xᵀ, A·A and B·X per hidden matrix (k = its short side), batch-free
    const ns = paramSpecs(c).filter((s) => s.role === 'matrix').reduce((n, s) => {
      const k = Math.min(...s.shape), K = Math.max(...s.shape);
      return n + 5 * (2 * k * k * K + 2 * k * k * k + 2 * k * k * K);
    }, 0);
    expect(p.optimizerFlopsPerStep).toBe(ns);
    expect(planMemory(input('small', 'wasm', { seqLen: 32, batchSize: 16 })).optimizerFlopsPerStep).toBe(ns);
    expect(planMemory(input('small', 'wasm', { seqLen: 32, optimizer: 'adamw' })).optimizerFlopsPerStep).toBe(0);
    expect(planMemory(input('small', 'wasm', { seqLen: 32, recompute: true })).flopsPerToken).toBeGreaterThan(p.flopsPerToken);
  });
});

describe('plan: input', () => {
  it('reads memory sizes in decimal and binary units and refuses anything else in one line', () => {
    expect(parseBytes('8GB')).toBe(8e9);
    expect(parseBytes('8GiB')).toBe(8 * 2 ** 30);
    expect(parseBytes('1.5 GiB')).toBe(1.5 * 2 ** 30);
    expect(parseBytes('512MB')).toBe(512e6);
    expect(parseBytes('4096')).toBe(4096);
    expect(() => parseBytes('8G')).toThrow(/^--memory: cannot read "8G" as a memory size: say 8GB \(10\^n bytes\) or 8GiB \(2\^n bytes\)$/);
    for (const bad of ['', 'abc', '-1GB', '8 parsecs', '0', '1e9']) expect(() => parseBytes(bad), bad).toThrow(/^--memory: /);
  });

  it('the run spec: --tokens-per-step sets grad-accum, and must be a multiple of B x T', async () => {
    expect(gradAccumOf(validateSpec({ batchSize: 4, seqLen: 64, tokensPerStep: 1024 }))).toBe(4);
    expect(gradAccumOf(validateSpec({ gradAccum: 3 }))).toBe(3);
    expect(() => validateSpec({ batchSize: 4, seqLen: 64, tokensPerStep: 1000 })).toThrow(/^--tokens-per-step 1000 is not a multiple of --batch-size x --seq-len = 256: try 768 or 1024$/);
    expect(() => validateSpec({ batchSize: 4, seqLen: 64, tokensPerStep: 1024, gradAccum: 2 })).toThrow(/means --grad-accum 4 at 4 x 64, not 2/);
    const parsed = await parseOnly(['pretrain', '--recompute', '--ce-chunk', '256', '--tokens-per-step', '4096']);
    expect(parsed.opts).toMatchObject({ recompute: true, ceChunk: 256, tokensPerStep: 4096 });
    expect((await parseOnly(['pretrain'])).opts).toMatchObject({ recompute: false, ceChunk: 0, tokensPerStep: 0 });
    expect((await parseOnly(['plan', '--preset', 'minimind2', '--memory', '8GB', '--recompute'])).opts).toMatchObject({ preset: 'minimind2', memory: '8GB', recompute: true });
  });

  it('the command: --json for machines, one clear line for a bad size', () => {
    const ok = spawnSync(process.execPath, [bin, 'plan', '--preset', 'tiny', '--memory', '1GiB', '--json'], { encoding: 'utf8', timeout: 120_000 });
    expect(ok.status, ok.stderr).toBe(0);
    const j = JSON.parse(ok.stdout);
    expect(j.estimate.peak).toBe(planMemory(input('tiny', 'wasm', { batchSize: 8, seqLen: 128 })).peak); // pretrain's defaults
    expect(j.fits).toEqual([{ memory: '1GiB', bytes: 2 ** 30, largestBatch: largestBatch(input('tiny', 'wasm', { batchSize: 8, seqLen: 128 }), 2 ** 30) }]);
    const bad = spawnSync(process.execPath, [bin, 'plan', '--memory', '8G'], { encoding: 'utf8', timeout: 120_000 });
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n')).toEqual(['minichat: --memory: cannot read "8G" as a memory size: say 8GB (10^n bytes) or 8GiB (2^n bytes)']);
  });
});
