// The server under load, over real HTTP on 127.0.0.1 with the official `openai` client:
// 16 concurrent clients (half streaming) on a real tiny checkpoint, every reply checked for
// its shape and against the same request sent alone; and the queue's bound, on a fake model
// that holds its generation until the test lets it go (so "the queue is full" is a state the
// test sets up, not a race).
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortError, loadChatModel, serialQueue, type ChatModel } from '../src/serve/chat-model.ts';
import { tinyChatCheckpoint } from './chat-fixture.ts';
import { listen } from './serve-fixture.ts';

const user = (content: string) => ({ role: 'user' as const, content });
const QUESTIONS = ['Hello there!', 'How are you today?', 'What is two plus two?', 'Thank you.'];


/** One request of the load: who sent it, what it asked, what came back. */
interface Outcome {
  client: number;
  seed: number;
  question: string;
  maxTokens: number;
  stream: boolean;
  text: string;
  finish: string | null;
  usage: OpenAI.CompletionUsage;
}

describe('16 concurrent clients on a real tiny checkpoint', () => {
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

  it('answers all 64 requests (half streamed) with well-formed replies, each the same as when sent alone', async () => {
    const CLIENTS = 16, EACH = 4;
    const startedAt = Math.floor(Date.now() / 1000);
    const ids = new Set<string>();

    // client c sends EACH requests one after the other; even clients stream
    const one = async (c: number, k: number): Promise<Outcome> => {
      const seed = c * EACH + k;
      const req = { model: 'any', messages: [user(QUESTIONS[seed % QUESTIONS.length])], max_tokens: 6 + (seed % 11), temperature: 1, seed };
      const base = { client: c, seed, question: req.messages[0].content, maxTokens: req.max_tokens, stream: c % 2 === 0 };
      if (!base.stream) {
        const r = await s.client.chat.completions.create(req);
        expect(r.id).toMatch(/^chatcmpl-[0-9a-f]{24}$/);
        ids.add(r.id);
        expect(r).toMatchObject({ object: 'chat.completion', model: model.id });
        expect(r.created).toBeGreaterThanOrEqual(startedAt);
        expect(r.choices).toHaveLength(1);
        expect(r.choices[0]).toMatchObject({ index: 0, message: { role: 'assistant' } });
        expect(typeof r.choices[0].message.content).toBe('string');
        return { ...base, text: r.choices[0].message.content!, finish: r.choices[0].finish_reason, usage: r.usage! };
      }
      const stream = await s.client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
      const chunks: OpenAI.ChatCompletionChunk[] = [];
      for await (const ch of stream) chunks.push(ch);
      expect(new Set(chunks.map((ch) => ch.id)).size).toBe(1);
      ids.add(chunks[0].id);
      expect(chunks.every((ch) => ch.object === 'chat.completion.chunk' && ch.model === model.id)).toBe(true);
      expect(chunks[0].choices[0].delta.role).toBe('assistant');
      // one finish reason, on the last chunk with a choice; then the usage chunk, with none
      const withChoice = chunks.filter((ch) => ch.choices.length === 1);
      expect(withChoice.length).toBe(chunks.length - 1);
      expect(withChoice.map((ch) => ch.choices[0].finish_reason).filter((f) => f !== null)).toHaveLength(1);
      const last = chunks.at(-1)!;
      expect(last.choices).toEqual([]);
      const text = withChoice.map((ch) => ch.choices[0].delta.content ?? '').join('');
      return { ...base, text, finish: withChoice.at(-1)!.choices[0].finish_reason, usage: last.usage! };
    };
    const perClient = (c: number) => (async () => {
      const out: Outcome[] = [];
      for (let k = 0; k < EACH; k++) out.push(await one(c, k));
      return out;
    })();

    const settled = await Promise.allSettled(Array.from({ length: CLIENTS }, (_, c) => perClient(c)));
    const failures = settled.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    expect(failures).toEqual([]);
    const all = settled.flatMap((r) => (r as PromiseFulfilledResult<Outcome[]>).value);
    expect(all).toHaveLength(CLIENTS * EACH);
    expect(ids.size).toBe(CLIENTS * EACH); // every reply its own id

    for (const o of all) {
      const u = o.usage;
      expect(u.total_tokens, `seed ${o.seed}`).toBe(u.prompt_tokens + u.completion_tokens);
      expect(u.prompt_tokens).toBeGreaterThan(4); // 4 specials + the question
      expect(u.completion_tokens).toBeLessThanOrEqual(o.maxTokens);
      expect(['stop', 'length']).toContain(o.finish);
      expect(o.finish === 'length', `seed ${o.seed}`).toBe(u.completion_tokens === o.maxTokens);
    }

    // The same requests sent alone, one at a time, give the same replies: 64 requests in
    // flight did not mix one request's state (KV cache, sampler) into another's.
    for (const o of all.filter((_, i) => i % 4 === 0)) {
      const r = await s.client.chat.completions.create({ model: 'any', messages: [user(o.question)], max_tokens: o.maxTokens, temperature: 1, seed: o.seed });
      expect(r.choices[0].message.content, `seed ${o.seed}, ${o.stream ? 'streamed' : 'whole'}`).toBe(o.text);
      expect(r.usage).toEqual(o.usage);
    }
    expect(await (await fetch(s.base + '/health')).json()).toMatchObject({ queue: { generating: 0, waiting: 0 } });
  }, 120_000);
});

