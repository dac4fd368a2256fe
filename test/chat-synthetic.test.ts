// The built-in SFT data and GSM8K conversion: deterministic for a seed, train and held-out
// disjoint, gold answers taken from the content, tool results equal to what the calculator
// answers at inference, and everything renderable by the chat format.
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HELDOUT_FRACTION } from '../src/data/split.ts';
import { BUILTIN_MIX, arithmetic, builtinChatMix, exampleToJsonLine, identity, splitOf, storyQA, type ChatExample } from '../src/data/chat-synthetic.ts';
import { gsm8kFinalAnswer, gsm8kToExample, readGsm8k } from '../src/data/gsm8k.ts';
import { parseConversationsJsonl } from '../src/data/conversations.ts';
import { defaultToolRegistry } from '../src/tools/hook.ts';
import { Tokenizer, trainTokenizer, renderConversation, type AssistantPart } from '../src/tokenizer/index.ts';
import { MAX_DEPTH, MAX_INPUT_CHARS, MAX_MAGNITUDE, SIGNIFICANT_DIGITS } from '../src/tools/calculator.ts';
import { tempDir } from './tmp.ts';

const userText = (ex: ChatExample) => ex.messages[0].content as string;
const assistantParts = (ex: ChatExample): AssistantPart[] => {
  const c = ex.messages[ex.messages.length - 1].content;
  return typeof c === 'string' ? [{ type: 'text', text: c }] : (c as AssistantPart[]);
};
const finalText = (ex: ChatExample) => assistantParts(ex).filter((p) => p.type === 'text').map((p) => p.text).join('');

describe('storyQA', () => {
  it('is deterministic for a seed, and different seeds differ', () => {
    expect(storyQA(20, 3, 'train')).toEqual(storyQA(20, 3, 'train'));
    expect(storyQA(20, 4, 'train')).not.toEqual(storyQA(20, 3, 'train'));
  });

  it('takes the answer from the story, and the reply is the answer', () => {
    for (const ex of storyQA(60, 1, 'train')) {
      const [story, question] = userText(ex).split('\n\n');
      expect(question).toMatch(/\?$/);
      expect(story).toContain(ex.answer); // the answer is in the story (names, places, objects, kinds)
      expect(finalText(ex).toLowerCase()).toContain(ex.answer.toLowerCase());
      expect(finalText(ex).split(' ').length).toBeLessThanOrEqual(3); // short: "The toy car."
    }
  });

  it('keeps held-out stories out of train data made with any seed', () => {
    const held = storyQA(40, 0, 'test');
    const heldStories = new Set(held.map((e) => userText(e).split('\n\n')[0]));
    expect(heldStories.size).toBeGreaterThan(30); // a real sample, not one story repeated
    for (const seed of [0, 1, 2]) {
      for (const ex of storyQA(200, seed, 'train')) expect(heldStories.has(userText(ex).split('\n\n')[0])).toBe(false);
    }
    for (const s of heldStories) expect(splitOf(s)).toBe('test');
  });
});

