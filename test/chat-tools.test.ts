// Tool use during generation, end to end: the batched Engine with the calculator hook
// (src/tools/hook.ts) forces each tool result into the row that made the call, marks it
// forced (never trained on, no sampling log-prob), and the ChatModel turns a row into the
// parts [text, tool_call, tool_result, text] and streams them. Also: the engine's yieldEvery
// lets a timer (a disconnect) in mid-generation; the server carries the parts and stops a
// dropped stream; and the CLI's bracketed tool output.
//
// An untrained model never writes a tool call, so the model here is scripted: a real GPT
// (the forward pass, the KV cache and the padding all run) whose logits get +100 on the
// token its script wants next. The script counts only the tokens the model itself wrote:
// what sits between <|tool_result_start|> and <|tool_result_end|> came from the tool.
import { beforeAll, describe, expect, it } from 'vitest';
import { toolPrinter } from '../src/cli/chat.ts';
import { Engine, type GenerateOptions } from '../src/model/engine.ts';
import { GPT, type GPTConfig, type KVCache } from '../src/model/gpt.ts';
import { createChatModel } from '../src/serve/chat-model.ts';
import { createServer } from '../src/serve/server.ts';
import * as T from '../src/tensor/index.ts';
import { defaultToolRegistry, toolHook } from '../src/tools/hook.ts';
import { SPECIALS, trainTokenizer, type AssistantPart, type Tokenizer } from '../src/tokenizer/index.ts';

/** A GPT whose next token follows a script chosen by the prompt (see the header). */
class ScriptedGPT extends GPT {
  private rows: { prompt: number[]; generated: number[] }[] = [];
  forwards = 0; // calls so far: how a test sees that generation has stopped
  constructor(config: GPTConfig, private scriptFor: (prompt: number[]) => number[], private resultStart: number, private resultEnd: number) {
    super(config, new T.Rng(1));
  }

  override forward(idx: T.Tensor, cache?: KVCache): T.Tensor {
    if (!cache) throw new Error('ScriptedGPT: the engine always passes a cache');
    this.forwards++;
    const [B, Tn] = idx.shape;
    const ids = Array.from(idx.dataSync());
    if (cache.length === 0) this.rows = Array.from({ length: B }, (_, b) => ({ prompt: ids.slice(b * Tn, (b + 1) * Tn), generated: [] }));
    else ids.forEach((id, b) => this.rows[b].generated.push(id)); // decode: one new token per row
    const logits = super.forward(idx, cache); // (B*Tn, V)
    const V = this.config.vocabSize;
    const bias = new Float32Array(B * Tn * V);
    this.rows.forEach((r, b) => {
      const want = this.scriptFor(r.prompt)[this.written(r.generated)];
      if (want !== undefined) bias[(b * Tn + Tn - 1) * V + want] = 100; // the last position predicts the next token
    });
    return T.add(logits, T.tensor(bias, [B * Tn, V], { backend: this.backend }));
  }

  /** How many tokens the model wrote itself (tool results excluded). */
  private written(generated: number[]): number {
    let n = 0, inResult = false;
    for (const id of generated) {
      if (id === this.resultStart) inResult = true;
      else if (id === this.resultEnd) inResult = false;
      else if (!inResult) n++;
    }
    return n;
  }
}

let tok: Tokenizer;
const sp = (name: string) => tok.specialId(name);
const enc = (s: string) => tok.encodeOrdinary(s);
/** What the model writes for a tool call: the call, then (after the forced result) more text. */
const toolScript = (before: string, call: string, after: string) => [
  ...enc(before), sp(SPECIALS.toolCallStart), ...enc(call), sp(SPECIALS.toolCallEnd), ...enc(after), sp(SPECIALS.assistantEnd),
];
const config = (V: number, maxSeqLen = 96): GPTConfig => ({
  vocabSize: V, hiddenSize: 16, numLayers: 1, numHeads: 2, numKVHeads: 1, headDim: 8, intermediateSize: 32,
  maxSeqLen, ropeTheta: 10000, rmsNormEps: 1e-6, tieEmbeddings: true, qkNorm: true, mlp: 'swiglu', logitSoftcap: 0,
});
const greedy = (o: Partial<GenerateOptions>): GenerateOptions => ({ maxTokens: 40, temperature: 0, topK: 0, topP: 1, seed: 1, stop: [], ...o });

beforeAll(async () => {
  tok = await trainTokenizer(['Let me see. It is 42. calc(7*6) and calc(2+3) is 5. '.repeat(10)], { vocabSize: 280 });
});

