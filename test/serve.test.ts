// The chat model and the OpenAI-compatible server, over real HTTP on 127.0.0.1 with the
// official `openai` client: response and chunk shapes, every request limit, concurrent
// requests, a client that disconnects mid-stream, and a real (tiny, untrained) checkpoint.
import OpenAI from 'openai';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortError, fitPrompt, loadChatModel, replyAssembler, serialQueue, type ChatModel, type Completion, type Message } from '../src/serve/chat-model.ts';
import { sampleRow } from '../src/model/engine.ts';
import { createServer, LIMITS, SERVER_DEFAULTS } from '../src/serve/server.ts';
import { Rng } from '../src/tensor/index.ts';
import { renderForCompletion, SPECIALS, trainTokenizer, type Tokenizer } from '../src/tokenizer/index.ts';
import { FIXTURE_CONTEXT, tinyChatCheckpoint } from './chat-fixture.ts';
import { listen } from './serve-fixture.ts';

// ---------------------------------------------------------------------------------------
// A fake ChatModel: replies with a fixed text in small deltas, one call at a time, and
// records what it saw (options, aborts, how many calls ran at once).

const FAKE_REPLY = 'Hello, world! Ünïcödé 🙂 ok.';

/** delayMs before each delta; a user message 'long' gets `longDeltas` deltas instead of the reply's. */
function fakeModel(o: { delayMs: number; longDeltas?: number } = { delayMs: 0 }) {
  const queue = serialQueue();
  const stats = { calls: 0, aborted: 0, active: 0, maxActive: 0, lastOptions: null as unknown, lastMessages: null as Message[] | null };
  const model: ChatModel = {
    id: 'fake-model',
    contextLength: 64,
    complete(messages, opts, onText, signal) {
      stats.calls++;
      stats.lastOptions = opts;
      stats.lastMessages = messages;
      return queue(async () => {
        stats.active++;
        stats.maxActive = Math.max(stats.maxActive, stats.active);
        try {
          // split by code points so a delta never cuts a character (as the real model guarantees)
          const chars = [...FAKE_REPLY];
          const n = messages.at(-1)?.content === 'long' && o.longDeltas ? o.longDeltas : chars.length;
          let sent = 0;
          for (let i = 0; i < n; i++) {
            await new Promise((r) => setTimeout(r, o.delayMs));
            if (signal?.aborted) {
              stats.aborted++;
              throw abortError();
            }
            const piece = chars.slice(i % chars.length, (i % chars.length) + 1).join('');
            onText?.(piece, 'text');
            sent++;
          }
          const text = Array.from({ length: sent }, (_, i) => chars[i % chars.length]).join('');
          const c: Completion = { text, finishReason: 'stop', promptTokens: 7, completionTokens: sent };
          return c;
        } finally {
          stats.active--;
        }
      });
    },
  };
  return { model, stats };
}


const user = (content: string) => ({ role: 'user' as const, content });

// ---------------------------------------------------------------------------------------

