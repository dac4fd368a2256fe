// The QK-norm + Muon experiment's bookkeeping over seeds (src/train/experiment.ts): the
// aggregation that turns per-seed runs into mean ± std, the crossing step, the claim's mapped
// threshold and the plot's spread band. No training here: the runs are hand-made curves.
import { describe, expect, it } from 'vitest';
import { CLAIM_FRACTION, type Run, aggregate, bestCells, claimThreshold, meanCurve, meanStd, resolveThreshold, stepsToThreshold } from '../src/train/experiment.ts';
import { lineChartSvg } from '../src/eval/plot.ts';

/** A run whose smoothed loss falls linearly from `from` to `to` over `steps` steps. */
function run(arm: Run['arm'], lr: number, seed: number, from: number, to: number, valLoss: number, steps = 10): Run {
  const curve: [number, number][] = Array.from({ length: steps }, (_, i) => [i + 1, from + ((to - from) * i) / (steps - 1)]);
  return { arm, lr, seed, curve, valLoss, valBpb: valLoss / 2, seconds: 1 };
}

describe('qknorm-muon aggregation over seeds', () => {
  it('meanStd: mean and sample standard deviation (n − 1)', () => {
    const m = meanStd([1, 2, 3, 4]);
    expect(m.mean).toBe(2.5);
    expect(m.std).toBeCloseTo(Math.sqrt(5 / 3), 12); // squared deviations 2.25+0.25+0.25+2.25 = 5, over 3
    expect(m.n).toBe(4);
    expect(meanStd([7])).toEqual({ mean: 7, std: 0, n: 1 });
    expect(Number.isNaN(meanStd([]).mean)).toBe(true);
  });

  it('stepsToThreshold: the first step at or below it, null when never reached', () => {
    const c: [number, number][] = [[1, 5], [2, 4], [3, 3], [4, 3.5], [5, 2]];
    expect(stepsToThreshold(c, 3)).toBe(3);
    expect(stepsToThreshold(c, 4.5)).toBe(2);
    expect(stepsToThreshold(c, 1)).toBeNull();
  });

  it('a seed that never crosses is counted out of the mean, not in it', () => {
    // curves 10 → 1 cross 4 at step 7 (10 − 9·6/9 = 4); 10 → 5 never does
    const runs = [run('ours', 0.01, 0, 10, 1, 2.0), run('ours', 0.01, 1, 10, 1, 2.2), run('ours', 0.01, 2, 10, 5, 2.4)];
    const [c] = aggregate(runs, 4);
    expect(c.perSeedSteps).toEqual([7, 7, null]);
    expect(c.steps).toEqual({ mean: 7, std: 0, n: 2 });
    expect(c.valLoss.mean).toBeCloseTo(2.2, 12);
    expect(c.valLoss.std).toBeCloseTo(0.2, 12);
    expect(c.seeds).toEqual([0, 1, 2]);
    expect(c.failed).toBe(0);
    // no seed crosses: n = 0, so the table says "not reached" instead of a number
    expect(aggregate(runs, 0.5)[0].steps.n).toBe(0);
  });

  it('groups by (arm, lr); the best lr has the lowest mean val loss and no failed seed', () => {
    const runs = [
      run('baseline', 0.003, 0, 8, 3, 3.0), run('baseline', 0.003, 1, 8, 3, 3.2),
      run('baseline', 0.01, 0, 8, 3, 2.5), run('baseline', 0.01, 1, 8, 3, NaN), // diverged on seed 1: not stable
      run('ours', 0.01, 0, 8, 2, 2.6), run('ours', 0.01, 1, 8, 2, 2.8),
      run('ours', 0.03, 0, 8, 2, 2.9), run('ours', 0.03, 1, 8, 2, 2.9),
    ];
    const cells = aggregate(runs, 4);
    expect(cells.map((c) => `${c.arm} ${c.lr}`)).toEqual(['baseline 0.003', 'baseline 0.01', 'ours 0.01', 'ours 0.03']);
    expect(cells[1].failed).toBe(1);
    expect(cells[1].valLoss.n).toBe(1);
    const best = bestCells(cells);
    expect(best.baseline?.lr).toBe(0.003);
    expect(best.ours?.lr).toBe(0.01);
  });

  it("the claim's threshold: 3.0 on GPT-2's vocabulary maps to itself, and sits the same fraction down elsewhere", () => {
    expect(claimThreshold(50257, 1.7)).toBeCloseTo(3.0, 12);
    expect(CLAIM_FRACTION).toBeCloseTo((Math.log(50257) - 3) / (Math.log(50257) - 1.7), 12);
    const t = claimThreshold(2048, 4);
    expect((Math.log(2048) - t) / (Math.log(2048) - 4)).toBeCloseTo(CLAIM_FRACTION, 12);
    // 'auto' reads the better best arm's final smoothed train loss: ours ends at 2, baseline at 3
    const runs = [run('baseline', 0.01, 0, 8, 3, 3.1), run('ours', 0.01, 0, 8, 2, 2.1)];
    expect(resolveThreshold('auto', runs, 2048)).toBeCloseTo(claimThreshold(2048, 2), 12);
    expect(resolveThreshold(3.5, runs, 2048)).toBe(3.5);
  });

  it('meanCurve: per-step mean with min–max band; a shorter (diverged) curve only counts where it exists', () => {
    const m = meanCurve([[[1, 4], [2, 2]], [[1, 6], [2, 4]], [[1, 5]]]);
    expect(m.mean).toEqual([[1, 5], [2, 3]]);
    expect(m.band).toEqual([[1, 4, 6], [2, 2, 4]]);
  });

  it('the plot draws a band as a filled path behind its line', () => {
    const svg = lineChartSvg([{ name: 'ours', points: [[1, 5], [2, 3]], color: '#1f77b4', band: [[1, 4, 6], [2, 2, 4]] }], { title: 't', xLabel: 'x', yLabel: 'y' });
    const fill = svg.indexOf('fill-opacity'), line = svg.indexOf('fill="none" stroke="#1f77b4"');
    expect(fill).toBeGreaterThan(0);
    expect(line).toBeGreaterThan(fill);
    // the y axis spans the band (down to 2), not just the mean line (down to 3)
    expect(svg).toContain('>2.00</text>');
  });
});

describe('qknorm-muon, a real run', () => {
  it('--arms runs only the arms asked for, every lr and seed of them', async () => {
    const { runQkNormMuon, EXPERIMENT_DEFAULTS } = await import('../src/train/experiment.ts');
    const { cpu } = await import('../src/backend/cpu.ts');
    const { tempDir } = await import('./tmp.ts');
    const { readdirSync } = await import('node:fs');
    const out = tempDir('mc-qm-arms-');
    await runQkNormMuon({ ...EXPERIMENT_DEFAULTS, steps: 2, batchSize: 2, seqLen: 16, lrs: [0.01, 0.003], seeds: [0, 1], arms: ['baseline'], out, backend: cpu }, () => {});
    expect(readdirSync(`${out}/runs`).sort()).toEqual(['baseline-lr0.003-seed0', 'baseline-lr0.003-seed1', 'baseline-lr0.01-seed0', 'baseline-lr0.01-seed1']);
  }, 300_000);
});
