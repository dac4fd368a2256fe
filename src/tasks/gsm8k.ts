// GSM8K (Cobbe et al., 2021): grade-school word problems whose reference answer ends with
// "#### N". The reward is 1 when the last number in the completion equals N (thousands
// commas stripped on both sides), the usual "last number" rule of simple GSM8K evals.
//
// Problems come from a local JSONL file, one {"question": ..., "answer": ...} per line, as
// in the openai/grade-school-math repository. The split: if a separate test file is given,
// 'train' draws from the main file and 'test' from that file; otherwise a hash of the
// question decides, like the generated tasks. Parsing is pure (`parseGsm8k`); only
// `loadGsm8kFile` touches the file system, through a dynamic import so the page can still
// import this module.
import type { Rng } from '../tensor/random.ts';
import type { Message } from '../tokenizer/chat.ts';
import { UserError, check } from '../util/errors.ts';
import { CALC_SYSTEM, PLAIN_SYSTEM, lastNumberReward, splitOf, type BaseProblem, type RLTask, type Split } from './common.ts';

export interface Gsm8kProblem extends BaseProblem {
  question: string;
  /** The full reference solution (kept for SFT and inspection). */
  solution: string;
  answer: number;
}

/** Parse GSM8K JSONL text; `file` names the source in error messages. */
export function parseGsm8k(text: string, file: string): Gsm8kProblem[] {
  const out: Gsm8kProblem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const where = `${file}:${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw new UserError(`${where}: not valid JSON`);
    }
    const r = row as { question?: unknown; answer?: unknown };
    check(typeof r.question === 'string' && typeof r.answer === 'string', `${where}: expected {"question": string, "answer": string}`);
    const m = /####\s*(-?[\d,]*\.?\d+)\s*$/.exec(r.answer);
    check(m !== null, `${where}: the answer must end with "#### N"`);
    const answer = Number(m[1].replace(/,/g, ''));
    check(Number.isFinite(answer), `${where}: cannot read the number after ####`);
    out.push({ key: r.question, split: splitOf(r.question), question: r.question, solution: r.answer, answer });
  }
  check(out.length > 0, `${file}: no problems found`);
  return out;
}

/** Read and parse a GSM8K JSONL file (Node only). */
export async function loadGsm8kFile(path: string): Promise<Gsm8kProblem[]> {
  // the module name in a variable, as in src/backend/kernels.ts: Vite leaves it alone
  const fsName = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch {
    throw new UserError(`${path}: cannot read the GSM8K file (expected JSONL lines {"question","answer"})`);
  }
  return parseGsm8k(text, path);
}

/**
 * A GSM8K task over parsed problems. With `test` given, those are the test split and every
 * `train` problem is used for training; otherwise each problem's hash decides its split.
 */
export function gsm8kTask(train: Gsm8kProblem[], test?: Gsm8kProblem[]): RLTask<Gsm8kProblem> {
  const pools: Record<Split, Gsm8kProblem[]> = test
    ? { train: train.map((p) => ({ ...p, split: 'train' })), test: test.map((p) => ({ ...p, split: 'test' })) }
    : { train: train.filter((p) => p.split === 'train'), test: train.filter((p) => p.split === 'test') };
  return {
    name: 'gsm8k',
    sample(rng: Rng, split: Split) {
      const pool = pools[split];
      check(pool.length > 0, `gsm8k: the '${split}' split is empty (too few problems in the file, or give a separate test file)`);
      return pool[rng.int(pool.length)];
    },
    reward: (p, completion) => lastNumberReward(p.answer, completion),
    prompt: (p, { tool }): Message[] => [
      { role: 'system', content: tool ? CALC_SYSTEM : PLAIN_SYSTEM },
      { role: 'user', content: p.question },
    ],
  };
}
