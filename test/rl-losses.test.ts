// GRPO/DAPO pieces on hand-computed examples: advantages, the clipped policy loss and its
// aggregations, the k3 KL term, overlong shaping, dynamic sampling; and the loss's gradient
// against float64 finite differences on cpu64 (same harness idea as test/grad.test.ts).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cpu, cpu64 } from '../src/backend/cpu.ts';
import * as T from '../src/tensor/index.ts';
import { groupAdvantages } from '../src/rl/advantages.ts';
import { aggregationWeights, k3, overlongPenalty, policyLoss, DAPO_LOSS, POLICY_LOSS_DEFAULTS } from '../src/rl/losses.ts';
import { fillBatch, filterGroups } from '../src/rl/sampling.ts';
import { UserError } from '../src/util/errors.ts';
import { webgpuOrSkip } from './gpu-device.ts';

// float32 forward on the cpu backend: values like 1.25 carry ~1e-7 relative error
const F32 = 1e-6;

describe('advantages', () => {
  it('GRPO normalises by the group std, Dr. GRPO only centres', () => {
    // rewards [1, 0, 0, 1]: mean 0.5, population std 0.5 → GRPO ±1, Dr. GRPO ±0.5
    const [g] = groupAdvantages([[1, 0, 0, 1]], { kind: 'grpo', eps: 0 });
    expect(g).toEqual([1, -1, -1, 1]);
    const [d] = groupAdvantages([[1, 0, 0, 1]], { kind: 'dr-grpo' });
    expect(d).toEqual([0.5, -0.5, -0.5, 0.5]);
    // [3, 0, 0]: mean 1, std sqrt((4+1+1)/3) = sqrt(2)
    const [h] = groupAdvantages([[3, 0, 0]], { eps: 0 });
    expect(h[0]).toBeCloseTo(2 / Math.SQRT2, 12);
    expect(h[1]).toBeCloseTo(-1 / Math.SQRT2, 12);
  });

  it('a zero-variance group gets advantage 0, never NaN', () => {
    for (const kind of ['grpo', 'dr-grpo'] as const) {
      const out = groupAdvantages([[1, 1, 1], [0, 0], [0.5]], { kind });
      for (const g of out) for (const a of g) expect(a).toBe(0);
    }
  });

  it('rejects empty groups and non-finite rewards', () => {
    expect(() => groupAdvantages([[]])).toThrow(UserError);
    expect(() => groupAdvantages([[1, NaN]])).toThrow(UserError);
  });
});

/** Loss value and d(loss)/d(logp) on the float32 cpu backend. */
function lossAndGrad(logp: number[], N: number, L: number, rest: Omit<Parameters<typeof policyLoss>[0], 'logp'>, opts = {}) {
  return T.tidy(() => {
    const x = T.tensor(logp, [N, L], { backend: cpu, requiresGrad: true });
    const { loss, stats } = policyLoss({ logp: x, ...rest }, opts);
    T.backward(loss);
    const out = { loss: loss.itemSync(), grad: x.grad!.toArraySync(), stats };
    T.zeroGrad([x]);
    return out;
  });
}

