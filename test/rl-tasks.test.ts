// Verifiable tasks: rewards on hand-written completions (right, wrong, malformed, and the
// countdown rule breakers), generators that are seeded, solvable and split by hash, and the
// task registry's errors.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Rng } from '../src/tensor/random.ts';
import {
  arithmeticTask, checkCountdown, countdownTask, extractExpression, getTask, gsm8kTask, lastNumberReward, makeArithmetic,
  parseExpression, parseGsm8k, splitOf, ARITHMETIC_DEFAULTS, COUNTDOWN_DEFAULTS, TEST_FRACTION, type CountdownProblem,
} from '../src/tasks/index.ts';
import { UserError } from '../src/util/errors.ts';

describe('last-number reward', () => {
  it('is 1 exactly when the last number (eval/tasks.ts\'s rule, tested there) is the answer', () => {
    expect(lastNumberReward(12, '37-12')).toBe(1); // not -12: the minus of a subtraction
    expect(lastNumberReward(-7, 'it drops to -7')).toBe(1);
    expect(lastNumberReward(1234, 'so the answer is 1,234.')).toBe(1);
    expect(lastNumberReward(25, '25 is wrong, it is 26')).toBe(0);
    expect(lastNumberReward(3, 'x3')).toBe(0);
  });
});

describe('arithmetic', () => {
  const task = arithmeticTask({ digits: 2 });
  const p = makeArithmetic(37, 12, '*');

  it('rewards the last number only', () => {
    expect(p.answer).toBe(444);
    expect(task.reward(p, '37*12 = 444')).toBe(1);
    expect(task.reward(p, 'It is 444, not 440.')).toBe(0); // the last number is 440
    expect(task.reward(p, 'I think 443')).toBe(0);
    expect(task.reward(p, 'no idea')).toBe(0);
    expect(task.reward(makeArithmetic(12, 37, '-'), 'That gives -25')).toBe(1);
  });

  it('renders the same question, in the SFT data\'s phrasing, with and without the calculator', () => {
    const plain = task.prompt(p, { tool: false }), tool = task.prompt(p, { tool: true });
    expect(plain).toEqual([{ role: 'user', content: 'What is 37 * 12?' }]);
    expect(tool).toEqual(plain); // the tool's availability is the hook's business, not the prompt's
  });

  it('is seeded, honours the digits knob, and splits by hash', () => {
    const draw = (seed: number, split: 'train' | 'test') => {
      const rng = new Rng(seed);
      return Array.from({ length: 50 }, () => task.sample(rng, split));
    };
    expect(draw(3, 'train')).toEqual(draw(3, 'train'));
    expect(draw(3, 'train')).not.toEqual(draw(4, 'train'));
    const train = draw(5, 'train'), test = draw(5, 'test');
    for (const q of [...train, ...test]) {
      expect(q.a).toBeGreaterThanOrEqual(10);
      expect(q.a).toBeLessThan(100);
      expect(q.split).toBe(splitOf(q.key));
    }
    expect(train.every((q) => q.split === 'train')).toBe(true);
    expect(test.every((q) => q.split === 'test')).toBe(true);
    const trainKeys = new Set(train.map((q) => q.key));
    expect(test.some((q) => trainKeys.has(q.key))).toBe(false);
    expect(() => arithmeticTask({ digits: 0 })).toThrow(UserError);
  });
});

