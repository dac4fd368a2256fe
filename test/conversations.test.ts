// Conversations for SFT: parsing both JSONL layouts (tool calls included), errors naming
// file:line, the --data mixing spec, over-long conversations counted, and packing that keeps
// every target aligned with its mask (y shifted by one) and never splits a conversation.
import { beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ConversationBatches,
  formatRenderSummary,
  loadConversationMix,
  parseConversationsJsonl,
  parseDataSpec,
  readConversationFile,
  renderConversations,
  weightConversations,
} from '../src/data/conversations.ts';
import { Tokenizer, trainTokenizer, renderConversation, SPECIALS, type Message, type Rendered } from '../src/tokenizer/index.ts';
import { Rng } from '../src/tensor/random.ts';
import { UserError } from '../src/util/errors.ts';
import { gsm8kToExample } from '../src/data/gsm8k.ts';
import { tempDir } from './tmp.ts';

let tok: Tokenizer;
beforeAll(async () => {
  tok = await trainTokenizer(['the user asks what is two plus two and the assistant answers four. calc(2+2) = 4 '.repeat(40)], { vocabSize: 320 });
});

const line = (o: unknown) => JSON.stringify(o);

// ---- a smol-smoltalk-shaped parquet file, written byte by byte ------------------------------
// hyparquet only reads, so (as in test/data-parquet.test.ts, which writes a flat column) the
// fixture is built by hand: a nested column `messages: list<struct<content, role>>`, all
// REQUIRED except the repeated level, so each leaf column carries repetition levels (0 = a
// new row, 1 = another message in the same row) and definition levels (all 1: present).
// Thrift compact protocol: a field byte (id delta << 4 | type), zigzag varints, lists with a
// (size << 4 | element type) header.
const I32 = 5, I64 = 6, BINARY = 8, LIST = 9, STRUCT = 12;
type Field = [id: number, type: number, value: unknown, elemType?: number];
function varint(out: number[], n: bigint): void {
  for (; n >= 0x80n; n >>= 7n) out.push(Number(n & 0x7fn) | 0x80);
  out.push(Number(n));
}
const zigzag = (n: number) => (BigInt(n) >= 0n ? BigInt(n) << 1n : (-BigInt(n) << 1n) - 1n);
function writeValue(out: number[], type: number, v: unknown, elemType?: number): void {
  if (type === I32 || type === I64) varint(out, zigzag(v as number));
  else if (type === BINARY) {
    const b = new TextEncoder().encode(v as string);
    varint(out, BigInt(b.length));
    out.push(...b);
  } else if (type === LIST) {
    const xs = v as unknown[];
    out.push((xs.length << 4) | elemType!); // fewer than 15 elements here
    for (const x of xs) writeValue(out, elemType!, x);
  } else writeStruct(out, v as Field[]);
}
function writeStruct(out: number[], fields: Field[]): void {
  let last = 0;
  for (const [id, type, value, elemType] of fields) {
    out.push(((id - last) << 4) | type);
    writeValue(out, type, value, elemType);
    last = id;
  }
  out.push(0);
}
const u32 = (n: number) => [n & 255, (n >> 8) & 255, (n >> 16) & 255, n >>> 24];
/** RLE/bit-packing hybrid, RLE runs only (bit width 1): (count << 1) header, then the value. */
function rleLevels(levels: number[]): number[] {
  const runs: number[] = [];
  for (let i = 0; i < levels.length; ) {
    let j = i;
    while (j < levels.length && levels[j] === levels[i]) j++;
    varint(runs, BigInt((j - i) << 1));
    runs.push(levels[i]);
    i = j;
  }
  return [...u32(runs.length), ...runs];
}
function makeMessagesParquet(rows: { role: string; content: string }[][]): Uint8Array {
  const bytes: number[] = [...new TextEncoder().encode('PAR1')];
  const rep = rows.flatMap((r) => r.map((_, i) => (i === 0 ? 0 : 1)));
  const chunks: Field[][] = [];
  for (const leaf of ['content', 'role'] as const) {
    const values = rows.flatMap((r) => r.map((m) => m[leaf]));
    const body = [...rleLevels(rep), ...rleLevels(values.map(() => 1))];
    for (const v of values) {
      const b = new TextEncoder().encode(v);
      body.push(...u32(b.length), ...b);
    }
    const header: number[] = [];
    writeStruct(header, [[1, I32, 0], [2, I32, body.length], [3, I32, body.length], [5, STRUCT, [[1, I32, values.length], [2, I32, 0], [3, I32, 3], [4, I32, 3]]]]);
    const offset = bytes.length, size = header.length + body.length;
    bytes.push(...header, ...body);
    chunks.push([
      [2, I64, offset],
      [3, STRUCT, [[1, I32, 6], [2, LIST, [0, 3], I32], [3, LIST, ['messages', 'list', 'element', leaf], BINARY], [4, I32, 0], [5, I64, values.length], [6, I64, size], [7, I64, size], [9, I64, offset]]],
    ]);
  }
  const meta: number[] = [];
  writeStruct(meta, [
    [1, I32, 1],
    [2, LIST, [
      [[4, BINARY, 'schema'], [5, I32, 1]],
      [[3, I32, 0], [4, BINARY, 'messages'], [5, I32, 1], [6, I32, 3]], // REQUIRED group, LIST
      [[3, I32, 2], [4, BINARY, 'list'], [5, I32, 1]], // REPEATED group
      [[3, I32, 0], [4, BINARY, 'element'], [5, I32, 2]], // REQUIRED group of two fields
      [[1, I32, 6], [3, I32, 0], [4, BINARY, 'content'], [6, I32, 0]], // BYTE_ARRAY, UTF8
      [[1, I32, 6], [3, I32, 0], [4, BINARY, 'role'], [6, I32, 0]],
    ], STRUCT],
    [3, I64, rows.length],
    [4, LIST, [[[1, LIST, chunks, STRUCT], [2, I64, bytes.length], [3, I64, rows.length]]], STRUCT],
  ]);
  bytes.push(...meta, ...u32(meta.length), ...new TextEncoder().encode('PAR1'));
  return Uint8Array.from(bytes);
}

