// Advantages for group-relative policy optimisation: each prompt is sampled G times, and a
// completion's advantage is how much better its reward is than its group's.
//
//   GRPO (Shao et al., DeepSeekMath, 2024):      A_i = (r_i − mean(r)) / (std(r) + eps)
//   Dr. GRPO (Liu et al., "Understanding R1-Zero-like training", 2025):  A_i = r_i − mean(r)
//
// Dr. GRPO drops the division by std because it weighs groups unequally: a group whose
// rewards barely differ (almost all right or all wrong: questions too easy or too hard) gets
// its small differences blown up to unit scale. std here is the population standard
// deviation (divide by G), so a group of one is allowed and gets advantage 0.
//
// A group whose rewards are all equal carries no signal: every advantage is exactly 0 in
// both variants (0 / (0 + eps) = 0), never NaN. Dynamic sampling (sampling.ts) drops such
// groups before they waste a batch slot. (Pure: no Node imports.)
import { check } from '../util/errors.ts';

export type AdvantageKind = 'grpo' | 'dr-grpo';

export interface AdvantageOptions {
  /** 'grpo' divides by the group's std; 'dr-grpo' only subtracts the mean. */
  kind?: AdvantageKind;
  /** Added to std before dividing (GRPO only). */
  eps?: number;
}

export const ADVANTAGE_DEFAULTS: Required<AdvantageOptions> = { kind: 'grpo', eps: 1e-6 };

/** Advantages for each group of rewards, same nesting as the input. */
export function groupAdvantages(groups: number[][], opts: AdvantageOptions = {}): number[][] {
  const { kind, eps } = { ...ADVANTAGE_DEFAULTS, ...opts };
  check(kind === 'grpo' || kind === 'dr-grpo', `advantages: kind must be 'grpo' or 'dr-grpo', got '${kind}'`);
  return groups.map((rewards, g) => {
    check(rewards.length > 0, `advantages: group ${g} is empty`);
    check(rewards.every(Number.isFinite), `advantages: group ${g} has a non-finite reward`);
    const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    const centred = rewards.map((r) => r - mean);
    if (kind === 'dr-grpo') return centred;
    const std = Math.sqrt(centred.reduce((a, c) => a + c * c, 0) / rewards.length);
    return centred.map((c) => c / (std + eps));
  });
}

/** Population mean and std of one group (also used by logs and dynamic sampling). */
export function groupStats(rewards: number[]): { mean: number; std: number } {
  const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
  const std = Math.sqrt(rewards.reduce((a, r) => a + (r - mean) ** 2, 0) / rewards.length);
  return { mean, std };
}