describe('countdown', () => {
  const p: CountdownProblem = { key: 'k', split: 'train', numbers: [25, 4, 3, 7], target: 97, solution: '25*4-3' };

  it('accepts a right expression after "Answer:" or on the last line', () => {
    expect(checkCountdown(p, 'Let me try.\nAnswer: 25*4-3')).toBe('ok');
    expect(checkCountdown(p, 'Answer: 25 * 4 - 3 = 97\nthat works')).toBe('ok');
    expect(checkCountdown(p, 'thinking\n(25*4)-3\n')).toBe('ok');
    expect(checkCountdown(p, 'Answer: (7+3)*4/4*(25-3)/... ')).toBe('malformed');
    expect(countdownTask().reward(p, 'Answer: 25*4-3')).toBe(1);
  });

  it('uses exact rationals: 7/3*3 is 7, not 6.999…', () => {
    const q: CountdownProblem = { key: 'k', split: 'train', numbers: [7, 3, 3], target: 7, solution: '' };
    expect(checkCountdown(q, 'Answer: 7/3*3')).toBe('ok');
    expect(parseExpression('1/3+1/6').value).toEqual({ num: 1n, den: 2n });
  });

  it('gives 0, with the reason, to each way of breaking the rules', () => {
    expect(checkCountdown(p, 'Answer: 25*4+3-6')).toBe('number-not-given'); // = 97, but 6 is not given
    expect(checkCountdown(p, 'Answer: 25*4-3*1')).toBe('number-not-given');
    expect(checkCountdown(p, 'Answer: 25*3+25-3')).toBe('number-reused'); // 25 twice
    expect(checkCountdown(p, 'Answer: 25*4-7')).toBe('wrong-value');
    expect(checkCountdown(p, 'Answer: 25*4-3)')).toBe('malformed');
    expect(checkCountdown(p, 'Answer: 25*4 -- 3')).toBe('malformed'); // no unary minus
    expect(checkCountdown(p, 'Answer: 25*4-3.0')).toBe('malformed');
    expect(checkCountdown(p, 'Answer:   ')).toBe('no-expression');
    expect(checkCountdown(p, '')).toBe('no-expression');
    const z: CountdownProblem = { key: 'k', split: 'train', numbers: [5, 3, 3], target: 5, solution: '' };
    expect(checkCountdown(z, 'Answer: 5/(3-3)')).toBe('division-by-zero');
    expect(countdownTask().reward(z, 'Answer: 5/(3-3)')).toBe(0);
    // the expression is parsed, never run: code earns a plain 0
    expect(checkCountdown(p, 'Answer: process.exit(1)')).toBe('malformed');
  });

  it('extracts the expression as documented', () => {
    expect(extractExpression('a\nAnswer: 1+2\nAnswer: 3+4 = 7\nbye')).toBe('3+4');
    expect(extractExpression('first\n\n  2*3  \n\n')).toBe('2*3');
  });

  it('generates solvable instances at each difficulty, with the requested count', () => {
    for (const count of [2, 3, 5]) {
      const task = countdownTask({ count });
      const rng = new Rng(count);
      for (let i = 0; i < 40; i++) {
        const q = task.sample(rng, i % 4 === 0 ? 'test' : 'train');
        expect(q.numbers.length).toBe(count);
        expect(q.target).toBeGreaterThanOrEqual(1);
        expect(q.target).toBeLessThanOrEqual(200);
        expect(checkCountdown(q, `Answer: ${q.solution}`), `${q.numbers} -> ${q.target} by ${q.solution}`).toBe('ok');
        expect(q.split).toBe(splitOf(q.key));
      }
    }
    expect(() => countdownTask({ count: 7 })).toThrow(UserError);
  });
});

describe('gsm8k', () => {
  const lines = [
    { question: 'Tom has 3 apples and buys 4 more. How many?', answer: 'He has 3+4=7.\n#### 7' },
    { question: 'A farm sells 1,200 eggs a day for a week. How many?', answer: '1200*7=8400\n#### 8,400' },
  ];
  const text = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';

  it('parses "#### N" answers and rewards the last number (commas stripped)', () => {
    const ps = parseGsm8k(text, 'fixture.jsonl');
    expect(ps.map((p) => p.answer)).toEqual([7, 8400]);
    const task = gsm8kTask(ps, ps);
    expect(task.reward(ps[0], 'So Tom has 7 apples.')).toBe(1);
    expect(task.reward(ps[1], 'The farm sells 8,400 eggs')).toBe(1);
    expect(task.reward(ps[1], 'The farm sells 8400 eggs')).toBe(1);
    expect(task.reward(ps[1], '8400 eggs in 7 days')).toBe(0);
    expect(task.reward(ps[0], 'seven')).toBe(0);
    expect(task.prompt(ps[0], { tool: false })[1]).toEqual({ role: 'user', content: lines[0].question });
  });

  it('names the file and line of a malformed row', () => {
    expect(() => parseGsm8k('{"question":"q","answer":"a"}\n', 'f.jsonl')).toThrow(/f\.jsonl:1: the answer must end with "#### N"/);
    expect(() => parseGsm8k('\n{oops\n', 'f.jsonl')).toThrow(/f\.jsonl:2: not valid JSON/);
    expect(() => parseGsm8k('', 'f.jsonl')).toThrow(UserError);
  });

  it('loads from a file through getTask; unknown names are a UserError', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rl-gsm8k-'));
    const path = join(dir, 'train.jsonl');
    writeFileSync(path, text);
    const task = await getTask('gsm8k', { gsm8k: { path, testPath: path } });
    const q = task.sample(new Rng(1), 'test');
    expect(lines.map((l) => l.question)).toContain((q as unknown as { question: string }).question);
    await expect(getTask('gsm8k', {})).rejects.toThrow(UserError);
    await expect(getTask('gsm8k', { gsm8k: { path: join(dir, 'missing.jsonl') } })).rejects.toThrow(/missing\.jsonl/);
    await expect(getTask('sudoku')).rejects.toThrow(/unknown RL task 'sudoku'; choose one of: arithmetic, countdown, gsm8k/);
    expect((await getTask('countdown')).name).toBe('countdown');
  });
});

describe('docs/rl.md', () => {
  it('states the defaults the code uses', () => {
    const doc = readFileSync(new URL('../docs/rl.md', import.meta.url), 'utf8');
    expect(doc).toContain(`${TEST_FRACTION * 100}% of problems are \`test\``);
    expect(doc).toContain(`\`digits\` per operand (default ${ARITHMETIC_DEFAULTS.digits})`);
    expect(doc).toContain(`\`count\` of numbers (default ${COUNTDOWN_DEFAULTS.count})`);
  });
});