describe('fitPrompt, top_p, serialQueue', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await trainTokenizer(['the user asks and the assistant answers. '.repeat(30)], { vocabSize: 300 });
  });

  it('keeps everything that fits, else drops the oldest turns and keeps the system message', () => {
    const conv: Message[] = [
      { role: 'system', content: 'Be brief.' },
      user('first question ' + 'x'.repeat(100)),
      { role: 'assistant', content: 'first answer ' + 'y'.repeat(100) },
      user('second question'),
    ];
    const full = renderForCompletion(tok, conv);
    expect(fitPrompt(tok, conv, full.length + 10, 10)).toEqual({ ids: full, dropped: 0 });
    // one token short of the whole conversation: the first turns go, system + last question stay
    const { ids, dropped } = fitPrompt(tok, conv, full.length + 9, 10);
    expect(dropped).toBeGreaterThan(0);
    expect(ids).toEqual(renderForCompletion(tok, [conv[0], ...conv.slice(1 + dropped)]));
    expect(tok.decode(ids)).toMatch(/^<\|bos\|><\|system_start\|>Be brief\.<\|system_end\|>.*second question<\|user_end\|><\|assistant_start\|>$/);
    expect(ids.length + 10).toBeLessThanOrEqual(full.length + 9);
  });

  it('a cut never leaves a tool message first', () => {
    const conv: Message[] = [
      user('a'.repeat(80)),
      { role: 'assistant', content: [{ type: 'tool_call', text: 'calc(2+2)' }] },
      { role: 'tool', content: '4' },
      user('q'),
    ];
    // room for the last question only: the cut after the assistant turn lands on its tool
    // result, which must go with it (rendering a conversation that starts with a tool
    // message would throw)
    const last = renderForCompletion(tok, [conv[3]]);
    expect(fitPrompt(tok, conv, last.length + 1, 1)).toEqual({ ids: last, dropped: 3 });
  });

  it('rejects a last message that cannot fit, naming the numbers', () => {
    expect(() => fitPrompt(tok, [user('z'.repeat(400))], 64, 8)).toThrow(/needs \d+ tokens but only 56 of the model's 64-token context are left after max_tokens=8/);
    expect(() => fitPrompt(tok, [user('hi')], 64, 64)).toThrow(/only 0 of/);
  });

  it('replyAssembler streams whole characters only, and splits tool calls and results into parts', () => {
    // the tokenizer never saw these characters: each is 2 or 4 single-byte tokens
    const ids = tok.encodeOrdinary('é🙂ok');
    expect(ids.length).toBeGreaterThanOrEqual(7);
    const deltas: string[] = [];
    const r = replyAssembler(tok, (d) => deltas.push(d));
    ids.forEach(r.push);
    expect(r.finish()).toEqual({ text: 'é🙂ok', parts: [{ type: 'text', text: 'é🙂ok' }] });
    expect(deltas.join('')).toBe('é🙂ok');
    expect(deltas.some((d) => d.includes('\uFFFD'))).toBe(false); // no delta held half a character
    expect(deltas.slice(0, 2)).toEqual(['é', '🙂']); // ... and none waited longer than its last byte

    const sp = (n: string) => tok.specialId(n);
    const seq = [
      ...tok.encodeOrdinary('Let me check.'), sp(SPECIALS.toolCallStart), ...tok.encodeOrdinary('calc(2+2)'), sp(SPECIALS.toolCallEnd),
      sp(SPECIALS.toolResultStart), ...tok.encodeOrdinary('4'), sp(SPECIALS.toolResultEnd), ...tok.encodeOrdinary('Four 🙂'),
    ];
    const kinds: string[] = [];
    const r2 = replyAssembler(tok, (_d, k) => kinds.push(k));
    seq.forEach(r2.push);
    expect(r2.finish()).toEqual({
      text: 'Let me check.Four 🙂',
      parts: [{ type: 'text', text: 'Let me check.' }, { type: 'tool_call', text: 'calc(2+2)' }, { type: 'tool_result', text: '4' }, { type: 'text', text: 'Four 🙂' }],
    });
    expect(kinds.filter((k, i) => k !== kinds[i - 1])).toEqual(['text', 'tool_call', 'tool_result', 'text']); // deltas say their part
  });

  it("top_p reaches the engine's sampler: the smallest most-likely set reaching p", () => {
    // probabilities at temperature 1: 0.2, 0.5, 0.3 (as logits ln p). The chat model passes
    // top_p to the engine's sampleRow; the kept set shows in the renormalised log-prob.
    const l = Float32Array.from([Math.log(0.2), Math.log(0.5), Math.log(0.3)]);
    const kept = (p: number) => {
      const seen = new Set<number>();
      for (let s = 0; s < 40; s++) seen.add(sampleRow(l, { temperature: 1, topK: 0, topP: p }, new Rng(s)).id);
      return [...seen].sort();
    };
    expect(kept(0.5)).toEqual([1]);
    expect(kept(0.75)).toEqual([1, 2]); // 40 draws miss a token of probability 0.3/0.8 with chance (5/8)^40 ≈ 7e-9
    const s = sampleRow(l, { temperature: 1, topK: 0, topP: 0.75 }, new Rng(0));
    expect(s.logprob).toBeCloseTo(Math.log((s.id === 1 ? 0.5 : 0.3) / 0.8), 5); // renormalised over the kept 0.8
  });

  it('serialQueue runs one job at a time, in order, and survives a failure', async () => {
    const run = serialQueue();
    const log: string[] = [];
    const job = (name: string, fail = false) => run(async () => {
      log.push(name + '>');
      await new Promise((r) => setTimeout(r, 5));
      log.push('<' + name);
      if (fail) throw new Error(name);
      return name;
    });
    const results = await Promise.allSettled([job('a'), job('b', true), job('c')]);
    expect(log).toEqual(['a>', '<a', 'b>', '<b', 'c>', '<c']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });
});

