// The calculator tool: a small, safe arithmetic evaluator for the model's tool calls.
//
// The assistant writes `<|tool_call_start|>calc(37*12)<|tool_call_end|>`; the engine runs the
// text inside the parentheses through this file and pastes the answer back as a tool result.
// The text comes from a language model, so it is untrusted input: it is never handed to
// `eval` or `Function` (which would run any JavaScript, e.g. `process.exit()`). Instead a
// hand-written tokenizer and recursive-descent parser accept only this grammar:
//
//   expr    := term (('+' | '-') term)*
//   term    := unary (('*' | '/' | '%') unary)*
//   unary   := ('-' | '+') unary | power
//   power   := atom (('**' | '^') unary)?        right-associative: 2**3**2 = 2**9
//   atom    := NUMBER | '(' expr ')'
//   NUMBER  := digits with an optional decimal point (12, 3.5, .5, 7.) — no exponents, no commas
//
// As in Python, the power binds tighter than unary minus on its left: -2**2 = -(2**2) = -4.
// `%` is the remainder with the sign of the dividend (JavaScript's and C's), e.g. -7 % 3 = -1.
//
// Limits, so that a model in a loop cannot make the tool slow or its output huge:
//   - input at most MAX_INPUT_CHARS characters, parentheses nested at most MAX_DEPTH deep;
//   - every intermediate value must stay within ±MAX_MAGNITUDE (1e15): beyond about 9e15
//     (2^53) doubles no longer hold every integer, so "exact" integer answers would be wrong.
//
// Every failure is an answer, not an exception: a string starting with "error: " that the
// model sees as the tool result (a real tool would answer the same way).
//
// Output format (canonical, so that training data and scoring agree on one spelling):
//   - integers print without ".0" or exponent: 444, -12, 1000000000000;
//   - other values are rounded to SIGNIFICANT_DIGITS (10) significant digits, then printed in
//     JavaScript's shortest round-trip form: 1/3 → 0.3333333333, 0.1+0.2 → 0.3, 2.5 → 2.5;
//     very small values use an exponent (1e-7), as String(number) does;
//   - minus zero prints as 0.
// (Pure: no Node imports.)
import type { Tool } from './registry.ts';

export const MAX_INPUT_CHARS = 200;
export const MAX_DEPTH = 32;
export const MAX_MAGNITUDE = 1e15;
export const SIGNIFICANT_DIGITS = 10;

/** The outcome of evaluating an expression: a value, or the error text for the model. */
export type CalcResult = { ok: true; value: number } | { ok: false; error: string };

/** A failure inside the parser; caught in evaluate() and turned into an error answer. */
class CalcError extends Error {}

type Token = { kind: 'num'; value: number; pos: number } | { kind: 'op'; op: string; pos: number };

/** Split the input into numbers and operators; anything else is a syntax error. */
function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === ' ' || c === '\t' || c === '\n') {
      i++;
    } else if ((c >= '0' && c <= '9') || c === '.') {
      const start = i;
      while (i < src.length && src[i] >= '0' && src[i] <= '9') i++;
      if (src[i] === '.') {
        i++;
        while (i < src.length && src[i] >= '0' && src[i] <= '9') i++;
      }
      const text = src.slice(start, i);
      if (text === '.') throw new CalcError(`syntax: a lone "." at position ${start + 1}`);
      tokens.push({ kind: 'num', value: Number(text), pos: start });
    } else if (c === '*' && src[i + 1] === '*') {
      tokens.push({ kind: 'op', op: '**', pos: i });
      i += 2;
    } else if ('+-*/%^()'.includes(c)) {
      tokens.push({ kind: 'op', op: c === '^' ? '**' : c, pos: i });
      i++;
    } else {
      throw new CalcError(`syntax: unexpected "${c}" at position ${i + 1}`);
    }
  }
  return tokens;
}

/** Recursive descent over the token list; one method per grammar rule above. */
class Parser {
  private i = 0;
  private depth = 0;
  constructor(private readonly tokens: Token[]) {}

  parseAll(): number {
    if (this.tokens.length === 0) throw new CalcError('empty expression');
    const v = this.expr();
    const t = this.tokens[this.i];
    if (t) throw new CalcError(`syntax: unexpected ${describe(t)} at position ${t.pos + 1}`);
    return v;
  }