describe('parsing', () => {
  it('reads OpenAI messages and MiniMind conversations alike', () => {
    const text = [
      line({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }),
      '',
      line({ conversations: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }),
    ].join('\n');
    const convs = parseConversationsJsonl(text, 'a.jsonl');
    expect(convs).toEqual([
      [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: [{ type: 'text', text: 'hello' }] }],
      [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [{ type: 'text', text: 'hello' }] }],
    ]);
  });

  it('maps OpenAI tool calls and tool messages into one assistant turn, rendered with the right mask', () => {
    const openai = line({
      messages: [
        { role: 'user', content: 'What is 2+2?' },
        { role: 'assistant', content: 'Let me check.', tool_calls: [{ type: 'function', function: { name: 'calc', arguments: '{"expression":"2+2"}' } }] },
        { role: 'tool', content: '4' },
        { role: 'assistant', content: 'The answer is 4.' },
      ],
    });
    const native = line({
      messages: [
        { role: 'user', content: 'What is 2+2?' },
        { role: 'assistant', content: [{ type: 'text', text: 'Let me check.' }, { type: 'tool_call', text: 'calc(2+2)' }, { type: 'tool_result', text: '4' }, { type: 'text', text: 'The answer is 4.' }] },
      ],
    });
    const [a, b] = parseConversationsJsonl(openai + '\n' + native, 'x.jsonl');
    expect(a).toEqual(b);
    const r = renderConversation(tok, a);
    expect(tok.decode(r.ids)).toBe(
      '<|bos|><|user_start|>What is 2+2?<|user_end|><|assistant_start|>Let me check.<|tool_call_start|>calc(2+2)<|tool_call_end|>' +
        '<|tool_result_start|>4<|tool_result_end|>The answer is 4.<|assistant_end|>',
    );
    // trained: the assistant's own words, its call and <|assistant_end|>; not the tool's "4"
    const trained = tok.decode(r.ids.filter((_, i) => r.lossMask[i] === 1));
    expect(trained).toBe('Let me check.<|tool_call_start|>calc(2+2)<|tool_call_end|>The answer is 4.<|assistant_end|>');
    // arguments that are not a one-string JSON object are used as written
    const raw = line({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: null, tool_calls: [{ function: { name: 'f', arguments: '{"a":1,"b":2}' } }] }] });
    expect(parseConversationsJsonl(raw, 'r.jsonl')[0][1]).toEqual({ role: 'assistant', content: [{ type: 'tool_call', text: 'f({"a":1,"b":2})' }] });
  });

  it("reads a GSM8K line (question, answer) as the same conversation as src/data/gsm8k.ts makes", () => {
    const item = { question: 'Natalia sold 48 clips. How many are half?', answer: 'Half is 48/2 = <<48/2=24>>24 clips.\n#### 24' };
    const [conv] = parseConversationsJsonl(line(item), 'g.jsonl');
    expect(conv).toEqual(gsm8kToExample(item).messages);
    expect(conv[1].content).toContainEqual({ type: 'tool_call', text: 'calc(48/2)' });
    expect(() => parseConversationsJsonl(line({ question: 'q', answer: 'no final line' }), 'g.jsonl')).toThrow(/^g\.jsonl:1/);
  });

  it('names file:line for bad JSON, unknown roles and misplaced messages', () => {
    const ok = line({ messages: [{ role: 'user', content: 'hi' }] });
    const cases: [string, RegExp][] = [
      ['{not json', /^f\.jsonl:2: not valid JSON/],
      [line({ messages: [{ role: 'robot', content: 'x' }] }), /^f\.jsonl:2: message 1: unknown role "robot" \(expected one of system, user, assistant, tool\)$/],
      [line({ messages: [{ role: 'user', content: 'x' }, { role: 'system', content: 'y' }] }), /^f\.jsonl:2: message 2: a system message can only come first$/],
      [line({ messages: [{ role: 'tool', content: '4' }] }), /^f\.jsonl:2: message 1: a tool message must follow an assistant message$/],
      [line({ messages: [{ role: 'user', content: 5 }] }), /^f\.jsonl:2: message 1: "content" must be a string/],
      [line({ text: 'hello' }), /^f\.jsonl:2: no "messages" or "conversations" field \(fields: text\)$/],
      [line({ messages: [] }), /^f\.jsonl:2: the conversation has no messages$/],
      [line({ messages: [{ role: 'assistant', content: [{ type: 'image', text: 'x' }] }] }), /^f\.jsonl:2: message 1: part 1 must be/],
    ];
    for (const [bad, re] of cases) {
      const f = () => parseConversationsJsonl(ok + '\n' + bad, 'f.jsonl');
      expect(f).toThrow(UserError);
      expect(f).toThrow(re);
    }
  });

  it('reads files and mixes them by weight', async () => {
    const dir = tempDir();
    const a = join(dir, 'a.jsonl'), b = join(dir, 'b.jsonl');
    const conv = (s: string) => line({ messages: [{ role: 'user', content: s }, { role: 'assistant', content: s.toUpperCase() }] });
    writeFileSync(a, ['a1', 'a2'].map(conv).join('\n') + '\n');
    writeFileSync(b, ['b1', 'b2', 'b3', 'b4'].map(conv).join('\n'));
    expect((await readConversationFile(a)).length).toBe(2);
    expect((await readConversationFile(b, { limit: 3 })).map((c) => c[0].content)).toEqual(['b1', 'b2', 'b3']);
    writeFileSync(join(dir, 'bad.jsonl'), conv('ok') + '\r\n\r\n' + '{"messages": [{"role": "bot", "content": "x"}]}\r\n');
    await expect(readConversationFile(join(dir, 'bad.jsonl'))).rejects.toThrow(/bad\.jsonl:3: message 1: unknown role "bot"/);
    await expect(readConversationFile(join(dir, 'nope.jsonl'))).rejects.toThrow(/conversation file not found: .*nope\.jsonl/);
    const mix = await loadConversationMix(`${a}:2,${b}:0.5`, 7);
    const users = mix.map((c) => c[0].content as string);
    expect(users.filter((u) => u === 'a1').length).toBe(2);
    expect(users.filter((u) => u === 'a2').length).toBe(2);
    const bs = users.filter((u) => u.startsWith('b'));
    expect(bs.length).toBe(2);
    expect(new Set(bs).size).toBe(2); // a half, without repeats
    expect(await loadConversationMix(`${a}:2,${b}:0.5`, 7)).toEqual(mix); // seeded
  });

  it('reads smol-smoltalk-shaped parquet (a nested "messages" column)', async () => {
    const dir = tempDir();
    const p = join(dir, 'train-00000-of-00004.parquet');
    const rows = [
      [{ role: 'user', content: 'Hi ✓' }, { role: 'assistant', content: 'Hello.' }],
      [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Why?' }, { role: 'assistant', content: 'Because.' }],
    ];
    writeFileSync(p, makeMessagesParquet(rows));
    const convs = await readConversationFile(p);
    expect(convs).toEqual(parseConversationsJsonl(rows.map((messages) => line({ messages })).join('\n'), 'same.jsonl'));
    expect(await readConversationFile(p, { limit: 1 })).toHaveLength(1);
  });

  it('parses --data specs', () => {
    expect(parseDataSpec('a.jsonl')).toEqual([{ path: 'a.jsonl', weight: 1 }]);
    expect(parseDataSpec('a.jsonl:3, dir/b.jsonl:0.25')).toEqual([{ path: 'a.jsonl', weight: 3 }, { path: 'dir/b.jsonl', weight: 0.25 }]);
    expect(parseDataSpec('C:\\data\\x.jsonl')).toEqual([{ path: 'C:\\data\\x.jsonl', weight: 1 }]);
    expect(() => parseDataSpec('a.jsonl:0')).toThrow(/weight must be a positive number/);
    expect(() => parseDataSpec('a.jsonl,,b.jsonl')).toThrow(/an empty entry/);
    const rng = new Rng(1);
    expect(weightConversations([1, 2, 3, 4], 1.5, rng).length).toBe(6);
  });
});