describe('server with a fake model', () => {
  let s: Awaited<ReturnType<typeof listen>>;
  let fake: ReturnType<typeof fakeModel>;
  beforeAll(async () => {
    fake = fakeModel({ delayMs: 0 });
    s = await listen(fake.model);
  });
  afterAll(() => s.app.close());

  it('answers a non-streaming request in the chat.completion shape', async () => {
    const r = await s.client.chat.completions.create({ model: 'anything', messages: [{ role: 'system', content: 'sys' }, user('hi')], temperature: 0.3, top_p: 0.9, max_tokens: 12, seed: 5 });
    expect(r.id).toMatch(/^chatcmpl-[0-9a-f]{24}$/);
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe('fake-model');
    expect(Math.abs(r.created - Date.now() / 1000)).toBeLessThan(60);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]).toMatchObject({ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: FAKE_REPLY } });
    expect(r.usage).toEqual({ prompt_tokens: 7, completion_tokens: [...FAKE_REPLY].length, total_tokens: 7 + [...FAKE_REPLY].length });
    // the request's settings reach the model
    expect(fake.stats.lastOptions).toMatchObject({ maxTokens: 12, temperature: 0.3, topP: 0.9, seed: 5 });
    expect(fake.stats.lastMessages).toEqual([{ role: 'system', content: 'sys' }, user('hi')]);
  });

  it('max_completion_tokens wins over max_tokens; content parts are joined; developer is system', async () => {
    await s.client.chat.completions.create({
      model: 'm', max_tokens: 5, max_completion_tokens: 9,
      messages: [{ role: 'developer', content: 'dev' }, { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }],
    });
    expect(fake.stats.lastOptions).toMatchObject({ maxTokens: 9 });
    expect(fake.stats.lastMessages).toEqual([{ role: 'system', content: 'dev' }, user('ab')]);
  });

  it('streams chat.completion.chunk events, a usage chunk on request, then [DONE]', async () => {
    const stream = await s.client.chat.completions.create({ model: 'm', messages: [user('hi')], stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    const ids = new Set(chunks.map((c) => c.id));
    expect(ids.size).toBe(1);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'fake-model')).toBe(true);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(FAKE_REPLY);
    const withChoice = chunks.filter((c) => c.choices.length > 0);
    expect(withChoice.at(-1)!.choices[0].finish_reason).toBe('stop');
    expect(withChoice.slice(0, -1).every((c) => c.choices[0].finish_reason === null)).toBe(true);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 7, completion_tokens: [...FAKE_REPLY].length, total_tokens: 7 + [...FAKE_REPLY].length });
  });

  it('the raw stream is SSE: data lines, blank-line separated, ending in [DONE]; no usage unless asked', async () => {
    const r = await fetch(s.base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [user('hi')], stream: true }) });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const body = await r.text();
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = body.split('\n\n').filter(Boolean);
    expect(events.every((e) => e.startsWith('data: '))).toBe(true);
    expect(events.slice(0, -1).every((e) => !('usage' in JSON.parse(e.slice(6))))).toBe(true);
  });

  it('GET /v1/models, /health and the chat page', async () => {
    const models = await s.client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['fake-model']);
    expect(await (await fetch(s.base + '/health')).json()).toEqual({ status: 'ok', model: 'fake-model', queue: { generating: 0, waiting: 0, limit: SERVER_DEFAULTS.maxQueue } });
    const page = await fetch(s.base + '/');
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toMatch(/<script>[\s\S]*fetch\('\/v1\/chat\/completions'/);
    expect(html).toContain('.getReader()'); // the reply is read as a stream
    expect(html).not.toMatch(/__[A-Z_]+__/); // every placeholder filled in
    expect(html).toContain('value="0.7"');
  });

  it('answers every limit with a 4xx in the OpenAI error shape', async () => {
    const ok = [user('hi')];
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['too many messages', { messages: Array.from({ length: LIMITS.maxMessages + 1 }, () => user('a')) }, /messages/],
      ['a message too long', { messages: [user('a'.repeat(LIMITS.maxMessageChars + 1))] }, /messages\[0\]\.content has 8001 characters/],
      ['too many characters in all', { messages: Array.from({ length: 5 }, () => user('a'.repeat(7000))) }, /more than 32000 characters/],
      ['no messages', { messages: [] }, /messages/],
      ['messages missing', {}, /messages/],
      ['unknown role', { messages: [{ role: 'wizard', content: 'x' }] }, /role/],
      ['max_tokens 0', { messages: ok, max_tokens: 0 }, /max_tokens must be >= 1/],
      ['max_tokens above the context', { messages: ok, max_tokens: 65 }, /max_tokens must be <= 64/],
      ['max_completion_tokens 0', { messages: ok, max_completion_tokens: 0 }, /max_completion_tokens/],
      ['max_tokens not an integer', { messages: ok, max_tokens: 2.5 }, /max_tokens must be integer/],
      ['temperature above 2', { messages: ok, temperature: 2.5 }, /temperature must be <= 2/],
      ['temperature below 0', { messages: ok, temperature: -0.1 }, /temperature must be >= 0/],
      ['temperature as a string', { messages: ok, temperature: '0.5' }, /temperature must be number/],
      ['top_p 0', { messages: ok, top_p: 0 }, /top_p must be > 0/],
      ['top_p above 1', { messages: ok, top_p: 1.5 }, /top_p must be <= 1/],
      ['n = 2', { messages: ok, n: 2 }, /n must be <= 1/],
      ['n = 0', { messages: ok, n: 0 }, /n must be >= 1/],
      ['max_tokens huge', { messages: ok, max_tokens: 1e12 }, /max_tokens must be <= 64/],
      ['max_tokens null', { messages: ok, max_tokens: null }, /max_tokens must be integer/],
      ['stream not a boolean', { messages: ok, stream: 'yes' }, /stream must be boolean/],
      ['stream_options a number', { messages: ok, stream_options: 5 }, /stream_options must be null or object/],
      ['messages a string', { messages: 'hi' }, /messages must be array/],
      ['a message not an object', { messages: ['hi'] }, /messages\[0\] must be object/],
      ['role missing', { messages: [{ content: 'x' }] }, /messages\[0\] must have required property 'role'/],
      ['unknown role, named with the allowed ones', { messages: [{ role: 'wizard', content: 'x' }] }, /allowed values: system, developer, user, assistant, tool$/],
      ['content a number', { messages: [{ role: 'user', content: 5 }] }, /messages\[0\]\.content must be string, null or array/],
      ['content missing', { messages: [{ role: 'user' }] }, /messages\[0\]\.content is missing: a user message needs content/],
      ['content null for a tool', { messages: [user('a'), { role: 'assistant', content: 'b' }, { role: 'tool', content: null }] }, /messages\[2\]\.content is missing/],
      ['an image part', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, /messages\[0\]\.content\[0\]\.type must be equal to constant "text"/],
      ['a text part without text', { messages: [{ role: 'user', content: [{ type: 'text' }] }] }, /messages\[0\]\.content\[0\] has no text/],
      ['seed not an integer', { messages: ok, seed: 1.5 }, /seed must be integer/],
      ['top_k negative', { messages: ok, top_k: -1 }, /top_k must be >= 0/],
      ['body an array', [] as unknown as Record<string, unknown>, /body must be object/],
    ];
    const before = fake.stats.calls;
    for (const [name, body, msg] of cases) {
      const r = await fetch(s.base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(Array.isArray(body) ? body : { model: 'm', ...body }) });
      expect(r.status, name).toBe(400);
      const j = await r.json();
      expect(j.error.type, name).toBe('invalid_request_error');
      expect(j.error.message, name).toMatch(msg);
      expect(Object.keys(j.error).sort(), name).toEqual(['code', 'message', 'param', 'type']);
    }
    expect(fake.stats.calls).toBe(before); // none reached the model
    // the official client sees them as BadRequestError with the same body
    const err = await s.client.chat.completions.create({ model: 'm', messages: ok, temperature: 3 }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.status).toBe(400);
    expect(err.error).toMatchObject({ type: 'invalid_request_error', param: 'temperature' });
  });

  it('malformed JSON is a 400, a body over the byte limit a 413, unknown fields are ignored', async () => {
    const post = (body: string) => fetch(s.base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const bad = await post('{"messages": [');
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json', message: expect.stringMatching(/^the body is not valid JSON: ./) });
    const big = await post(JSON.stringify({ messages: [user('a'.repeat(LIMITS.bodyBytes + 1))] }));
    expect(big.status).toBe(413);
    expect((await big.json()).error).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' });
    const extra = await post(JSON.stringify({ messages: [user('hi')], frobnicate: true, logit_bias: {} }));
    expect(extra.status).toBe(200);
    expect((await (await post(JSON.stringify({ messages: [user('a'.repeat(LIMITS.bodyBytes))] }))).json()).error.message).toBe(`the body is larger than ${LIMITS.bodyBytes} bytes`);
    const missing = await fetch(s.base + '/v1/nope');
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.type).toBe('invalid_request_error');
  });
});