describe('the engine with the tool hook', () => {
  it('forces each tool result into the row that made the call, marked forced', async () => {
    // Two prompts of different lengths (the batch is left-padded), each asking for its own
    // calculation: a result landing in the wrong row, or at the wrong step, changes the tokens.
    const prompts = [[sp(SPECIALS.bos), ...enc('a'), sp(SPECIALS.assistantStart)], [sp(SPECIALS.bos), ...enc('longer one'), sp(SPECIALS.userEnd)]];
    const scripts = [toolScript('Let me see.', 'calc(7*6)', ' It is 42.'), toolScript('', 'calc(2+3)', ' 5.')];
    const model = new ScriptedGPT(config(tok.vocabSize), (p) => scripts[p.at(-1) === sp(SPECIALS.assistantStart) ? 0 : 1], sp(SPECIALS.toolResultStart), sp(SPECIALS.toolResultEnd));
    const rows = await new Engine(model).generate(prompts, greedy({ stop: [sp(SPECIALS.assistantEnd)], afterToken: toolHook(tok, defaultToolRegistry()) }));

    const result = (text: string) => [sp(SPECIALS.toolResultStart), ...enc(text), sp(SPECIALS.toolResultEnd)];
    const expected = [
      [...enc('Let me see.'), sp(SPECIALS.toolCallStart), ...enc('calc(7*6)'), sp(SPECIALS.toolCallEnd), ...result('42'), ...enc(' It is 42.'), sp(SPECIALS.assistantEnd)],
      [sp(SPECIALS.toolCallStart), ...enc('calc(2+3)'), sp(SPECIALS.toolCallEnd), ...result('5'), ...enc(' 5.'), sp(SPECIALS.assistantEnd)],
    ];
    expect(rows.map((r) => r.tokens)).toEqual(expected);
    for (const [i, r] of rows.entries()) {
      expect(r.finish).toBe('stop');
      // forced exactly on the result span, which starts right after <|tool_call_end|>
      const start = r.tokens.indexOf(sp(SPECIALS.toolResultStart));
      const n = result(i === 0 ? '42' : '5').length;
      expect(r.forced).toEqual(r.tokens.map((_, t) => t >= start && t < start + n));
      r.logprobs.forEach((lp, t) => expect(Number.isNaN(lp)).toBe(r.forced[t])); // forced tokens were not sampled
    }
  });

  it('yieldEvery lets a timer fire mid-generation; without it the loop never yields', async () => {
    // A timer that aborts is how a server's "client disconnected" arrives. On the CPU backend
    // the decode loop only awaits resolved promises, so without yieldEvery the timer cannot
    // run before the whole generation is over.
    const endless = Array(200).fill(enc('a')[0]);
    const model = new ScriptedGPT(config(tok.vocabSize), () => endless, -1, -1);
    const run = async (yieldEvery?: number) => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 0);
      const [r] = await new Engine(model).generate([[sp(SPECIALS.bos)]], greedy({ maxTokens: 60, signal: ac.signal, yieldEvery }));
      return r;
    };
    const without = await run();
    expect(without.finish).toBe('length');
    expect(without.tokens.length).toBe(60);
    const withYield = await run(1);
    expect(withYield.finish).toBe('aborted');
    expect(withYield.tokens.length).toBeLessThan(60);
  });
});

describe('ChatModel with tools', () => {
  it('returns and streams the parts text, tool_call, tool_result, text', async () => {
    const script = toolScript('Let me see. ', 'calc(7*6)', ' It is 42.');
    const model = new ScriptedGPT(config(tok.vocabSize), () => script, sp(SPECIALS.toolResultStart), sp(SPECIALS.toolResultEnd));
    const chat = createChatModel(model, tok, 'scripted');
    const deltas: [string, AssistantPart['type']][] = [];
    const c = await chat.complete([{ role: 'user', content: 'What is 7*6?' }], { maxTokens: 40, temperature: 0, topP: 1 }, (d, part) => deltas.push([d, part]));
    const parts: AssistantPart[] = [
      { type: 'text', text: 'Let me see. ' }, { type: 'tool_call', text: 'calc(7*6)' }, { type: 'tool_result', text: '42' }, { type: 'text', text: ' It is 42.' },
    ];
    expect(c.parts).toEqual(parts);
    expect(c.text).toBe('Let me see.  It is 42.');
    expect(c.finishReason).toBe('stop');
    // the reply's tokens in the context: everything up to <|assistant_end|>, the forced result included
    const resultTokens = 2 + enc('42').length;
    expect(c.completionTokens).toBe(script.length - 1 + resultTokens);
    // the stream, joined per part, is the same reply
    const streamed: AssistantPart[] = [];
    for (const [d, type] of deltas) {
      if (streamed.at(-1)?.type === type) streamed.at(-1)!.text += d;
      else streamed.push({ type, text: d } as AssistantPart);
    }
    expect(streamed).toEqual(parts);
  });

  it('a reply cut by max_tokens mid-call ends with finish length and an open call', async () => {
    const script = toolScript('', 'calc(7*6)', ' done');
    const model = new ScriptedGPT(config(tok.vocabSize), () => script, sp(SPECIALS.toolResultStart), sp(SPECIALS.toolResultEnd));
    const c = await createChatModel(model, tok, 'scripted').complete([{ role: 'user', content: 'hi' }], { maxTokens: 3, temperature: 0, topP: 1 });
    expect(c.finishReason).toBe('length');
    expect(c.completionTokens).toBe(3);
    expect(c.parts?.map((p) => p.type)).toEqual(['tool_call']);
    expect(c.parts?.[0].text).toBe(tok.decode(enc('calc(7*6)').slice(0, 2)));
  });
});

