// Countdown: reach a target number from a few given numbers with + - * / and parentheses,
// using each given number at most once (Gandhi et al., "Stream of Search", 2024, and the
// TinyZero replication use this as a small verifiable reasoning task).
//
// The answer format. The model's expression is the text after the last "Answer:" in its
// completion, or its last non-empty line when it wrote no "Answer:". If that text contains
// "=", only the part before the first "=" counts ("25*4-3 = 97" is accepted). The expression
// must parse completely under the grammar below; anything else earns 0.
//
//   expr   := term (('+' | '-') term)*
//   term   := factor (('*' | '/') factor)*
//   factor := INTEGER | '(' expr ')'
//
// There is no unary minus: the given numbers are positive and a solution never needs one.
// The expression is parsed by this file and evaluated over exact rationals (BigInt
// numerator/denominator), never run as code, so "1/3*3" is exactly 1 and division by zero is
// a wrong answer, not an Infinity.
//
// Solvable by construction: the target is the value of a random expression over all the
// given numbers, built by repeatedly combining two of them with an operator whose result is
// a positive integer. Difficulty is the count of numbers. (Pure: no Node imports.)
import type { Rng } from '../tensor/random.ts';
import type { Message } from '../tokenizer/chat.ts';
import { UserError, check } from '../util/errors.ts';
import { drawInSplit, splitOf, type BaseProblem, type RLTask } from './common.ts';

export interface CountdownProblem extends BaseProblem {
  numbers: number[];
  target: number;
  /** One expression that reaches the target (the generator's; not shown to the model). */
  solution: string;
}

export interface CountdownOptions {
  /** How many numbers are given (2–6): the difficulty knob. */
  count?: number;
  /** Given numbers are drawn from 1..maxNumber. */
  maxNumber?: number;
  /** Targets are kept in 1..maxTarget (larger values are redrawn). */
  maxTarget?: number;
}

export const COUNTDOWN_DEFAULTS: Required<CountdownOptions> = { count: 4, maxNumber: 25, maxTarget: 200 };

export function countdownTask(opts: CountdownOptions = {}): RLTask<CountdownProblem> {
  const o = { ...COUNTDOWN_DEFAULTS, ...opts };
  check(Number.isInteger(o.count) && o.count >= 2 && o.count <= 6, `countdown: count must be an integer in 2..6, got ${o.count}`);
  check(Number.isInteger(o.maxNumber) && o.maxNumber >= 2, `countdown: maxNumber must be an integer >= 2, got ${o.maxNumber}`);
  check(Number.isInteger(o.maxTarget) && o.maxTarget >= 1, `countdown: maxTarget must be an integer >= 1, got ${o.maxTarget}`);
  return {
    name: 'countdown',
    sample: (rng, split) => drawInSplit('countdown', split, () => generateCountdown(rng, o)),
    reward: (p, completion) => countdownReward(p, completion),
    // the calculator would do the search's arithmetic but not the search: one rendering
    prompt: (p) => countdownPrompt(p),
  };
}

// ---- generation -----------------------------------------------------------------------------

function generateCountdown(rng: Rng, o: Required<CountdownOptions>): CountdownProblem {
  // rejection sampling; the bound turns settings with (almost) no valid target into an error
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const numbers = Array.from({ length: o.count }, () => 1 + rng.int(o.maxNumber));
    // combine a random pair until one value is left; keep every intermediate a positive integer
    let pool = numbers.map((n) => ({ value: n, text: String(n) }));
    let ok = true;
    while (pool.length > 1 && ok) {
      const i = rng.int(pool.length);
      let j = rng.int(pool.length - 1);
      if (j >= i) j++;
      const [x, y] = [pool[i], pool[j]];
      const choices: { value: number; text: string }[] = [
        { value: x.value + y.value, text: `(${x.text}+${y.text})` },
        { value: x.value * y.value, text: `${x.text}*${y.text}` },
      ];
      if (x.value > y.value) choices.push({ value: x.value - y.value, text: `(${x.text}-${y.text})` });
      if (y.value > 1 && x.value % y.value === 0) choices.push({ value: x.value / y.value, text: `${x.text}/(${y.text})` });
      const c = choices[rng.int(choices.length)];
      pool = pool.filter((_, k) => k !== i && k !== j);
      pool.push(c);
      if (c.value > o.maxTarget * 50) ok = false; // runaway products: redraw
    }
    const target = pool[0].value;
    if (!ok || target < 1 || target > o.maxTarget) continue;
    const key = `${[...numbers].sort((a, b) => a - b).join(',')}->${target}`;
    return { key, split: splitOf(key), numbers, target, solution: pool[0].text };
  }
  throw new UserError(`countdown: no target in 1..${o.maxTarget} found in 10000 tries with ${o.count} numbers up to ${o.maxNumber}; raise maxTarget`);
}