describe('policy loss', () => {
  it('clip-higher: ratio 1.25 with positive advantage is clipped at 1+0.2 but not at 1+0.28', () => {
    const one = { oldLogp: [0], advantages: [1], mask: [1] };
    const at02 = lossAndGrad([Math.log(1.25)], 1, 1, one, { epsHigh: 0.2 });
    expect(at02.loss).toBeCloseTo(-1.2, 6); // −min(1.25·1, 1.2·1)
    expect(at02.grad[0]).toBe(0); // the clipped branch is a constant
    expect(at02.stats.clipFraction).toBe(1);
    const at028 = lossAndGrad([Math.log(1.25)], 1, 1, one, { epsHigh: 0.28 });
    expect(at028.loss).toBeCloseTo(-1.25, 6);
    expect(at028.grad[0]).toBeCloseTo(-1.25, 6); // d(−ratio·A)/d logp = −ratio·A
    expect(at028.stats.clipFraction).toBe(0);
    expect(at028.stats.meanRatio).toBeCloseTo(1.25, 6);
    // the lower edge is separate: ratio 0.75 with A < 0 is clipped at 1−0.2 whatever epsHigh is
    const low = lossAndGrad([Math.log(0.75)], 1, 1, { oldLogp: [0], advantages: [-1], mask: [1] }, { epsLow: 0.2, epsHigh: 0.28 });
    expect(low.loss).toBeCloseTo(0.8, 6); // −min(−0.75, −0.8) = 0.8
    expect(low.grad[0]).toBe(0);
    // ratio 1.25 with A < 0 is not clipped (the min takes the unclipped, more pessimistic term)
    const neg = lossAndGrad([Math.log(1.25)], 1, 1, { oldLogp: [0], advantages: [-1], mask: [1] });
    expect(neg.loss).toBeCloseTo(1.25, 6);
    expect(neg.grad[0]).toBeCloseTo(1.25, 6);
  });

  it('token-mean vs sequence-mean vs constant on two sequences of different lengths', () => {
    // row 0 trains 1 token, row 1 trains 3; ratio 1 everywhere, so token loss = −A_row
    const N = 2, L = 3;
    const base = { oldLogp: new Array(6).fill(-1), advantages: [2, -1], mask: [1, 0, 0, 1, 1, 1] };
    const logp = new Array(6).fill(-1);
    // token-mean: (−2 + 1 + 1 + 1) / 4 = 0.25; sequence-mean: (−2/1 + 3/3) / 2 = −0.5; constant: 1/(2·3)
    expect(lossAndGrad(logp, N, L, base, { aggregation: 'token-mean' }).loss).toBeCloseTo(0.25, F32 * 10);
    expect(lossAndGrad(logp, N, L, base, { aggregation: 'sequence-mean' }).loss).toBeCloseTo(-0.5, 6);
    expect(lossAndGrad(logp, N, L, base, { aggregation: 'constant' }).loss).toBeCloseTo(1 / 6, 6);
    // masked tokens get exactly zero gradient; trained tokens get −A·ratio·weight
    const g = lossAndGrad(logp, N, L, base, { aggregation: 'sequence-mean' }).grad;
    expect(g[1]).toBe(0);
    expect(g[2]).toBe(0);
    expect(g[0]).toBeCloseTo(-2 / 2, 6);
    expect(g[3]).toBeCloseTo(1 / 6, 6);
  });

  it('a row with no trained tokens is left out of the sequence count', () => {
    const w = aggregationWeights([1, 1, 0, 0], 2, 2, 'sequence-mean');
    expect(Array.from(w)).toEqual([0.5, 0.5, 0, 0]);
    expect(() => aggregationWeights([1, 0.5, 0, 0], 2, 2, 'token-mean')).toThrow(UserError);
  });

  it('k3 KL on hand values, never negative, and added with weight beta', () => {
    // ref = 0, logp = log 2: d = −log 2, exp(d) − d − 1 = 0.5 + log 2 − 1
    expect(k3(0, Math.log(2))).toBeCloseTo(0.5 + Math.log(2) - 1, 14);
    expect(k3(-0.3, -0.3)).toBe(0);
    const rng = new T.Rng(7);
    for (let i = 0; i < 1000; i++) expect(k3(rng.normal() * 3, rng.normal() * 3)).toBeGreaterThanOrEqual(0);
    // with A = 0 the surrogate vanishes and the loss is beta · mean k3
    const logp = [Math.log(2), 0];
    const r = lossAndGrad(logp, 1, 2, { oldLogp: logp, advantages: [0], mask: [1, 1], refLogp: [0, 0] }, { beta: 0.5, aggregation: 'token-mean' });
    expect(r.loss).toBeCloseTo((0.5 * (0.5 + Math.log(2) - 1)) / 2, 6);
    // logp == oldLogp up to the float32 rounding of the logp tensor (~1e-8): KL ~ d²/2 ≈ 0
    expect(r.stats.approxKL).toBeGreaterThanOrEqual(0);
    expect(r.stats.approxKL).toBeLessThan(1e-12);
    expect(() => policyLoss({ logp: T.tensor([0], [1, 1]), oldLogp: [0], advantages: [1], mask: [1] }, { beta: 0.1 })).toThrow(UserError);
  });

  it('a batch with no trained token gives loss 0 and neutral stats, not NaN', () => {
    for (const aggregation of ['token-mean', 'sequence-mean', 'constant'] as const) {
      const r = lossAndGrad([-1, -2], 1, 2, { oldLogp: [-1.5, -2], advantages: [1], mask: [0, 0] }, { aggregation });
      expect(r.loss).toBe(0);
      expect(r.grad).toEqual([0, 0]);
      expect(r.stats).toEqual({ clipFraction: 0, approxKL: 0, meanRatio: 1 });
    }
  });

  it('ignores whatever masked positions hold, even infinities', () => {
    // row 0 trains its first token only; the padding holds −Infinity old/ref log-probs and a
    // logp that would overflow exp: the result must equal the one-token loss, finite
    const padded = lossAndGrad([Math.log(1.1), 100], 1, 2, { oldLogp: [0, -Infinity], advantages: [1], mask: [1, 0], refLogp: [0, -Infinity] }, { beta: 0.5 });
    const alone = lossAndGrad([Math.log(1.1)], 1, 1, { oldLogp: [0], advantages: [1], mask: [1], refLogp: [0] }, { beta: 0.5 });
    expect(padded.loss).toBeCloseTo(alone.loss, 6);
    expect(padded.grad[0]).toBeCloseTo(alone.grad[0], 6);
    expect(padded.grad[1]).toBe(0);
  });

  it('checks its input sizes', () => {
    const x = T.tensor([0, 0], [1, 2]);
    expect(() => policyLoss({ logp: x, oldLogp: [0], advantages: [1], mask: [1, 1] })).toThrow(/oldLogp/);
    expect(() => policyLoss({ logp: x, oldLogp: [0, 0], advantages: [1, 2], mask: [1, 1] })).toThrow(/advantages/);
  });

  it('gradient matches float64 finite differences (cpu64), with clipping, masking and KL', () => {
    // |analytic − numeric| ≤ 1e-6·(1 + |numeric|), as in test/grad.test.ts (h = 1e-5 in float64).
    // The loss is piecewise smooth; random points sit away from the clip edges (checked below).
    T.setDefaultBackend(cpu64);
    try {
      const rng = new T.Rng(99);
      const N = 3, L = 4, H = 1e-5;
      const logp0 = Array.from({ length: N * L }, () => -1 - rng.uniform());
      const oldLogp = logp0.map((v) => v + (rng.uniform() - 0.5) * 0.8); // ratios in ~[0.67, 1.5]: some clipped
      const refLogp = logp0.map((v) => v + (rng.uniform() - 0.5));
      const advantages = [1.3, -0.7, 0.4];
      const mask = [1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1];
      for (const opts of [{ ...DAPO_LOSS, beta: 0.1 }, { aggregation: 'sequence-mean' as const, beta: 0.3 }]) {
        const ratios = logp0.map((v, i) => Math.exp(v - oldLogp[i]));
        for (const r of ratios) for (const edge of [0.8, 1.2, 1.28]) expect(Math.abs(r - edge)).toBeGreaterThan(1e-3);
        const f = (lp: number[], grad: boolean) => {
          const x = T.tensor(lp, [N, L], { requiresGrad: grad });
          return { x, ...policyLoss({ logp: x, oldLogp, advantages, mask, refLogp }, opts) };
        };
        T.tidy(() => {
          const { x, loss, stats } = f(logp0, true);
          expect(stats.clipFraction).toBeGreaterThan(0); // the clipped branch is exercised
          T.backward(loss);
          const g = x.grad!.toArraySync();
          for (let j = 0; j < N * L; j++) {
            const plus = [...logp0], minus = [...logp0];
            plus[j] += H;
            minus[j] -= H;
            const num = T.noGrad(() => (f(plus, false).loss.itemSync() - f(minus, false).loss.itemSync()) / (2 * H));
            expect(Math.abs(g[j] - num) / (1 + Math.abs(num))).toBeLessThan(1e-6);
            if (mask[j] === 0) expect(g[j]).toBe(0);
          }
        });
      }
    } finally {
      T.setDefaultBackend(cpu);
    }
  });
});

