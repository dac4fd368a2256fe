// `npm run bench -- serve`: the OpenAI-compatible server under load and under bad input.
//
// The real Fastify app on a loopback port, driven by the official `openai` npm client:
// 1, 4, 16 and 64 concurrent clients (even-numbered clients stream), each sending requests
// one after the other; every request's wall time from send to last byte is recorded, and a
// request that throws or comes back malformed counts as a failure. Then a table of malformed
// or out-of-range requests and the status each got. The model is the speedrun's chat model
// (runs/speedrun/sft: run `npx minichat speedrun` first) or the checkpoint MINICHAT_BENCH_CKPT
// names; replies are at most 16 tokens, so the figures are the server's and its queue's.
import OpenAI from 'openai';
import { loadChatModel } from '../src/serve/chat-model.ts';
import { createServer } from '../src/serve/server.ts';
import { existsSync } from 'node:fs';
import type { BenchSuite } from './run.ts';

const QUESTIONS = ['Hello there!', 'How are you today?', 'What is two plus two?', 'Thank you.'];

const quantile = (xs: number[], q: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};

async function load(client: OpenAI, clients: number, each: number, maxTokens: number) {
  const latencies: number[] = [];
  let failures = 0;
  const failureKinds = new Map<string, number>();
  const one = async (c: number, k: number) => {
    const seed = c * each + k;
    const req = { model: 'any', messages: [{ role: 'user' as const, content: QUESTIONS[seed % QUESTIONS.length] }], max_tokens: maxTokens, temperature: 1, seed };
    const t0 = performance.now();
    try {
      if (c % 2 === 0) {
        let text = '', finish: string | null = null;
        for await (const chunk of await client.chat.completions.create({ ...req, stream: true })) {
          text += chunk.choices[0]?.delta?.content ?? '';
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        if (finish === null) throw new Error('stream ended without a finish_reason');
      } else {
        const r = await client.chat.completions.create(req);
        if (typeof r.choices[0]?.message?.content !== 'string') throw new Error('no content');
      }
      latencies.push(performance.now() - t0);
    } catch (e) {
      failures++;
      const kind = e instanceof OpenAI.APIError ? `HTTP ${e.status}` : (e as Error).message.slice(0, 60);
      failureKinds.set(kind, (failureKinds.get(kind) ?? 0) + 1);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let k = 0; k < each; k++) await one(c, k);
  }));
  const seconds = (performance.now() - t0) / 1000;
  return {
    clients, requests: clients * each, failures, failureKinds: Object.fromEntries(failureKinds),
    p50ms: Math.round(quantile(latencies, 0.5)), p95ms: Math.round(quantile(latencies, 0.95)), maxMs: Math.round(Math.max(...latencies)),
    requestsPerSecond: +(clients * each / seconds).toFixed(2), seconds: +seconds.toFixed(1),
  };
}

/** Requests a client may get wrong, each with what a careful server answers. */
function badRequests(): [string, string | Uint8Array, string][] {
  const ok = [{ role: 'user', content: 'hi' }];
  const j = (o: unknown) => JSON.stringify(o);
  const json = 'application/json';
  return [
    ['malformed JSON', '{"messages": [', json],
    ['empty body', '', json],
    ['not UTF-8 (0xff byte)', Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"a'), Buffer.from([0xff]), Buffer.from('"}]}')]), json],
    ['Latin-1 charset', j({ messages: ok }), 'application/json; charset=iso-8859-1'],
    ['text/plain', j({ messages: ok }), 'text/plain'],
    ['messages missing', j({ model: 'm' }), json],
    ['messages empty', j({ messages: [] }), json],
    ['unknown role', j({ messages: [{ role: 'wizard', content: 'x' }] }), json],
    ['content a number', j({ messages: [{ role: 'user', content: 5 }] }), json],
    ['temperature 2.5', j({ messages: ok, temperature: 2.5 }), json],
    ['top_p 0', j({ messages: ok, top_p: 0 }), json],
    ['n = 2', j({ messages: ok, n: 2 }), json],
    ['max_tokens 1e12', j({ messages: ok, max_tokens: 1e12 }), json],
    ['max_tokens -1', j({ messages: ok, max_tokens: -1 }), json],
    ['stream "yes"', j({ messages: ok, stream: 'yes' }), json],
    ['a 2 MB body', j({ messages: [{ role: 'user', content: 'a'.repeat(2_000_000) }] }), json],
    ['a prompt over the context', j({ messages: [{ role: 'user', content: 'hello '.repeat(400) }] }), json],
    ['conversation starting with a tool message', j({ messages: [{ role: 'tool', content: 'x' }] }), json],
  ];
}

export default {
  name: 'serve',
  async run() {
    const ckpt = process.env.MINICHAT_BENCH_CKPT ?? 'runs/speedrun/sft';
    if (!existsSync(ckpt)) throw new Error(`no checkpoint at ${ckpt}: run \`npx minichat speedrun\` first, or set MINICHAT_BENCH_CKPT`);
    const model = await loadChatModel(ckpt);
    const app = createServer(model, {});
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'x', maxRetries: 0, timeout: 600_000 });
    const maxTokens = 16;
    const loads = [];
    try {
      for (const [clients, each] of [[1, 8], [4, 4], [16, 2], [64, 2]] as const) {
        const r = await load(client, clients, each, maxTokens);
        console.log(`  ${clients} clients: ${r.requests} requests, ${r.failures} failed, p50 ${r.p50ms} ms, p95 ${r.p95ms} ms`);
        loads.push(r);
      }
      const bad = [];
      for (const [name, body, type] of badRequests()) {
        const r = await fetch(base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': type }, body: body as BodyInit });
        const text = await r.text();
        let reason = text.slice(0, 100);
        try {
          reason = JSON.parse(text).error?.message?.slice(0, 100) ?? reason;
        } catch {
          /* not JSON: keep the raw text */
        }
        bad.push({ request: name, status: r.status, reason });
        console.log(`  ${name}: ${r.status} ${reason}`);
      }
      const fourXX = bad.filter((b) => b.status >= 400 && b.status < 500).length;
      return { checkpoint: ckpt, maxTokens, loads, bad, badAnswered4xx: `${fourXX} of ${bad.length}` };
    } finally {
      await app.close();
      model.dispose();
    }
  },
} satisfies BenchSuite;
