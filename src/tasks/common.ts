// What every verifiable RL task shares: the task interface, the train/test split rule, and
// the "last number in the completion" reward (its number rule is eval/tasks.ts's, shared with
// the eval scoring).
//
// A task is a generator of problems plus a pure reward function. Rewards read only the
// problem and the completion text (never the model, never the clock), so the same rollout
// always gets the same reward and a learner can check any reward by hand.
//
// Splits are decided by a hash of the problem's canonical text, not by the seed that drew
// it: a problem is in 'test' if and only if its hash says so, so no seed, difficulty or
// sampling order can ever put the same problem in both splits. (Pure: no Node imports.)
import { HELDOUT_FRACTION, splitOf, type Split } from '../data/split.ts';
import { lastNumber } from './numbers.ts';
import type { Rng } from '../tensor/random.ts';
import type { Message } from '../tokenizer/chat.ts';

export { splitOf, type Split } from '../data/split.ts';

/** The fields every problem carries; each task adds its own. */
export interface BaseProblem {
  /** Canonical problem text; its hash decides the split. */
  key: string;
  /** The split this problem belongs to (derived from `key`). */
  split: Split;
}

export interface PromptOptions {
  /** Render for a model that may call the calculator tool (`calc(...)`), or without tools. */
  tool: boolean;
}

export interface RLTask<P extends BaseProblem = BaseProblem> {
  name: string;
  /** Draw one problem of the given split from the generator's stream. */
  sample(rng: Rng, split: Split): P;
  /** 1 for a correct completion, 0 otherwise; a pure function of its arguments. */
  reward(problem: P, completion: string): number;
  /** The conversation to complete: a system turn (instructions) and the user's question. */
  prompt(problem: P, opts: PromptOptions): Message[];
}

/** Fraction of problems that are held out (the 'test' split): data/split.ts's, shared with
 *  the SFT data, so a test problem is never in the built-in SFT set. */
export const TEST_FRACTION = HELDOUT_FRACTION;

/**
 * Draw from `draw` until a problem of the wanted split comes up. With a 10% test split,
 * 2000 tries fail to find a test problem with probability 0.9^2000 ≈ 1e-92; running out
 * means the generator's space is too small (e.g. 1-digit arithmetic has few problems).
 */
export function drawInSplit<P extends BaseProblem>(task: string, split: Split, draw: () => P): P {
  for (let i = 0; i < 2000; i++) {
    const p = draw();
    if (p.split === split) return p;
  }
  throw new Error(`${task}: no '${split}' problem in 2000 draws; the problem space is too small for this setting`);
}

/** The reward shared by arithmetic and GSM8K: 1 if the last number equals the answer. */
export function lastNumberReward(answer: number, completion: string): number {
  return lastNumber(completion) === answer ? 1 : 0;
}

/** The calculator's instructions, shared by every task's tool rendering. */
export const CALC_SYSTEM =
  'You can use a calculator: write calc(EXPRESSION) as a tool call, e.g. calc(37*12), and its result is pasted back. ' +
  'End your reply with the final answer as a number.';
export const PLAIN_SYSTEM = 'Work it out step by step without tools. End your reply with the final answer as a number.';