describe('policy loss on WebGPU', () => {
  it('matches the CPU loss and gradient (stats from a host copy of logp)', async () => {
    const gpu = await webgpuOrSkip('rl policy loss on webgpu');
    if (!gpu) return;
    try {
      const rng = new T.Rng(5);
      const N = 4, L = 6;
      const logp = Array.from({ length: N * L }, () => -0.5 - rng.uniform());
      const oldLogp = logp.map((v) => v + (rng.uniform() - 0.5) * 0.8);
      const refLogp = logp.map((v) => v + (rng.uniform() - 0.5));
      const mask = Array.from({ length: N * L }, (_, i) => (i % L < 2 + (i % 3) ? 1 : 0));
      const inputs = { oldLogp, advantages: [1, -0.5, 0.25, -2], mask, refLogp };
      const opts = { ...DAPO_LOSS, beta: 0.05 };
      const want = lossAndGrad(logp, N, L, inputs, opts);
      const x = T.tensor(logp, [N, L], { backend: gpu, requiresGrad: true });
      const { loss, stats } = policyLoss({ logp: x, logpHost: await x.data(), ...inputs }, opts);
      T.backward(loss);
      // WGSL's exp may be a few ULP off the CPU's and the sum runs in another order: 1e-5
      // relative is far above that (24 terms of size ~1) and far below any real difference
      expect(Math.abs((await loss.item()) - want.loss)).toBeLessThan(1e-5 * (1 + Math.abs(want.loss)));
      const g = await x.grad!.toArray();
      g.forEach((v, i) => expect(Math.abs(v - want.grad[i]), `grad ${i}`).toBeLessThan(1e-5 * (1 + Math.abs(want.grad[i]))));
      expect(stats).toEqual(want.stats); // the same host computation on the same float32 values
      expect(() => policyLoss({ logp: x, ...inputs }, opts)).toThrow(/synchronously/);
    } finally {
      gpu.destroy();
    }
  });
});