describe('server: bodies that are not UTF-8 JSON (fake model)', () => {
  let s: Awaited<ReturnType<typeof listen>>;
  let fake: ReturnType<typeof fakeModel>;
  beforeAll(async () => {
    fake = fakeModel({ delayMs: 0 });
    s = await listen(fake.model);
  });
  afterAll(() => s.app.close());

  const send = (body: Uint8Array | string, contentType?: string) =>
    fetch(s.base + '/v1/chat/completions', { method: 'POST', headers: contentType ? { 'content-type': contentType } : {}, body: body as BodyInit });
  const bytes = (...pieces: (string | number[])[]) => Buffer.concat(pieces.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

  it('each is refused with its reason, and none reaches the model', async () => {
    const before = fake.stats.calls;
    const json = 'application/json';
    const cases: [string, Uint8Array | string, string | undefined, number, string, RegExp][] = [
      // 0xff never occurs in UTF-8; 0xc3 starts a 2-byte character that "(" does not finish
      ['an invalid byte', bytes('{"messages":[{"role":"user","content":"a', [0xff, 0xfe], '"}]}'), json, 400, 'invalid_encoding', /^the body is not valid UTF-8/],
      ['a truncated character', bytes('{"messages":[{"role":"user","content":"', [0xc3], '("}]}'), json, 400, 'invalid_encoding', /not valid UTF-8/],
      ['Latin-1 text', Buffer.from('{"messages":[{"role":"user","content":"café"}]}', 'latin1'), json, 400, 'invalid_encoding', /not valid UTF-8/],
      ['a charset other than UTF-8', JSON.stringify({ messages: [user('hi')] }), 'application/json; charset=iso-8859-1', 415, 'unsupported_media_type', /charset=iso-8859-1/],
      ['half a surrogate pair', '{"messages":[{"role":"user","content":"a\\ud800b"}]}', json, 400, 'invalid_encoding', /"content" holds half of a UTF-16 surrogate pair/],
      ['an empty body', '', json, 400, 'invalid_json', /^the body is empty/],
      ['a __proto__ key', '{"messages":[{"role":"user","content":"a"}],"__proto__":{"x":1}}', json, 400, 'invalid_json', /"__proto__" key/],
      ['text/plain', JSON.stringify({ messages: [user('hi')] }), 'text/plain', 415, 'unsupported_media_type', /content-type: application\/json \(got text\/plain\)/],
      ['a form', 'messages=hi', 'application/x-www-form-urlencoded', 415, 'unsupported_media_type', /got application\/x-www-form-urlencoded/],
    ];
    for (const [name, body, type, status, code, msg] of cases) {
      const r = await send(body, type);
      expect(r.status, name).toBe(status);
      const j = await r.json();
      expect(j.error, name).toMatchObject({ type: 'invalid_request_error', code, param: null });
      expect(j.error.message, name).toMatch(msg);
    }
    expect(fake.stats.calls).toBe(before);
  });

  it('UTF-8 that is valid gets through whole: a BOM, a charset=utf-8, pairs of surrogates as escapes', async () => {
    for (const [body, type] of [
      [bytes([0xef, 0xbb, 0xbf], JSON.stringify({ messages: [user('café 🙂')] })), 'application/json'],
      [JSON.stringify({ messages: [user('café 🙂')] }), 'application/json; charset=UTF-8'],
      ['{"messages":[{"role":"user","content":"caf\\u00e9 \\ud83d\\ude42"}]}', 'application/json'],
    ] as const) {
      const r = await send(body, type);
      expect(r.status).toBe(200);
      expect(fake.stats.lastMessages).toEqual([user('café 🙂')]);
    }
  });
});

describe('server concurrency and disconnects (fake model)', () => {
  it('8 concurrent requests are all answered, one generation at a time', async () => {
    const fake = fakeModel({ delayMs: 1 });
    const s = await listen(fake.model);
    try {
      const rs = await Promise.all(Array.from({ length: 8 }, (_, i) =>
        i % 2
          ? s.client.chat.completions.create({ model: 'm', messages: [user(`q${i}`)] }).then((r) => r.choices[0].message.content)
          : s.client.chat.completions.create({ model: 'm', messages: [user(`q${i}`)], stream: true }).then(async (st) => {
              let t = '';
              for await (const c of st) t += c.choices[0]?.delta.content ?? '';
              return t;
            }),
      ));
      expect(rs).toEqual(Array(8).fill(FAKE_REPLY));
      expect(fake.stats.calls).toBe(8);
      expect(fake.stats.maxActive).toBe(1);
    } finally {
      await s.app.close();
    }
  });

  it('a client that drops its stream stops its generation and frees the model', async () => {
    const fake = fakeModel({ delayMs: 5, longDeltas: 2000 }); // ~10 s if nobody stopped it
    const s = await listen(fake.model);
    try {
      const t0 = Date.now();
      const stream = await s.client.chat.completions.create({ model: 'm', messages: [user('long')], stream: true });
      let got = 0;
      for await (const c of stream) {
        if (c.choices[0]?.delta.content) got++;
        if (got === 3) break; // leaving the loop aborts the HTTP request
      }
      // the server notices the closed socket and the model sees the abort
      for (let i = 0; i < 200 && fake.stats.aborted === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(fake.stats.aborted).toBe(1);
      // ... and the next request gets the model (it is short: answered in well under the 10 s)
      const next = fetch(s.base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [user('hi')], max_tokens: 3 }) });
      const r = await next;
      expect(r.status).toBe(200);
      expect(Date.now() - t0).toBeLessThan(9_000); // the 2000-delta generation did not run to its end
    } finally {
      await s.app.close();
    }
  });
});