function countdownPrompt(p: CountdownProblem): Message[] {
  return [
    {
      role: 'system',
      content:
        'Combine the given numbers with + - * / and parentheses to reach the target. Use each number at most once. ' +
        'End with a line "Answer: EXPRESSION".',
    },
    { role: 'user', content: `Numbers: ${p.numbers.join(' ')}. Target: ${p.target}.` },
  ];
}

// ---- checking an answer ---------------------------------------------------------------------

/** Why a countdown answer earned 0, or 'ok'. Exposed so tests and logs can say why. */
export type CountdownVerdict =
  | 'ok'
  | 'no-expression'
  | 'malformed'
  | 'number-not-given'
  | 'number-reused'
  | 'division-by-zero'
  | 'wrong-value';

export function countdownReward(p: CountdownProblem, completion: string): number {
  return checkCountdown(p, completion) === 'ok' ? 1 : 0;
}

export function checkCountdown(p: CountdownProblem, completion: string): CountdownVerdict {
  const exprText = extractExpression(completion);
  if (exprText === null) return 'no-expression';
  let parsed: { value: Rational | 'div0'; used: bigint[] };
  try {
    parsed = parseExpression(exprText);
  } catch (e) {
    if (e instanceof ExprSyntaxError) return 'malformed';
    throw e;
  }
  // each used number must be a given one, at most as often as it was given
  const left = new Map<string, number>();
  for (const n of p.numbers) left.set(String(n), (left.get(String(n)) ?? 0) + 1);
  for (const n of parsed.used) {
    const k = n.toString(), c = left.get(k);
    if (c === undefined) return 'number-not-given';
    if (c === 0) return 'number-reused';
    left.set(k, c - 1);
  }
  if (parsed.value === 'div0') return 'division-by-zero';
  return parsed.value.den === 1n && parsed.value.num === BigInt(p.target) ? 'ok' : 'wrong-value';
}

/** The expression text the answer format defines (see the header), or null. */
export function extractExpression(completion: string): string | null {
  const at = completion.lastIndexOf('Answer:');
  let text: string;
  if (at >= 0) text = completion.slice(at + 'Answer:'.length).split('\n')[0];
  else {
    const lines = completion.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    if (lines.length === 0) return null;
    text = lines[lines.length - 1];
  }
  const eq = text.indexOf('=');
  if (eq >= 0) text = text.slice(0, eq);
  text = text.trim();
  return text.length > 0 ? text : null;
}

// ---- exact rationals ------------------------------------------------------------------------

/** num/den in lowest terms, den > 0. */
export interface Rational {
  num: bigint;
  den: bigint;
}

const abs = (x: bigint) => (x < 0n ? -x : x);
function gcd(a: bigint, b: bigint): bigint {
  a = abs(a);
  b = abs(b);
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}
function rat(num: bigint, den: bigint): Rational {
  if (den < 0n) [num, den] = [-num, -den];
  const g = gcd(num, den) || 1n;
  return { num: num / g, den: den / g };
}

// ---- the parser -----------------------------------------------------------------------------

class ExprSyntaxError extends Error {}

/**
 * Parse and evaluate an expression of the grammar in the header. Returns the exact value
 * ('div0' if it divides by zero anywhere) and the integers it uses, in order.
 */
export function parseExpression(text: string): { value: Rational | 'div0'; used: bigint[] } {
  const tokens = text.match(/\d+|[-+*/()]|\S/g) ?? [];
  let pos = 0;
  const used: bigint[] = [];
  const peek = () => tokens[pos];
  type V = Rational | 'div0';

  const expr = (): V => {
    let v = term();
    while (peek() === '+' || peek() === '-') {
      const op = tokens[pos++], w = term();
      if (v === 'div0' || w === 'div0') v = 'div0';
      else v = op === '+' ? rat(v.num * w.den + w.num * v.den, v.den * w.den) : rat(v.num * w.den - w.num * v.den, v.den * w.den);
    }
    return v;
  };
  const term = (): V => {
    let v = factor();
    while (peek() === '*' || peek() === '/') {
      const op = tokens[pos++], w = factor();
      if (v === 'div0' || w === 'div0') v = 'div0';
      else if (op === '*') v = rat(v.num * w.num, v.den * w.den);
      else v = w.num === 0n ? 'div0' : rat(v.num * w.den, v.den * w.num);
    }
    return v;
  };
  const factor = (): V => {
    const t = tokens[pos++];
    if (t === undefined) throw new ExprSyntaxError('unexpected end of expression');
    if (/^\d+$/.test(t)) {
      const n = BigInt(t);
      used.push(n);
      return rat(n, 1n);
    }
    if (t === '(') {
      const v = expr();
      if (tokens[pos++] !== ')') throw new ExprSyntaxError('missing )');
      return v;
    }
    throw new ExprSyntaxError(`unexpected ${t}`);
  };

  const value = expr();
  if (pos !== tokens.length) throw new ExprSyntaxError(`unexpected ${tokens[pos]}`);
  return { value, used };
}