describe('the server with tools (real HTTP on 127.0.0.1)', () => {
  const post = (base: string, body: object, signal?: AbortSignal) =>
    fetch(base + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });

  it('a reply carries its parts: minichat_parts on the message, minichat_part on stream deltas', async () => {
    const script = toolScript('Let me see. ', 'calc(7*6)', ' It is 42.');
    const model = new ScriptedGPT(config(tok.vocabSize), () => script, sp(SPECIALS.toolResultStart), sp(SPECIALS.toolResultEnd));
    const app = createServer(createChatModel(model, tok, 'scripted'));
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const req = { messages: [{ role: 'user', content: 'What is 7*6?' }], max_tokens: 40, temperature: 0 };
      const r = await (await post(base, req)).json();
      expect(r.choices[0].message.content).toBe('Let me see.  It is 42.');
      expect(r.choices[0].message.minichat_parts.map((p: AssistantPart) => [p.type, p.text])).toEqual([
        ['text', 'Let me see. '], ['tool_call', 'calc(7*6)'], ['tool_result', '42'], ['text', ' It is 42.'],
      ]);
      const sse = await (await post(base, { ...req, stream: true })).text();
      const deltas = sse.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)).choices[0]?.delta ?? {});
      const tool = (type: string) => deltas.filter((d) => d.minichat_part?.type === type).map((d) => d.minichat_part.text).join('');
      expect(tool('tool_call')).toBe('calc(7*6)');
      expect(tool('tool_result')).toBe('42');
      expect(deltas.map((d) => d.content ?? '').join('')).toBe('Let me see.  It is 42.');
    } finally {
      await app.close();
    }
  });

  it('a client that drops its stream stops the real engine mid-reply', async () => {
    // 400 tokens would take far longer than the test waits; the forward count must stop
    // growing soon after the abort (it can only stop if the engine yields and sees the signal).
    const endless = Array(500).fill(enc('a')[0]);
    const model = new ScriptedGPT(config(tok.vocabSize, 512), () => endless, -1, -1);
    const app = createServer(createChatModel(model, tok, 'scripted'));
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const ac = new AbortController();
      const res = await post(base, { messages: [{ role: 'user', content: 'go' }], max_tokens: 400, temperature: 0, stream: true }, ac.signal);
      const reader = res.body!.getReader();
      await reader.read(); // the first chunk: generation is under way
      ac.abort();
      await new Promise((r) => setTimeout(r, 200)); // time for the server to see the closed socket
      const after = model.forwards;
      await new Promise((r) => setTimeout(r, 200));
      expect(model.forwards).toBe(after); // stopped
      expect(after).toBeLessThan(400);
      // and the engine is free: the next request is answered
      const r = await (await post(base, { messages: [{ role: 'user', content: 'again' }], max_tokens: 3, temperature: 0 })).json();
      expect(r.choices[0].finish_reason).toBe('length');
    } finally {
      await app.close();
    }
  });
});

describe('the chat CLI prints tool use bracketed', () => {
  const print = (deltas: [string, AssistantPart['type']][], tty = false) => {
    let out = '';
    const p = toolPrinter((s) => (out += s), tty);
    for (const [d, k] of deltas) p.onText(d, k);
    p.end();
    return out;
  };
  it('a call and its result as [call → result], dimmed on a TTY', () => {
    const deltas: [string, AssistantPart['type']][] = [['Let me see. ', 'text'], ['calc(37', 'tool_call'], ['*12)', 'tool_call'], ['444', 'tool_result'], [' So 444.', 'text']];
    expect(print(deltas)).toBe('Let me see. [calc(37*12) → 444] So 444.');
    expect(print(deltas, true)).toBe('Let me see. \x1b[2m[calc(37*12) → 444]\x1b[22m So 444.');
  });
  it('closes a call the reply cut off, and back-to-back calls get their own brackets', () => {
    expect(print([['calc(1', 'tool_call']])).toBe('[calc(1]');
    expect(print([['calc(1+1)', 'tool_call'], ['2', 'tool_result'], ['calc(2+2)', 'tool_call'], ['4', 'tool_result']])).toBe('[calc(1+1) → 2][calc(2+2) → 4]');
  });
});