describe('server: a non-streaming client that leaves', () => {
  it('aborts its generation too', async () => {
    const fake = fakeModel({ delayMs: 5, longDeltas: 2000 });
    const s = await listen(fake.model);
    try {
      const ac = new AbortController();
      const req = fetch(s.base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [user('long')] }), signal: ac.signal });
      await new Promise((r) => setTimeout(r, 100));
      ac.abort();
      await expect(req).rejects.toMatchObject({ name: 'AbortError' });
      for (let i = 0; i < 200 && fake.stats.aborted === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(fake.stats.aborted).toBe(1);
    } finally {
      await s.app.close();
    }
  });
});

describe('server with a real tiny checkpoint', () => {
  let s: Awaited<ReturnType<typeof listen>>;
  let model: Awaited<ReturnType<typeof loadChatModel>>;
  beforeAll(async () => {
    model = await loadChatModel(await tinyChatCheckpoint());
    s = await listen(model);
  });
  afterAll(async () => {
    await s.app.close();
    model.dispose();
  });

  it('streamed deltas join to the same reply as a non-streamed request with the same seed', async () => {
    const req = { model: model.id, messages: [{ role: 'system' as const, content: 'Be kind.' }, user('Hello there!')], max_tokens: 20, temperature: 0.9, top_p: 0.95, seed: 3 };
    const whole = await s.client.chat.completions.create(req);
    const stream = await s.client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    let text = '', finish: string | null = null, usage: OpenAI.CompletionUsage | undefined;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
      usage = c.usage ?? usage;
    }
    expect(text).toBe(whole.choices[0].message.content);
    expect(finish).toBe(whole.choices[0].finish_reason);
    expect(usage).toEqual(whole.usage);
    expect(whole.usage!.completion_tokens).toBeLessThanOrEqual(20);
    expect(whole.usage!.completion_tokens === 20).toBe(whole.choices[0].finish_reason === 'length');
    expect(whole.model).toBe(model.id);
  });

  it('8 concurrent requests on the real model are all answered', async () => {
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => s.client.chat.completions.create({ model: 'm', messages: [user(`question ${i}`)], max_tokens: 8, seed: i })));
    for (const r of rs) {
      expect(r.choices[0].finish_reason).toMatch(/^(stop|length)$/);
      expect(r.usage!.completion_tokens).toBeLessThanOrEqual(8);
    }
    // same seed, same prompt → same reply, however the requests were interleaved on the wire
    const again = await s.client.chat.completions.create({ model: 'm', messages: [user('question 5')], max_tokens: 8, seed: 5 });
    expect(again.choices[0].message.content).toBe(rs[5].choices[0].message.content);
  });

  it('a conversation that cannot fit is a 400 context_length_exceeded; a long history is truncated', async () => {
    const err = await s.client.chat.completions.create({ model: 'm', messages: [user('How are you today? '.repeat(100))], max_tokens: 10 }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.error).toMatchObject({ code: 'context_length_exceeded', param: 'messages' });
    // streamed too: the check comes before the first event, so it is still a plain 400
    const streamErr = await s.client.chat.completions.create({ model: 'm', messages: [user('How are you today? '.repeat(100))], max_tokens: 10, stream: true }).catch((e) => e);
    expect(streamErr).toBeInstanceOf(OpenAI.BadRequestError);
    expect(streamErr.error).toMatchObject({ code: 'context_length_exceeded' });
    // many turns: the old ones are dropped, the reply still comes, and the prompt fits
    const turns: OpenAI.ChatCompletionMessageParam[] = [];
    for (let i = 0; i < 30; i++) turns.push(user(`What is two plus two? ${i}`), { role: 'assistant', content: 'Four.' });
    const r = await s.client.chat.completions.create({ model: 'm', messages: [...turns, user('Hello there!')], max_tokens: 10 });
    expect(r.usage!.prompt_tokens + 10).toBeLessThanOrEqual(FIXTURE_CONTEXT);
  });

  it('conversations the model cannot render are 400s naming the message', async () => {
    const cases: [string, OpenAI.ChatCompletionMessageParam[], RegExp][] = [
      ['only a system message', [{ role: 'system', content: 'x' }], /needs at least one user message/],
      ['a system message second', [user('a'), { role: 'system', content: 'x' }], /message 1: a system message can only come first/],
      // not trimmed away as the cut of a long history would be: the client sent it
      ['a tool message first', [{ role: 'tool', content: '4', tool_call_id: 'x' }, user('a')], /message 0: a tool message must follow an assistant message/],
    ];
    for (const [name, messages, msg] of cases) {
      const err = await s.client.chat.completions.create({ model: 'm', messages, max_tokens: 4 }).catch((e) => e);
      expect(err, name).toBeInstanceOf(OpenAI.BadRequestError);
      expect(err.error, name).toMatchObject({ type: 'invalid_request_error', param: 'messages' });
      expect(err.error.message, name).toMatch(msg);
    }
  });

  it('the real model stops promptly on abort, and skips a call aborted while it waits', async () => {
    const ac = new AbortController();
    let deltas = 0;
    const p = model.complete([user('Hello')], { maxTokens: 100, temperature: 1, topP: 1, seed: 1 }, () => {
      deltas++;
      if (deltas === 2) ac.abort();
    }, ac.signal);
    const queued = new AbortController();
    let queuedDeltas = 0;
    const q = model.complete([user('Hello')], { maxTokens: 100, temperature: 1, topP: 1, seed: 1 }, () => queuedDeltas++, queued.signal);
    queued.abort();
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    await expect(q).rejects.toMatchObject({ name: 'AbortError' });
    expect(deltas).toBe(2); // the abort is checked before every token: nothing after it
    expect(queuedDeltas).toBe(0);
  });
});