describe('rendering with a length limit', () => {
  const short: Message[] = [{ role: 'user', content: 'two' }, { role: 'assistant', content: 'four' }];
  const long: Message[] = [{ role: 'user', content: 'the user asks what is two plus two '.repeat(4) }, { role: 'assistant', content: 'four' }];
  const noAnswer: Message[] = [{ role: 'user', content: 'hi' }];

  it('counts truncated, skipped and target-less conversations', () => {
    const limit = renderConversation(tok, short).ids.length + 2;
    expect(renderConversation(tok, long).ids.length).toBeGreaterThan(limit);
    const t = renderConversations(tok, [short, long, noAnswer], { maxTokens: limit });
    // the long one, cut before its answer, has no targets left: counted twice over, dropped
    expect(t.summary).toMatchObject({ conversations: 3, kept: 1, truncated: 1, skipped: 0, noTargets: 2 });
    const s = renderConversations(tok, [short, long, noAnswer], { maxTokens: limit, overLong: 'skip' });
    expect(s.summary).toMatchObject({ conversations: 3, kept: 1, truncated: 0, skipped: 1, noTargets: 1 });
    expect(s.rendered[0]).toEqual(renderConversation(tok, short));
    expect(formatRenderSummary(s.summary)).toMatch(/^1 of 3 conversations kept \(0 truncated, 1 skipped as too long, 1 without assistant tokens\)/);
    // a truncation that keeps some answer tokens keeps the conversation
    const lr = renderConversation(tok, long);
    const cut = renderConversations(tok, [long], { maxTokens: lr.ids.length - 1 });
    expect(cut.summary).toMatchObject({ kept: 1, truncated: 1 });
    expect(cut.rendered[0].ids).toEqual(lr.ids.slice(0, -1));
  });
});

