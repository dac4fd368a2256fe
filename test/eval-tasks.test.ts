// Eval scoring on hand-written replies: each rule accepts the replies it should and rejects
// near misses, baselines are chance, and the summary centers each task on its baseline.
import { describe, expect, it } from 'vitest';
import {
  chanceBaseline,
  chatCore,
  centeredScore,
  firstSentence,
  lastNumber,
  normaliseAnswer,
  pickOption,
  scoreArithmetic,
  scoreGsm8k,
  scoreIdentity,
  scoreMultipleChoice,
  scoreReply,
  scoreStoryQA,
} from '../src/eval/tasks.ts';
import { storyQA } from '../src/data/chat-synthetic.ts';

describe('story-QA', () => {
  it('matches the first sentence after normalisation, strictly', () => {
    expect(normaliseAnswer('  The Toy-Car!! ')).toBe('toy car');
    expect(firstSentence('Ben. He helped.')).toBe('Ben.');
    expect(firstSentence('It cost 2.5 coins. Then')).toBe('It cost 2.5 coins.');
    const right = ['Ben.', 'ben', ' Ben! ', 'Ben.\nHe is a fox.', 'It was Ben.', 'It is Ben!'];
    const wrong = ['Tom.', 'Ben and Tom.', 'Benny.', '', 'I think it was Ben.', 'Tom. Ben.', 'It was Ben and Tom.', 'It was Tom. Ben.', 'It was.'];
    for (const r of right) expect([r, scoreStoryQA(r, 'Ben')]).toEqual([r, true]);
    for (const r of wrong) expect([r, scoreStoryQA(r, 'Ben')]).toEqual([r, false]);
    expect(scoreStoryQA('The park.', 'park')).toBe(true);
    expect(scoreStoryQA('A fox.', 'fox')).toBe(true);
    expect(scoreStoryQA('The toy car.', 'toy car')).toBe(true);
    expect(scoreStoryQA('The toy.', 'toy car')).toBe(false);
  });

  it('accepts every gold reply of the built-in data (the rule and the data agree)', () => {
    for (const ex of storyQA(100, 7, 'test')) {
      const reply = ex.messages[1].content as string;
      expect(scoreStoryQA(reply, ex.answer)).toBe(true);
      expect(scoreReply('story-qa', reply, ex.answer)).toBe(true);
    }
  });
});

describe('numbers', () => {
  it('reads the last number, with signs, commas and decimals', () => {
    expect(lastNumber('37 * 12 = 444. The answer is 444.')).toBe(444);
    expect(lastNumber('The answer is -7.')).toBe(-7);
    expect(lastNumber('That is 1,250.5 dollars')).toBe(1250.5);
    expect(lastNumber('no numbers here')).toBeNull();
    // the rule the RL rewards share (src/tasks/common.ts)
    expect(lastNumber('so the answer is 1,234.')).toBe(1234);
    expect(lastNumber('37-12 = 25')).toBe(25);
    expect(lastNumber('37-12')).toBe(12); // not -12: the minus of a subtraction
    expect(lastNumber('it drops to -7')).toBe(-7);
    expect(lastNumber('about 3.50 dollars')).toBe(3.5);
    expect(lastNumber('x2 and y3')).toBeNull(); // digits inside words are not numbers
  });

  it('scores arithmetic and GSM8K by the last number in the assistant\'s own text', () => {
    expect(scoreArithmetic('The answer is 444.', '444')).toBe(true);
    expect(scoreArithmetic('The answer is 444.0', 444)).toBe(true);
    expect(scoreArithmetic('444 is not it, the answer is 445.', '444')).toBe(false);
    expect(scoreArithmetic('I do not know.', '444')).toBe(false);
    // a tool result alone does not count: the assistant must say it
    const toolOnly = [{ type: 'tool_call', text: 'calc(37*12)' }, { type: 'tool_result', text: '444' }] as const;
    expect(scoreArithmetic([...toolOnly], '444')).toBe(false);
    expect(scoreArithmetic([...toolOnly, { type: 'text', text: 'The answer is 444.' }], '444')).toBe(true);
    const gold = 'Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 1,072';
    expect(scoreGsm8k('So she sold 1072 clips.', gold)).toBe(true);
    expect(scoreGsm8k('So she sold 1,072 clips.', '1072')).toBe(true);
    expect(scoreGsm8k('So she sold 1072 clips and 24 more.', gold)).toBe(false);
  });

  it('identity needs the name', () => {
    expect(scoreIdentity('I am MiniChat.')).toBe(true);
    expect(scoreIdentity('I am a language model.')).toBe(false);
  });
});

describe('multiple choice and the summary', () => {
  it('picks the most likely option, the first on a tie', () => {
    expect(pickOption([-5, -1.5, -3])).toBe(1);
    expect(pickOption([-2, -2, -9])).toBe(0);
    expect(scoreMultipleChoice([-5, -1.5, -3], 1)).toBe(true);
    expect(scoreMultipleChoice([-5, -1.5, -3], 2)).toBe(false);
    expect(() => pickOption([])).toThrow();
  });

  it('baselines are chance and the summary centers on them', () => {
    expect(chanceBaseline({ kind: 'generative' })).toBe(0);
    expect(chanceBaseline({ kind: 'multiple-choice', options: 4 })).toBe(0.25);
    expect(centeredScore({ task: 'mc', accuracy: 0.25, baseline: 0.25 })).toBe(0); // chance → 0
    expect(centeredScore({ task: 'mc', accuracy: 1, baseline: 0.25 })).toBe(1); // perfect → 1
    expect(centeredScore({ task: 'mc', accuracy: 0.1, baseline: 0.25 })).toBeLessThan(0);
    // (0.5 − 0)/1 = 0.5 and (0.625 − 0.25)/0.75 = 0.5: mean 0.5
    const s = chatCore([
      { task: 'arith', accuracy: 0.5, baseline: 0 },
      { task: 'mc', accuracy: 0.625, baseline: 0.25 },
    ]);
    expect(s).toBeCloseTo(0.5, 12); // float rounding only
    expect(() => chatCore([])).toThrow();
    expect(() => chanceBaseline({ kind: 'multiple-choice', options: 1 })).toThrow();
  });
});