// The chat page in a real browser (headless Chromium, as test/web.test.ts uses): it streams a
// reply into the page, shows tool calls in their own boxes, and sends the history next turn.
const CHROMIUM = '/usr/bin/chromium';
describe.skipIf(!existsSync(CHROMIUM))('the chat page', () => {
  it('streams replies with tool parts and keeps the conversation', async () => {
    const queue = serialQueue();
    const seen: Message[][] = [];
    const model: ChatModel = {
      id: 'page-model',
      contextLength: 64,
      complete(messages, _o, onText) {
        seen.push(messages);
        return queue(async () => {
          for (const [text, part] of [['Hel', 'text'], ['lo 🙂', 'text'], ['calc(2+2)', 'tool_call'], ['4', 'tool_result'], [' done', 'text']] as const) {
            await new Promise((r) => setTimeout(r, 10));
            onText?.(text, part);
          }
          return { text: 'Hello 🙂 done', finishReason: 'stop' as const, promptTokens: 3, completionTokens: 5 };
        });
      },
    };
    const app = createServer(model);
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(url + '/');
      await page.fill('#system', 'Be kind.');
      for (const [i, q] of ['hi there', 'again'].entries()) {
        await page.fill('#input', q);
        await page.press('#input', 'Enter');
        await page.waitForFunction((n) => document.querySelectorAll('.meta').length === n, i + 1, { timeout: 10_000 });
      }
      const reply = page.locator('.assistant').first();
      expect(await reply.locator('span[data-type=text]').allTextContents()).toEqual(['Hello 🙂', ' done']);
      expect(await reply.locator('.tool_call').textContent()).toBe('calc(2+2)');
      expect(await reply.locator('.tool_result').textContent()).toBe('4');
      expect(await reply.locator('.meta').textContent()).toBe('stop · 3 prompt + 5 reply tokens');
      expect(errors).toEqual([]);
      // the second request carried the system message and the first exchange
      expect(seen[1]).toEqual([
        { role: 'system', content: 'Be kind.' }, user('hi there'), { role: 'assistant', content: 'Hello 🙂 done' }, user('again'),
      ]);
    } finally {
      await browser.close();
      await app.close();
    }
  }, 60_000);
});