describe('docs/rl.md', () => {
  it('states the DAPO settings the code uses', () => {
    const doc = readFileSync(new URL('../docs/rl.md', import.meta.url), 'utf8');
    const d = DAPO_LOSS;
    expect(doc).toContain(`epsLow ${d.epsLow}, epsHigh ${d.epsHigh},\naggregation '${d.aggregation}', beta ${d.beta}`);
    expect(doc).toContain(`| \`epsHigh\` | ${POLICY_LOSS_DEFAULTS.epsHigh} | ${d.epsHigh} |`);
    expect(doc).toContain(`| \`aggregation\` | \`'${POLICY_LOSS_DEFAULTS.aggregation}'\` | \`'${d.aggregation}'\` |`);
  });
});

describe('overlong shaping', () => {
  it('is 0 up to Lmax − Lcache, linear to −1 at Lmax, −1 beyond', () => {
    // Lmax 100, Lcache 20: soft limit 80
    expect(overlongPenalty(0, 100, 20)).toBe(0);
    expect(overlongPenalty(80, 100, 20)).toBe(0);
    expect(overlongPenalty(90, 100, 20)).toBeCloseTo(-0.5, 12);
    expect(overlongPenalty(85, 100, 20)).toBeCloseTo(-0.25, 12);
    expect(overlongPenalty(100, 100, 20)).toBe(-1);
    expect(overlongPenalty(101, 100, 20)).toBe(-1);
    expect(() => overlongPenalty(5, 10, 0)).toThrow(UserError);
  });
});

describe('dynamic sampling', () => {
  it('drops exactly the zero-variance groups', () => {
    const groups = [{ rewards: [1, 1, 1] }, { rewards: [0, 1, 0] }, { rewards: [0, 0, 0] }, { rewards: [0.5, 0.5, 0.25] }];
    const { kept, dropped } = filterGroups(groups);
    expect(kept).toEqual([groups[1], groups[3]]);
    expect(dropped).toBe(2);
  });

  it('keeps generating until enough groups have signal, trimming to want', async () => {
    // each round yields one group with signal and one without
    let calls = 0;
    const round = async () => {
      calls++;
      return [{ rewards: [0, 1], id: calls }, { rewards: [1, 1], id: -calls }];
    };
    const r = await fillBatch(round, 3, 10);
    expect(r.rounds).toBe(3);
    expect(calls).toBe(3);
    expect(r.kept.map((g) => g.id)).toEqual([1, 2, 3]);
    expect(r.dropped).toBe(3);
    // two with signal per round, want 3: two rounds, the fourth group is trimmed (not "dropped")
    const r2 = await fillBatch(async () => [{ rewards: [0, 1] }, { rewards: [1, 0] }], 3, 10);
    expect(r2).toMatchObject({ rounds: 2, dropped: 0 });
    expect(r2.kept.length).toBe(3);
  });

  it('stops at its bound of extra rounds when no group has signal', async () => {
    let calls = 0;
    const r = await fillBatch(async () => (calls++, [{ rewards: [1, 1] }, { rewards: [0, 0] }]), 4, 2);
    expect(calls).toBe(3); // the first round plus 2 extra
    expect(r).toEqual({ kept: [], dropped: 6, rounds: 3 });
  });
});
