/** Reading numbers out of a model's reply: the one rule every verifiable task scores with. */

// A number as people write it: optional sign, digits with optional thousands commas, optional
// decimals. The lookbehind keeps "37-12" from reading as the number -12 and, with the
// lookahead, keeps the digits of a word like "x2" from counting. Eval (src/eval/tasks.ts) and the RL
// rewards (common.ts) both score with this one rule.
const NUMBER = /(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\w)/g;

/** Every number in a text, in order, as values (commas removed). */
export function numbersIn(s: string): number[] {
  return [...s.matchAll(NUMBER)].map((m) => Number(m[0].replaceAll(',', ''))).filter(Number.isFinite);
}

/** The last number in a text, or null when there is none. */
export function lastNumber(s: string): number | null {
  const all = numbersIn(s);
  return all.length ? all[all.length - 1] : null;
}