describe('arithmetic', () => {
  it('with the tool: call, the calculator\'s own result, then the answer', () => {
    const reg = defaultToolRegistry();
    const exs = arithmetic(50, 2, 'train', { tool: true, digits: 3 });
    expect(exs).toEqual(arithmetic(50, 2, 'train', { tool: true, digits: 3 }));
    for (const ex of exs) {
      const parts = assistantParts(ex);
      const call = parts.find((p) => p.type === 'tool_call')!;
      const result = parts.find((p) => p.type === 'tool_result')!;
      expect(call.text).toMatch(/^calc\(\d+[-+*/]\d+\)$/);
      expect(result.text).toBe(reg.call(call.text)); // what the hook will force at inference
      expect(result.text).not.toMatch(/error/);
      expect(ex.answer).toBe(result.text);
      expect(parts[parts.length - 1]).toEqual({ type: 'text', text: `The answer is ${ex.answer}.` });
      // the answer is the true value of the question's numbers
      const [, a, op, b] = /^calc\((\d+)([-+*/])(\d+)\)$/.exec(call.text)!;
      const want = { '+': +a + +b, '-': +a - +b, '*': +a * +b, '/': +a / +b }[op]!;
      expect(Number(ex.answer)).toBe(want);
      expect(Number.isInteger(want)).toBe(true); // divisions are exact
    }
  });

  it('without the tool: small problems answered directly', () => {
    for (const ex of arithmetic(30, 5, 'train', { tool: false })) {
      expect(assistantParts(ex).every((p) => p.type === 'text')).toBe(true); // no tool call
      expect(finalText(ex)).toMatch(new RegExp(`= ${ex.answer.replace('-', '\\-')}\\. The answer is ${ex.answer.replace('-', '\\-')}\\.$`));
      expect(userText(ex).match(/\d+/g)!.every((d) => d.length === 1)).toBe(true); // one-digit operands by default
    }
  });

  it('train and held-out problems are disjoint', () => {
    const key = (ex: ChatExample) => assistantParts(ex).find((p) => p.type === 'tool_call')!.text;
    const held = new Set(arithmetic(100, 0, 'test', { tool: true, digits: 2 }).map(key));
    for (const seed of [0, 1]) for (const ex of arithmetic(300, seed, 'train', { tool: true, digits: 2 })) expect(held.has(key(ex))).toBe(false);
  });
});

describe('identity and the built-in mix', () => {
  it('identity answers name the model', () => {
    const ids = identity();
    expect(ids.length).toBeGreaterThanOrEqual(6);
    for (const ex of ids) expect(finalText(ex)).toContain('minichat');
    expect(new Set(ids.map(userText)).size).toBe(ids.length); // paraphrases, not repeats
  });

  it('mixes all tasks in the documented shares, deterministically', () => {
    const mix = builtinChatMix(200, 9);
    expect(mix.length).toBe(200);
    expect(builtinChatMix(200, 9)).toEqual(mix);
    const count = (t: string) => mix.filter((e) => e.task === t).length;
    // docs/sft-data.md §4: 30% story-QA, 45% + 15% arithmetic with and without the tool, 10% identity
    expect(count('story-qa')).toBe(60);
    expect(count('arithmetic')).toBe(120);
    expect(mix.filter((e) => e.task === 'arithmetic' && typeof e.messages[1].content !== 'string').length).toBe(90); // with the tool
    expect(count('identity')).toBe(20);
    expect(mix.slice(0, 10).map((e) => e.task)).not.toEqual(Array(10).fill(mix[0].task)); // shuffled
  });

  it('round-trips through JSONL and renders with the chat tokenizer', async () => {
    const mix = builtinChatMix(20, 1);
    const back = parseConversationsJsonl(mix.map(exampleToJsonLine).join('\n'), 'mix.jsonl');
    const tok = await trainTokenizer([mix.map((e) => JSON.stringify(e.messages)).join(' ')], { vocabSize: 300 });
    back.forEach((conv, i) => {
      const r = renderConversation(tok, conv);
      expect(r).toEqual(renderConversation(tok, mix[i].messages));
      expect(r.lossMask.some((m) => m === 1)).toBe(true);
    });
  });
});