  private peekOp(...ops: string[]): string | undefined {
    const t = this.tokens[this.i];
    return t?.kind === 'op' && ops.includes(t.op) ? t.op : undefined;
  }

  private expr(): number {
    let v = this.term();
    for (let op; (op = this.peekOp('+', '-')); ) {
      this.i++;
      const r = this.term();
      v = bounded(op === '+' ? v + r : v - r);
    }
    return v;
  }

  private term(): number {
    let v = this.unary();
    for (let op; (op = this.peekOp('*', '/', '%')); ) {
      this.i++;
      const r = this.unary();
      if ((op === '/' || op === '%') && r === 0) throw new CalcError('division by zero');
      v = bounded(op === '*' ? v * r : op === '/' ? v / r : v % r);
    }
    return v;
  }

  private unary(): number {
    const op = this.peekOp('-', '+');
    if (!op) return this.power();
    this.i++;
    this.enter(); // "------1" nests as deeply as parentheses do
    const v = this.unary();
    this.depth--;
    return op === '-' ? -v : v;
  }

  private power(): number {
    const base = this.atom();
    if (!this.peekOp('**')) return base;
    this.i++;
    const exp = this.unary(); // right-associative, and allows 2**-1
    if (base === 0 && exp < 0) throw new CalcError('division by zero');
    const v = base ** exp;
    if (Number.isNaN(v)) throw new CalcError('not a real number (a negative number to a fractional power)');
    return bounded(v);
  }

  private atom(): number {
    const t = this.tokens[this.i];
    if (!t) throw new CalcError('syntax: the expression ends too early');
    if (t.kind === 'num') {
      this.i++;
      return bounded(t.value);
    }
    if (t.op === '(') {
      this.i++;
      this.enter();
      const v = this.expr();
      this.depth--;
      const close = this.tokens[this.i];
      if (!(close?.kind === 'op' && close.op === ')')) {
        throw new CalcError(close ? `syntax: expected ")" at position ${close.pos + 1}` : 'syntax: missing ")"');
      }
      this.i++;
      return v;
    }
    throw new CalcError(`syntax: unexpected ${describe(t)} at position ${t.pos + 1}`);
  }

  private enter(): void {
    if (++this.depth > MAX_DEPTH) throw new CalcError(`too deeply nested (at most ${MAX_DEPTH} levels)`);
  }
}

const describe = (t: Token) => (t.kind === 'num' ? `number ${t.value}` : `"${t.op}"`);

/** Every intermediate value passes through here: no infinities, nothing beyond ±1e15. */
function bounded(v: number): number {
  if (!Number.isFinite(v) || Math.abs(v) > MAX_MAGNITUDE) throw new CalcError(`overflow (a value beyond ±${MAX_MAGNITUDE})`);
  return v;
}

/** Evaluate an arithmetic expression; never throws, never runs code. */
export function evaluate(expr: string): CalcResult {
  if (expr.length > MAX_INPUT_CHARS) return { ok: false, error: `error: input too long (at most ${MAX_INPUT_CHARS} characters)` };
  try {
    return { ok: true, value: new Parser(tokenize(expr)).parseAll() };
  } catch (e) {
    if (e instanceof CalcError) return { ok: false, error: `error: ${e.message}` };
    throw e; // a bug in this file, not a bad input
  }
}

/** The canonical text of a number (see the header): integers exact, else 10 significant digits. */
export function formatNumber(v: number): string {
  if (Object.is(v, -0)) return '0';
  if (Number.isInteger(v)) return String(v); // |v| ≤ 1e15 < 1e21, so never an exponent
  const rounded = Number(v.toPrecision(SIGNIFICANT_DIGITS));
  return Object.is(rounded, -0) ? '0' : String(rounded);
}

/** The calculator's answer as the model sees it: the number, or "error: ...". */
export function calculate(expr: string): string {
  const r = evaluate(expr);
  return r.ok ? formatNumber(r.value) : r.error;
}

/** The calculator as a tool named "calc": `calc(37*12)` → "444". */
export const calculatorTool: Tool = {
  name: 'calc',
  description: 'arithmetic: numbers, + - * / % ** (or ^), parentheses, unary minus; e.g. calc(37*12)',
  run: calculate,
};
