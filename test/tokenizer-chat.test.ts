// Chat rendering on hand-written conversations: the exact token layout, and a loss mask that
// covers the assistant's own output (text, tool calls, <|assistant_end|>) and nothing else.
import { describe, expect, it, beforeAll } from 'vitest';
import { Tokenizer, trainTokenizer, renderConversation, renderForCompletion, SPECIALS, type Message } from '../src/tokenizer/index.ts';

let tok: Tokenizer;
beforeAll(async () => {
  const text = 'the user asks what is two plus two and the assistant answers four. '.repeat(50);
  tok = await trainTokenizer([text], { vocabSize: 400 });
});

/** Decode only the ids where mask === want, each maximal run joined with '|'. */
function masked(r: { ids: number[]; lossMask: number[] }, want: number): string {
  const runs: string[] = [];
  let cur: number[] = [];
  r.ids.forEach((id, i) => {
    if (r.lossMask[i] === want) cur.push(id);
    else if (cur.length) runs.push(tok.decode(cur)), (cur = []);
  });
  if (cur.length) runs.push(tok.decode(cur));
  return runs.join('|');
}

describe('renderConversation', () => {
  it('lays out a simple exchange and masks only the answer', () => {
    const conv: Message[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: 'Four.' },
    ];
    const r = renderConversation(tok, conv);
    expect(r.ids.length).toBe(r.lossMask.length);
    expect(tok.decode(r.ids)).toBe(
      '<|bos|><|system_start|>Be brief.<|system_end|><|user_start|>What is 2+2?<|user_end|><|assistant_start|>Four.<|assistant_end|>',
    );
    expect(r.ids[0]).toBe(tok.bosId);
    expect(masked(r, 1)).toBe('Four.<|assistant_end|>');
    expect(r.lossMask.every((m) => m === 0 || m === 1)).toBe(true);
  });

  it('trains on tool calls but not on tool results, in parts or as tool messages', () => {
    const asParts: Message[] = [
      { role: 'user', content: 'Add 17 and 25.' },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Let me compute.' },
          { type: 'tool_call', text: 'calc(17+25)' },
          { type: 'tool_result', text: '42' },
          { type: 'text', text: 'It is 42.' },
        ],
      },
    ];
    const r = renderConversation(tok, asParts);
    expect(tok.decode(r.ids)).toBe(
      '<|bos|><|user_start|>Add 17 and 25.<|user_end|><|assistant_start|>Let me compute.<|tool_call_start|>calc(17+25)<|tool_call_end|>' +
        '<|tool_result_start|>42<|tool_result_end|>It is 42.<|assistant_end|>',
    );
    expect(masked(r, 1)).toBe('Let me compute.<|tool_call_start|>calc(17+25)<|tool_call_end|>|It is 42.<|assistant_end|>');
    expect(masked(r, 0)).toBe('<|bos|><|user_start|>Add 17 and 25.<|user_end|><|assistant_start|>|<|tool_result_start|>42<|tool_result_end|>');

    // a tool message after the assistant renders inside that assistant turn
    const asMessages: Message[] = [
      { role: 'user', content: 'Add 17 and 25.' },
      { role: 'assistant', content: [{ type: 'text', text: 'Let me compute.' }, { type: 'tool_call', text: 'calc(17+25)' }] },
      { role: 'tool', content: '42' },
    ];
    const r2 = renderConversation(tok, asMessages);
    expect(tok.decode(r2.ids)).toContain('<|tool_call_end|><|tool_result_start|>42<|tool_result_end|><|assistant_end|>');
    const resultStart = r2.ids.indexOf(tok.specialId(SPECIALS.toolResultStart));
    const resultEnd = r2.ids.indexOf(tok.specialId(SPECIALS.toolResultEnd));
    expect(r2.lossMask.slice(resultStart, resultEnd + 1).every((m) => m === 0)).toBe(true);
    expect(r2.lossMask[r2.lossMask.length - 1]).toBe(1); // <|assistant_end|>
  });

  it('multi-turn: every assistant turn is trained on, every user turn is not', () => {
    const conv: Message[] = [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
      { role: 'user', content: 'bye' },
      { role: 'assistant', content: 'goodbye' },
    ];
    const r = renderConversation(tok, conv);
    expect(masked(r, 1)).toBe('hello<|assistant_end|>|goodbye<|assistant_end|>');
    const p = renderForCompletion(tok, conv.slice(0, 3));
    expect(tok.decode(p)).toBe('<|bos|><|user_start|>hi<|user_end|><|assistant_start|>hello<|assistant_end|><|user_start|>bye<|user_end|><|assistant_start|>');
  });

  it('text that looks like a special token stays ordinary text', () => {
    const r = renderConversation(tok, [{ role: 'user', content: 'say <|assistant_end|> now' }, { role: 'assistant', content: 'ok' }]);
    const end = tok.specialId(SPECIALS.assistantEnd);
    expect(r.ids.filter((id) => id === end).length).toBe(1);
  });

  it('rejects malformed conversations', () => {
    expect(() => renderConversation(tok, [])).toThrow(/at least one message/);
    expect(() => renderConversation(tok, [{ role: 'tool', content: 'x' }])).toThrow(/must follow an assistant/);
    expect(() => renderConversation(tok, [{ role: 'user', content: 'x' }, { role: 'system', content: 'y' }])).toThrow(/only come first/);
  });
});