describe('ConversationBatches', () => {
  // synthetic rendered conversations with recognisable ids: conversation k is
  // [1000+k (its "bos"), 2000+k, 3000+k, ...], mask 0 on the first two tokens, 1 after
  const fake = (k: number, len: number): Rendered => ({
    ids: Array.from({ length: len }, (_, i) => (i + 1) * 1000 + k),
    lossMask: Array.from({ length: len }, (_, i) => (i < 2 ? 0 : 1)),
  });
  const lens = [5, 3, 7, 4, 9, 2, 6, 8, 3, 5];
  const convs = lens.map((n, k) => fake(k, n));
  const B = 3, T = 9;

  it('packs whole conversations, targets shifted by one and masked, padding ignored', () => {
    const pad = -7;
    const src = new ConversationBatches(convs, B, T, 42, { padId: pad });
    const seen: number[] = [];
    for (let step = 0; step < 4; step++) {
      const { x, y, tokens } = src.next();
      expect(x.length).toBe(B * T);
      let count = 0;
      for (let b = 0; b < B; b++) {
        const xr = [...x.subarray(b * T, (b + 1) * T)];
        const yr = [...y.subarray(b * T, (b + 1) * T)];
        // walk the row conversation by conversation
        let t = 0;
        while (t < T && xr[t] !== pad) {
          const k = xr[t] % 1000; // which conversation starts here
          expect(xr[t]).toBe(1000 + k); // rows hold whole conversations, each from its start
          const n = lens[k];
          seen.push(k);
          for (let i = 0; i < n; i++) {
            const pos = t + i;
            if (pos < T) expect(xr[pos]).toBe((i + 1) * 1000 + k);
            // the target at pos-1 is token i; trained only where token i's mask is 1
            if (pos >= 1) expect(yr[pos - 1]).toBe(i >= 2 ? (i + 1) * 1000 + k : -1);
          }
          t += n;
        }
        expect(t).toBeLessThanOrEqual(T + 1); // never past the row
        for (let p = t; p < T; p++) expect(xr[p]).toBe(pad);
        for (let p = Math.max(t - 1, 0); p < T; p++) expect(yr[p]).toBe(-1); // predicting padding
        count += yr.filter((v) => v !== -1).length;
      }
      expect(tokens).toBe(count);
    }
    // the first epoch visits every conversation exactly once, in a shuffled order
    const firstEpoch = seen.slice(0, convs.length);
    expect([...firstEpoch].sort((a, b) => a - b)).toEqual(lens.map((_, k) => k));
    expect(firstEpoch).not.toEqual(lens.map((_, k) => k));
  });

  it('a conversation that does not fit the rest of a row starts the next row', () => {
    // two conversations of 6 tokens in rows of T+1 = 10: one per row, never split
    const two = [fake(0, 6), fake(1, 6)];
    const { x } = new ConversationBatches(two, 2, 9, 0).next();
    expect(x[0] % 1000 === 0 || x[0] % 1000 === 1).toBe(true);
    expect(x[0]).toBe(1000 + (x[0] % 1000));
    expect(x[9]).toBe(1000 + (x[9] % 1000));
    expect(x[0]).not.toBe(x[9]);
    expect([...x.subarray(6, 9)]).toEqual([0, 0, 0]); // padded (default pad id 0)
  });

  it('is deterministic for a seed and resumes exactly from its state', () => {
    const a = new ConversationBatches(convs, B, T, 5);
    const b = new ConversationBatches(convs, B, T, 5);
    const c = new ConversationBatches(convs, B, T, 6);
    const ax = [a.next(), a.next()];
    expect([b.next(), b.next()]).toEqual(ax);
    expect(c.next().x).not.toEqual(ax[0].x);
    // save mid-stream (crossing epoch boundaries later), restore into a fresh source
    for (let i = 0; i < 5; i++) a.next();
    const st = JSON.parse(JSON.stringify(a.getState()));
    const resumed = new ConversationBatches(convs, B, T, 999);
    resumed.setState(st);
    for (let i = 0; i < 8; i++) expect(resumed.next()).toEqual(a.next());
    expect(a.getState().epoch).toBeGreaterThan(0);
  });

  it('rejects a conversation longer than a row and a mismatched state', () => {
    expect(() => new ConversationBatches([fake(0, 11)], 1, 9, 0)).toThrow(/more than a row/);
    expect(() => new ConversationBatches([], 1, 9, 0)).toThrow(UserError);
    const s = new ConversationBatches(convs, 1, 9, 0);
    expect(() => s.setState({ ...s.getState(), pos: 99 })).toThrow(/was the data changed/);
  });

  it('works end to end on rendered conversations: y is -1 exactly where the mask is 0', () => {
    const msgs: Message[][] = [
      [{ role: 'user', content: 'what is two plus two' }, { role: 'assistant', content: 'four' }],
      [{ role: 'user', content: 'two' }, { role: 'assistant', content: [{ type: 'tool_call', text: 'calc(2+2)' }, { type: 'tool_result', text: '4' }, { type: 'text', text: 'four' }] }],
    ];
    const { rendered } = renderConversations(tok, msgs, { maxTokens: 65 });
    const batch = new ConversationBatches(rendered, 1, 64, 3, { padId: tok.bosId }).next();
    // both fit in the row (the next epoch may follow them); over the first two conversations'
    // span the trained targets are exactly the masked-1 tokens of both
    const n = rendered[0].ids.length + rendered[1].ids.length;
    const want = rendered.flatMap((r) => r.ids.filter((_, i) => r.lossMask[i] === 1)).sort();
    const yHead = [...batch.y.subarray(0, n - 1)];
    expect(yHead.filter((v) => v !== -1).sort()).toEqual(want);
    expect(batch.tokens).toBeGreaterThanOrEqual(want.length);
    const bos = [...batch.x.subarray(0, n)].filter((v) => v === tok.bosId);
    expect(bos.length).toBe(2); // each conversation starts with its own <|bos|>
    expect(tok.decode(yHead.filter((v) => v !== -1))).toContain(SPECIALS.assistantEnd);
  });
});
