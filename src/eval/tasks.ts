// Scoring rules for the chat evals: pure functions from a reply (and the gold answer) to
// right/wrong, the chance baseline of each kind of task, and a ChatCORE-like summary.
// No model here — src/eval/generate-eval.ts produces the replies and calls these.
//
// A reply is the assistant's text, or its parts (parseAssistantOutput in src/tools/hook.ts).
// Scoring reads only the assistant's own TEXT parts: a tool result that contains the right
// number does not count until the assistant states it.
//
// The rules, strict but fair:
//
//   story-QA    normalise (lower case, punctuation and the articles a/an/the removed, a
//               leading "it is" / "it was" dropped, spaces collapsed) the reply's FIRST
//               SENTENCE and the gold answer; right iff equal. "The park." matches "park",
//               "It was Ben." and "Ben!" match "Ben", but "Ben and Tom." does not: listing
//               every name in the story must not score. The built-in data trains exactly
//               this reply form (src/data/chat-synthetic.ts).
//   arithmetic  the LAST number in the reply equals the gold number ("... The answer is 444.").
//   GSM8K       the same rule, gold = the number after "####" (commas removed).
//   identity    the reply mentions "minichat" (case-insensitive).
//
// Numbers: an optional minus sign, digits with optional thousands commas, an optional
// decimal part ("-1,250.5" → -1250.5). Two numbers are equal when their values are
// (so "12.50" equals "12.5"); no tolerance: the gold answers are exact.
//
// Chance baselines, for centering: a generative task with an exact answer has baseline 0
// (a random string is never right); multiple choice with k options has 1/k. The summary
// (as nanochat's ChatCORE) averages, over tasks, (accuracy − baseline) / (1 − baseline):
// 0 = chance, 1 = perfect, negative = worse than chance, comparable across tasks with
// different numbers of options.
import { lastNumber } from '../tasks/numbers.ts';
import type { AssistantPart } from '../tokenizer/chat.ts';

// The number rule is shared with the RL rewards; it lives below both, in src/tasks/numbers.ts.
export { lastNumber, numbersIn } from '../tasks/numbers.ts';

export type Reply = string | AssistantPart[];

/** The text a reply states: the string itself, or its text parts joined. */
export function replyText(reply: Reply): string {
  if (typeof reply === 'string') return reply;
  return reply
    .filter((p) => p.type === 'text')
    .map((p) => p.text)
    .join('');
}

/** Lower case, punctuation and articles removed, a leading "it is" / "it was" dropped,
 *  whitespace collapsed. */
export function normaliseAnswer(s: string): string {
  const words = s
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s]/gu, ' ') // punctuation → space ("toy-car" and "toy car" agree)
    .split(/\s+/)
    .filter((w) => w && w !== 'a' && w !== 'an' && w !== 'the');
  // "It was Ben." states the answer "Ben" (the built-in replies say it so, see chat-synthetic.ts)
  if (words.length > 2 && words[0] === 'it' && (words[1] === 'is' || words[1] === 'was')) words.splice(0, 2);
  return words.join(' ');
}

/** The first sentence: up to the first . ! ? or newline (a decimal point does not end it). */
export function firstSentence(s: string): string {
  const m = /^[\s\S]*?(?:[.!?](?!\d)|\n)/.exec(s.trim());
  return m ? m[0] : s.trim();
}

/** Story-QA: the reply's first sentence, normalised, equals the normalised gold answer. */
export function scoreStoryQA(reply: Reply, gold: string): boolean {
  const g = normaliseAnswer(gold);
  return g.length > 0 && normaliseAnswer(firstSentence(replyText(reply))) === g;
}

/** Parse a gold number ("444", "-3", "1,250", "0.25"); a gold that is not a number is a bug. */
function goldNumber(gold: string | number): number {
  if (typeof gold === 'number') return gold;
  const v = Number(gold.trim().replaceAll(',', ''));
  if (!Number.isFinite(v)) throw new Error(`eval: gold answer "${gold}" is not a number`);
  return v;
}

/** Arithmetic: the last number in the reply equals the gold number. */
export function scoreArithmetic(reply: Reply, gold: string | number): boolean {
  const v = lastNumber(replyText(reply));
  return v !== null && v === goldNumber(gold);
}

/** GSM8K: the last number in the reply equals the number after "####" in the gold
 *  solution; `gold` may be the whole solution or the number alone. */
export function scoreGsm8k(reply: Reply, gold: string): boolean {
  const m = /####\s*(.+?)\s*$/.exec(gold);
  return scoreArithmetic(reply, m ? m[1] : gold);
}

/** Identity: the reply names the model. */
export function scoreIdentity(reply: Reply, name = 'minichat'): boolean {
  return replyText(reply).toLowerCase().includes(name.toLowerCase());
}

/** Score by task name (the `task` field of a ChatExample). */
export function scoreReply(task: 'story-qa' | 'arithmetic' | 'gsm8k' | 'identity', reply: Reply, gold: string): boolean {
  switch (task) {
    case 'story-qa':
      return scoreStoryQA(reply, gold);
    case 'arithmetic':
      return scoreArithmetic(reply, gold);
    case 'gsm8k':
      return scoreGsm8k(reply, gold);
    case 'identity':
      return scoreIdentity(reply, gold);
  }
}

// ---- multiple choice ----------------------------------------------------------------------

/** The chosen option: the highest total log-probability (the first one on a tie). */
export function pickOption(optionLogprobs: number[]): number {
  if (optionLogprobs.length === 0) throw new Error('pickOption: no options');
  let best = 0;
  for (let i = 1; i < optionLogprobs.length; i++) if (optionLogprobs[i] > optionLogprobs[best]) best = i;
  return best;
}

/** Multiple choice: right iff the most likely option is the gold one. */
export function scoreMultipleChoice(optionLogprobs: number[], goldIndex: number): boolean {
  return pickOption(optionLogprobs) === goldIndex;
}

// ---- baselines and the summary ------------------------------------------------------------

export type TaskKind = { kind: 'generative' } | { kind: 'multiple-choice'; options: number };

/** Accuracy by chance: 0 for exact-answer generation, 1/options for multiple choice. */
export function chanceBaseline(t: TaskKind): number {
  if (t.kind === 'generative') return 0;
  if (!(Number.isInteger(t.options) && t.options >= 2)) throw new Error(`chanceBaseline: a multiple-choice task needs at least 2 options, got ${t.options}`);
  return 1 / t.options;
}

export interface TaskScore {
  task: string;
  accuracy: number; // fraction right, 0..1
  baseline: number; // chance accuracy, 0..1 (below 1)
}

/** (accuracy − baseline) / (1 − baseline): 0 at chance, 1 when perfect. */
export function centeredScore(s: TaskScore): number {
  if (!(s.baseline >= 0 && s.baseline < 1)) throw new Error(`centeredScore: ${s.task}: baseline must be in [0, 1), got ${s.baseline}`);
  return (s.accuracy - s.baseline) / (1 - s.baseline);
}

/** ChatCORE-like summary: the mean over tasks of the centered score. */
export function chatCore(scores: TaskScore[]): number {
  if (scores.length === 0) throw new Error('chatCore: no tasks');
  return scores.reduce((a, s) => a + centeredScore(s), 0) / scores.length;
}
