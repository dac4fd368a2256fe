// `minichat experiment grpo-vs-dapo`: the statistics on hand values (mean ± sample std over
// seeds, the first crossing of the target, the claim's GRPO/DAPO ratio, arms that never reach
// the target), and one real run of two arms × two seeds on a tiny SFT policy: every arm gets
// the same budget, the per-step sampled success and zero-advantage fraction are kept, and the
// plots draw the seeds' spread.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpu } from '../src/backend/cpu.ts';
import { firstCrossing, runGrpoVsDapo, summarise } from '../src/rl/experiment.ts';
import { tinyArithmeticPolicy } from './rl-fixture.ts';
import { tempDir } from './tmp.ts';

/** An arm's run whose held-out curve crosses `target` first at `hitStep` (never if null). */
function fakeRun(arm: string, seed: number, hitStep: number | null, final: number) {
  const curve = [0, 2, 4, 6, 8, 10].map((step) => ({ step, completions: step * 64, success: hitStep !== null && step >= hitStep ? Math.max(final, 0.8) : 0.6 }));
  curve[curve.length - 1].success = final;
  const train = [1, 2, 3].map((step) => ({ step, success: 0.3, zeroAdvantage: 0.25 }));
  return { arm, seed, curve, train, steps: 10, completions: 640, seconds: 1 };
}

describe('grpo-vs-dapo statistics', () => {
  it('first crossing, mean ± sample std, the claim ratio', () => {
    expect(firstCrossing(fakeRun('grpo', 0, 6, 0.9), 0.75)).toEqual({ step: 6, completions: 384 });
    expect(firstCrossing(fakeRun('grpo', 0, null, 0.6), 0.75)).toBeNull();
    const runs = [fakeRun('grpo', 0, 4, 0.8), fakeRun('grpo', 1, 6, 0.8), fakeRun('grpo', 2, 8, 0.8), fakeRun('dapo', 0, 2, 0.9), fakeRun('dapo', 1, 2, 0.9), fakeRun('dapo', 2, 2, 0.9)];
    const { table, claim } = summarise(runs, ['grpo', 'dapo'], 0.75);
    const row = (name: string) => table.split('\n').find((l) => l.startsWith(`| ${name} |`))!.split('|').map((c) => c.trim());
    // steps 4, 6, 8: mean 6, sample std 2; completions 256, 384, 512: 384 ± 128
    expect(row('grpo').slice(2, 5)).toEqual(['3/3', '6.0 ± 2.0', '384 ± 128']);
    expect(row('dapo').slice(2, 5)).toEqual(['3/3', '2.0 ± 0.0', '128 ± 0']);
    expect(row('dapo')[5]).toBe('90.0 ± 0.0% (90, 90, 90)');
    expect(row('grpo')[8]).toBe('25 ± 0%'); // zero-advantage groups
    expect(claim).toContain('= 6.0/2.0 = 3.00x');
  });

  it('an arm that never reaches the target says so, and the claim is not computed', () => {
    const runs = [fakeRun('grpo', 0, null, 0.6), fakeRun('grpo', 1, 6, 0.8), fakeRun('dapo', 0, 2, 0.9), fakeRun('dapo', 1, 4, 0.9)];
    const { table, claim } = summarise(runs, ['grpo', 'dapo'], 0.75);
    expect(table).toMatch(/\| grpo \| 1\/2 \| 6\.0 \| 384 \|/);
    expect(claim).toMatch(/not measurable.*GRPO reached it on 1\/2 seeds, DAPO on 2\/2/);
  });
});

describe('grpo-vs-dapo, a real run', () => {
  it('two arms × two seeds with equal budgets; per-step statistics kept; the plots carry the spread', async () => {
    const init = await tinyArithmeticPolicy();
    const out = join(tempDir('mc-gvd-'), 'exp');
    const budget = 24;
    const { runs, table } = await runGrpoVsDapo(
      {
        init, task: 'arithmetic', digits: 1, ops: '+', tool: false, budget, groupSize: 4, promptsPerStep: 2, maxTokens: 6, temperature: 1, mu: 2, lr: 0.01, loraRank: 4,
        evalEvery: 2, evalProblems: 4, target: 0.5, seeds: [0, 1], arms: ['grpo', 'dapo'], out, backend: cpu,
      },
      () => {},
    );
    expect(runs.map((r) => `${r.arm}/${r.seed}`)).toEqual(['grpo/0', 'dapo/0', 'grpo/1', 'dapo/1']);
    for (const r of runs) {
      expect(r.completions).toBeGreaterThanOrEqual(budget);
      expect(r.train.length).toBe(r.steps);
      for (const t of r.train) {
        expect(t.zeroAdvantage).toBeGreaterThanOrEqual(0);
        expect(t.zeroAdvantage).toBeLessThanOrEqual(1);
        expect(t.success).toBeGreaterThanOrEqual(0);
        expect(t.success).toBeLessThanOrEqual(1);
      }
      expect(r.curve[0].step).toBe(0);
      expect(r.curve.at(-1)!.step).toBe(r.steps);
    }
    // GRPO keeps every group: 8 completions a batch (μ = 2 optimizer steps each), 3 batches for 24
    expect(runs.filter((r) => r.arm === 'grpo').map((r) => r.steps)).toEqual([3, 3]);
    expect(table.split('\n').filter((l) => /^\| (grpo|dapo) \|/.test(l))).toHaveLength(2);
    for (const f of ['grpo-vs-dapo.svg', 'grpo-vs-dapo-steps.svg', 'runs.json', 'table.md']) expect(existsSync(join(out, f)), f).toBe(true);
    const svg = readFileSync(join(out, 'grpo-vs-dapo.svg'), 'utf8');
    expect(svg.match(/fill-opacity="0\.18"/g)?.length).toBe(2); // a min–max band per arm
    expect(readFileSync(join(out, 'table.md'), 'utf8')).toMatch(/claim \(DAPO at a third of GRPO's steps/);
  }, 120_000);
});