// ---------------------------------------------------------------------------------------
// The queue's bound

/** A model that starts each generation (one at a time) and then waits for release(). */
function heldModel() {
  const queue = serialQueue();
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const stats = { started: 0 };
  const model: ChatModel = {
    id: 'held',
    contextLength: 64,
    complete(_messages, _o, onText, signal) {
      return queue(async () => {
        if (signal?.aborted) throw abortError();
        stats.started++;
        await released;
        onText?.('ok', 'text');
        return { text: 'ok', finishReason: 'stop' as const, promptTokens: 3, completionTokens: 1 };
      });
    },
  };
  return { model, stats, release };
}

const post = (base: string, body: object, signal?: AbortSignal) =>
  fetch(base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });

async function untilQueue(base: string, generating: number, waiting: number) {
  let q: unknown;
  for (let i = 0; i < 500; i++) {
    q = (await (await fetch(base + '/health')).json()).queue;
    if ((q as { generating: number }).generating === generating && (q as { waiting: number }).waiting === waiting) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the queue never reached ${generating} generating + ${waiting} waiting: ${JSON.stringify(q)}`);
}

describe('the bounded queue', () => {
  it('a request over the bound gets 503 with a reason and Retry-After at once; the admitted ones are all answered', async () => {
    const held = heldModel();
    const s = await listen(held.model, 3);
    try {
      // one generating, three waiting: the queue is full
      const admitted = [0, 1, 2, 3].map((i) => post(s.base, { messages: [user(`q${i}`)], stream: i % 2 === 1 }));
      await untilQueue(s.base, 1, 3);
      expect(await (await fetch(s.base + '/health')).json()).toMatchObject({ queue: { limit: 3 } });

      for (const stream of [false, true]) {
        const r = await post(s.base, { messages: [user('one too many')], stream });
        expect(r.status).toBe(503);
        expect(r.headers.get('retry-after')).toMatch(/^[1-9]\d*$/); // whole seconds, at least 1
        const j = await r.json();
        expect(j.error).toMatchObject({ type: 'server_error', code: 'queue_full', param: null });
        expect(j.error.message).toMatch(/busy: 1 request is generating and 3 are waiting.*retry in about \d+ s/);
      }
      // the official client sees a 503 (an InternalServerError), not a hang
      const err = await s.client.chat.completions.create({ model: 'm', messages: [user('x')] }).catch((e) => e);
      expect(err).toBeInstanceOf(OpenAI.InternalServerError);
      expect(err.status).toBe(503);
      expect(held.stats.started).toBe(1); // the refused requests never reached the model

      held.release();
      const rs = await Promise.all(admitted);
      expect(rs.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      expect(await rs[0].json()).toMatchObject({ choices: [{ message: { content: 'ok' } }] });
      expect(await rs[1].text()).toMatch(/data: \[DONE\]\n\n$/);
      await untilQueue(s.base, 0, 0);
      expect((await post(s.base, { messages: [user('again')] })).status).toBe(200); // places are given back
    } finally {
      await s.app.close();
    }
  });

  it('a waiting client that leaves gives its place back at once', async () => {
    const held = heldModel();
    const s = await listen(held.model, 2);
    try {
      const first = post(s.base, { messages: [user('a')] });
      const ac = new AbortController();
      const leaving = post(s.base, { messages: [user('b')] }, ac.signal).catch((e) => e);
      const third = post(s.base, { messages: [user('c')] });
      await untilQueue(s.base, 1, 2);
      expect((await post(s.base, { messages: [user('refused')] })).status).toBe(503);
      ac.abort();
      expect(await leaving).toMatchObject({ name: 'AbortError' });
      await untilQueue(s.base, 1, 1); // before the model reached it
      const fourth = post(s.base, { messages: [user('d')] });
      await untilQueue(s.base, 1, 2);
      held.release();
      expect((await Promise.all([first, third, fourth])).map((r) => r.status)).toEqual([200, 200, 200]);
      expect(held.stats.started).toBe(3); // the one that left was skipped
    } finally {
      await s.app.close();
    }
  });

  it('with --max-queue 0 only the request being generated is held; the client retries after Retry-After and is answered', async () => {
    const held = heldModel();
    const s = await listen(held.model, 0);
    try {
      const first = post(s.base, { messages: [user('a')] });
      await untilQueue(s.base, 1, 0);
      // a client that retries: its first try is refused; the test then lets the model go,
      // and the retry, sent after the server's Retry-After, is answered
      const statuses: number[] = [];
      const retrying = new OpenAI({
        baseURL: s.base + '/v1', apiKey: 'x', maxRetries: 1,
        fetch: async (url, init) => {
          const r = await fetch(url, init);
          statuses.push(r.status);
          if (r.status === 503) held.release();
          return r;
        },
      });
      const r = await retrying.chat.completions.create({ model: 'm', messages: [user('b')] });
      expect(statuses).toEqual([503, 200]);
      expect(r.choices[0].message.content).toBe('ok');
      expect((await first).status).toBe(200);
    } finally {
      await s.app.close();
    }
  }, 30_000);
});
