// Dynamic sampling (DAPO, Yu et al., 2025, §3.2): a group whose G completions all earned the
// same reward has zero advantage everywhere, so it adds nothing to the gradient but still
// counts in the batch, shrinking the effective batch as the policy gets good (all right) or
// on hopeless prompts (all wrong). DAPO over-samples and keeps only groups with some spread.
//
// `fillBatch` is the loop: generate a round of groups, keep those with non-zero variance,
// and repeat until `want` groups are kept or `maxRounds` extra rounds have been spent (a
// bound, so a policy that solves everything cannot loop forever). (Pure: no Node imports.)
import { check } from '../util/errors.ts';

/** A group of G completions for one prompt; callers extend it with their rollouts. */
export interface Group {
  rewards: number[];
}

/** True when the rewards are not all equal (so some advantage is non-zero). */
export function hasSignal(g: Group): boolean {
  return g.rewards.some((r) => r !== g.rewards[0]);
}

/** Split groups into those with signal (kept, in order) and the count of those without. */
export function filterGroups<G extends Group>(groups: G[]): { kept: G[]; dropped: number } {
  const kept = groups.filter(hasSignal);
  return { kept, dropped: groups.length - kept.length };
}

export interface FillResult<G extends Group> {
  /** At most `want` groups with signal, in the order they were generated. */
  kept: G[];
  /** Zero-variance groups thrown away. */
  dropped: number;
  /** Rounds generated in all (1 + extra rounds). */
  rounds: number;
}

/**
 * Generate rounds until `want` groups with signal are collected, or until `maxRounds` rounds
 * beyond the first have been spent. Groups with signal beyond `want` are discarded (the
 * batch has a fixed size); they are not counted as dropped.
 */
export async function fillBatch<G extends Group>(
  generateRound: () => Promise<G[]>,
  want: number,
  maxRounds: number,
): Promise<FillResult<G>> {
  check(Number.isInteger(want) && want >= 1, `fillBatch: want must be a positive integer, got ${want}`);
  check(Number.isInteger(maxRounds) && maxRounds >= 0, `fillBatch: maxRounds must be a non-negative integer, got ${maxRounds}`);
  const kept: G[] = [];
  let dropped = 0, rounds = 0;
  while (kept.length < want && rounds <= maxRounds) {
    const r = filterGroups(await generateRound());
    rounds++;
    dropped += r.dropped;
    kept.push(...r.kept);
  }
  return { kept: kept.slice(0, want), dropped, rounds };
}