describe('GSM8K', () => {
  const item = {
    question: 'Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?',
    answer: 'Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72',
  };

  it('turns <<expr=result>> annotations into calculator calls and #### into the answer', () => {
    const ex = gsm8kToExample(item);
    expect(ex.answer).toBe('72');
    expect(ex.droppedCalls).toBe(0);
    expect(ex.messages[0]).toEqual({ role: 'user', content: item.question });
    expect(assistantParts(ex)).toEqual([
      { type: 'text', text: 'Natalia sold 48/2 = ' },
      { type: 'tool_call', text: 'calc(48/2)' },
      { type: 'tool_result', text: '24' },
      { type: 'text', text: '24 clips in May.\nNatalia sold 48+24 = ' },
      { type: 'tool_call', text: 'calc(48+24)' },
      { type: 'tool_result', text: '72' },
      { type: 'text', text: '72 clips altogether in April and May.\nThe answer is 72.' },
    ]);
    expect(gsm8kFinalAnswer('so...\n#### 1,250')).toBe('1250');
    expect(() => gsm8kFinalAnswer('no final line', 'g.jsonl:3')).toThrow(/^g\.jsonl:3: the answer has no "#### <number>" line$/);
    // an annotation the calculator cannot read is dropped and counted, its text kept
    const odd = gsm8kToExample({ question: 'q', answer: 'It is 560//10 = <<560//10=56>>56.\n#### 56' });
    expect(odd.droppedCalls).toBe(1);
    expect(assistantParts(odd)).toEqual([{ type: 'text', text: 'It is 560//10 = 56.\nThe answer is 56.' }]);
  });

  it('reads a JSONL file, naming file:line on a bad line', async () => {
    const dir = tempDir();
    const f = join(dir, 'gsm.jsonl');
    writeFileSync(f, JSON.stringify(item) + '\n' + JSON.stringify({ ...item, answer: 'x <<2*3=6>>6\n#### 6' }) + '\n');
    const r = await readGsm8k(f);
    expect(r.examples.map((e) => e.answer)).toEqual(['72', '6']);
    writeFileSync(f, JSON.stringify(item) + '\n{"question": "only"}\n');
    await expect(readGsm8k(f)).rejects.toThrow(/gsm\.jsonl:2: expected \{"question": string, "answer": string\}/);
    await expect(readGsm8k(join(dir, 'none.jsonl'))).rejects.toThrow(/GSM8K file not found/);
  });
});

describe('docs/sft-data.md', () => {
  it('states the numbers the code uses', () => {
    const doc = readFileSync(new URL('../docs/sft-data.md', import.meta.url), 'utf8').replace(/\s+/g, ' ');
    const pct = (x: number) => `${Math.round(x * 100)}%`;
    const idShare = 1 - BUILTIN_MIX.storyQA - BUILTIN_MIX.arithmeticTool - BUILTIN_MIX.arithmeticNoTool;
    expect(doc).toContain(
      `mixes ${pct(BUILTIN_MIX.storyQA)} story-QA, ${pct(BUILTIN_MIX.arithmeticTool)} arithmetic with the calculator, ` +
        `${pct(BUILTIN_MIX.arithmeticNoTool)} arithmetic without it and ${pct(idShare)} identity`,
    );
    expect(doc).toContain(`${100 * HELDOUT_FRACTION}% of all stories and problems are held out`);
    expect(doc).toContain(`${MAX_INPUT_CHARS} characters, ${MAX_DEPTH} levels of nesting, every value within ±${MAX_MAGNITUDE.toExponential().replace('+', '')}`);
    expect(doc).toContain(`rounded to ${SIGNIFICANT_DIGITS} significant digits`);
  });
});

describe('one held-out split for SFT data and RL tasks', () => {
  it('no arithmetic problem of the SFT training data is in the RL test split', async () => {
    const { splitOf: rlSplit } = await import('../src/tasks/common.ts');
    const train = arithmetic(500, 3, 'train', { tool: true });
    const held = arithmetic(100, 3, 'test', { tool: true });
    // the problem's key is `${a}${op}${b}`, as in tasks/arithmetic.ts makeArithmetic
    const key = (e: ChatExample) => (e.messages[1].content as { type: string; text: string }[]).find((p) => p.type === 'tool_call')!.text.slice(5, -1);
    expect(train.every((e) => rlSplit(key(e)) === 'train')).toBe(true);
    expect(held.every((e) => rlSplit(key(e)) === 'test')).toBe(true);
  });
});
