// Multi-digit arithmetic: "What is 37*12?" with +, - or *, and a reward of 1 when the last
// number in the completion is the answer.
//
// The smallest verifiable task: a model fine-tuned on the synthetic chat data can learn it,
// and the difficulty knob (digits per operand) moves it from trivial to needing the
// calculator. The same problem renders with or without the calculator tool, so one can
// compare a policy that computes in its head with one that learns to call `calc(...)`.
// (Pure: no Node imports.)
import type { Rng } from '../tensor/random.ts';
import type { Message } from '../tokenizer/chat.ts';
import { check } from '../util/errors.ts';
import { drawInSplit, lastNumberReward, splitOf, type BaseProblem, type RLTask } from './common.ts';

export type ArithOp = '+' | '-' | '*';

export interface ArithmeticProblem extends BaseProblem {
  a: number;
  b: number;
  op: ArithOp;
  answer: number;
}

export interface ArithmeticOptions {
  /** Digits per operand (1–6); 2 gives problems like 37*12. */
  digits?: number;
  /** Which operators to draw from. */
  ops?: ArithOp[];
}

export const ARITHMETIC_DEFAULTS: Required<ArithmeticOptions> = { digits: 2, ops: ['+', '-', '*'] };

export function arithmeticTask(opts: ArithmeticOptions = {}): RLTask<ArithmeticProblem> {
  const { digits, ops } = { ...ARITHMETIC_DEFAULTS, ...opts };
  check(Number.isInteger(digits) && digits >= 1 && digits <= 6, `arithmetic: digits must be an integer in 1..6, got ${digits}`);
  check(ops.length > 0 && ops.every((o) => o === '+' || o === '-' || o === '*'), `arithmetic: ops must be a non-empty subset of + - *, got ${ops.join(' ')}`);
  // operands have exactly `digits` digits (no leading zeros), except 1 digit, which allows 0..9
  const lo = digits === 1 ? 0 : 10 ** (digits - 1), hi = 10 ** digits;
  const operand = (rng: Rng) => lo + rng.int(hi - lo);

  return {
    name: 'arithmetic',
    sample(rng, split) {
      return drawInSplit('arithmetic', split, () => makeArithmetic(operand(rng), operand(rng), ops[rng.int(ops.length)]));
    },
    reward: (p, completion) => lastNumberReward(p.answer, completion),
    prompt: (p, { tool }) => arithmeticPrompt(p, tool),
  };
}

export function makeArithmetic(a: number, b: number, op: ArithOp): ArithmeticProblem {
  const answer = op === '+' ? a + b : op === '-' ? a - b : a * b;
  const key = `${a}${op}${b}`;
  return { key, split: splitOf(key), a, b, op, answer };
}

/** The question as the user asks it; identical with and without the tool. It is one of the
 *  phrasings of the built-in SFT data (data/chat-synthetic.ts), so a model that went through
 *  SFT understands it. */
export function arithmeticQuestion(p: ArithmeticProblem): string {
  return `What is ${p.a} ${p.op} ${p.b}?`;
}

/**
 * No system message: the SFT data has none, and it teaches when to call the calculator
 * (multi-digit problems) by example. Whether the tool is *available* is decided by the
 * caller, which runs the tool hook or not (with tool false a call gets no result), so the
 * same prompt measures a policy with and without the calculator.
 */
function arithmeticPrompt(p: ArithmeticProblem, _tool: boolean): Message[] {
  return [{ role: 'user', content: arithmeticQuestion(p) }];
}
