// A chat model: a conversation in, the assistant's reply out (streamed as text deltas).
// This is the one abstraction that `minichat chat` and `minichat serve` both use, so the
// CLI, the HTTP server and their tests never touch tokens, caches or samplers.
//
// What complete() does, top-down:
//   1. fit: render the conversation with the chat specials (renderForCompletion) and, if it
//      is longer than the context minus max_tokens, drop the oldest turns (the system
//      message is kept). If even the last turn cannot fit, throw ContextOverflowError
//      (the server answers 400 context_length_exceeded). We truncate rather than reject
//      because a long chat in the REPL should keep going, not die at turn 40.
//   2. queue: one model, one generation at a time. Calls wait on a promise chain (a mutex)
//      so concurrent requests never interleave their KV caches; a call aborted while it
//      waits is skipped without touching the model.
//   3. generate: one row of the batched Engine. Stop at <|assistant_end|> (or <|bos|>, a
//      model that starts a new document has finished). Other chat specials are suppressed —
//      except the tool-call markers: when the model closes a call, the tool hook runs it
//      (the calculator by default) and the engine forces the result into the row, so the
//      model reads it before going on. The engine yields to the event loop every token, so a
//      client that disconnects is noticed (its AbortSignal fires) and the row stops.
//   4. stream (replyAssembler): bytes of a character split across tokens are held back by an
//      incremental UTF-8 decoder (TextDecoder with stream: true), so a delta is never half a
//      character; tool markers split the reply into text / tool_call / tool_result parts.
import type { Backend } from '../backend/backend.ts';
import { loadCheckpoint } from '../io/checkpoint.ts';
import { Engine } from '../model/engine.ts';
import type { GPT } from '../model/gpt.ts';
import { defaultToolRegistry, toolHook } from '../tools/hook.ts';
import type { ToolRegistry } from '../tools/registry.ts';
import { chatStops, chatSuppress, renderForCompletion, SPECIALS, type AssistantPart, type Message, type Tokenizer } from '../tokenizer/index.ts';
import { UserError } from '../util/errors.ts';

export type { Message, AssistantPart };

/** Sampling options for one reply. */
export interface CompleteOptions {
  maxTokens: number; // new tokens at most (the reply may stop earlier at <|assistant_end|>)
  temperature: number; // 0 = greedy; 1 = the model's distribution
  topP: number; // nucleus sampling: keep the smallest set of tokens whose probability >= topP (1 = all)
  topK?: number; // keep the K most likely tokens (0 or absent = all)
  seed?: number; // sampling seed; absent = a fresh random seed per call
}

export interface Completion {
  text: string; // the reply's text parts, joined (tool calls excluded)
  finishReason: 'stop' | 'length'; // stop: the model ended its turn; length: maxTokens reached
  promptTokens: number; // after truncation: what the model actually saw
  completionTokens: number; // tokens the reply took in the context: tool results (forced) included, the stop token not
  parts?: AssistantPart[]; // the reply as text / tool_call / tool_result pieces, in order
}

/** Receives the reply as it is produced; `part` says which kind of piece the delta belongs to. */
export type OnText = (delta: string, part: AssistantPart['type']) => void;

export interface ChatModel {
  id: string; // the model's name in the API (GET /v1/models, "model" in responses)
  contextLength: number; // tokens the model can attend to: prompt + reply must fit
  complete(messages: Message[], o: CompleteOptions, onText?: OnText, signal?: AbortSignal): Promise<Completion>;
}

/** Defaults shared by `minichat chat`, `minichat serve` and the docs (one source). */
export const CHAT_DEFAULTS = {
  temperature: 0.7, // a little below 1: small models ramble at their full distribution
  topP: 1,
  topK: 50,
  maxTokens: 256,
} as const;

/** max_tokens when a request does not say: the default, but never more than half the
 *  context, so the prompt keeps at least half of it. */
export function defaultMaxTokens(contextLength: number): number {
  return Math.max(1, Math.min(CHAT_DEFAULTS.maxTokens, Math.floor(contextLength / 2)));
}

/** The conversation cannot fit in the context even after dropping old turns. */
export class ContextOverflowError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'ContextOverflowError';
  }
}

/** The error a call rejects with when its AbortSignal fires (same name as fetch's). */
export function abortError(): Error {
  return new DOMException('the generation was aborted', 'AbortError');
}

// ---------------------------------------------------------------------------------------
// 1. Fitting the conversation in the context

/**
 * The prompt ids for `messages`, dropping the oldest turns (never the system message) until
 * prompt + maxTokens fits in contextLength. Returns the ids and how many messages were
 * dropped. Throws ContextOverflowError if the last message alone does not fit.
 */
export function fitPrompt(tok: Tokenizer, messages: Message[], contextLength: number, maxTokens: number): { ids: number[]; dropped: number } {
  const budget = contextLength - maxTokens;
  const system = messages[0]?.role === 'system' ? [messages[0]] : [];
  const rest = messages.slice(system.length);
  if (rest.length === 0) throw new UserError('the conversation needs at least one user message');
  // Keeping rest.slice(k): a tool message cannot lead (it belongs to the assistant turn
  // before it), so a cut that lands on one moves past it. No cut (k = 0) keeps the
  // conversation as given: one that starts with a tool message is refused when rendered.
  const keep = (k: number) => {
    while (k > 0 && k < rest.length - 1 && rest[k].role === 'tool') k++;
    return [...system, ...rest.slice(k)];
  };
  const len = (k: number) => renderForCompletion(tok, keep(k)).length;
  if (budget > 0 && len(0) <= budget) return { ids: renderForCompletion(tok, keep(0)), dropped: 0 };
  // The prompt only gets shorter as k grows: binary search for the fewest dropped messages
  // (a few renders instead of one per message for a 500-message request).
  const last = rest.length - 1;
  if (budget <= 0 || len(last) > budget) {
    throw new ContextOverflowError(
      `${system.length ? 'the last message and the system message need' : 'the last message needs'} ${len(last)} tokens but only ${Math.max(0, budget)} of the ` +
        `model's ${contextLength}-token context are left after max_tokens=${maxTokens}; shorten them or lower max_tokens`,
    );
  }
  let lo = 1, hi = last; // len(lo - 1) > budget, len(hi) <= budget
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (len(mid) <= budget) hi = mid;
    else lo = mid + 1;
  }
  const kept = keep(lo);
  return { ids: renderForCompletion(tok, kept), dropped: messages.length - kept.length };
}

// ---------------------------------------------------------------------------------------
// 2. One generation at a time

/** A mutex as a promise chain: run(fn) starts fn after every earlier fn has settled. */
export function serialQueue() {
  let tail: Promise<unknown> = Promise.resolve();
  return function run<R>(fn: () => Promise<R>): Promise<R> {
    const result = tail.then(fn, fn);
    tail = result.catch(() => undefined); // one failure must not block the ones behind it
    return result;
  };
}

// ---------------------------------------------------------------------------------------
// 3. Generation: the batched Engine, one row per request

// The engine (src/model/engine.ts) does the sampling (temperature, top-k, then top-p),
// the stops, the AbortSignal and the forced tokens; a tool hook (src/tools/hook.ts) as its
// afterToken runs a finished <|tool_call_start|> … <|tool_call_end|> and forces
// <|tool_result_start|> result <|tool_result_end|> into the row. This file only turns the
// row's tokens into a streamed reply (section 4) and the engine's result into a Completion.
// A request is one row: requests queue (section 2) rather than share a batch, because rows
// of one batch share a position counter and would wait for the slowest reply.

// ---------------------------------------------------------------------------------------
// 4. From tokens to a streamed reply

/**
 * Turns the reply's token ids, pushed one at a time, into text deltas and parts. Tool
 * markers (<|tool_call_start|> … <|tool_call_end|>, and the tool-result markers the engine
 * forces) switch the kind of part; they are never shown as text. Each part has
 * its own UTF-8 decoder, so bytes of an unfinished character never leak across a marker.
 */
export function replyAssembler(tok: Tokenizer, onText?: OnText) {
  const opens = new Map<number, AssistantPart['type']>([
    [tok.specialId(SPECIALS.toolCallStart), 'tool_call'],
    [tok.specialId(SPECIALS.toolResultStart), 'tool_result'],
  ]);
  const closes = new Set([tok.specialId(SPECIALS.toolCallEnd), tok.specialId(SPECIALS.toolResultEnd)]);
  const parts: AssistantPart[] = [];
  let kind: AssistantPart['type'] = 'text';
  let decoder = tok.streamDecoder();
  const emit = (delta: string) => {
    if (!delta) return; // the token ended inside a character: wait for the rest
    const last = parts[parts.length - 1];
    if (last?.type === kind) last.text += delta;
    else parts.push({ type: kind, text: delta });
    onText?.(delta, kind);
  };
  const switchTo = (k: AssistantPart['type']) => {
    emit(decoder.flush());
    decoder = tok.streamDecoder();
    kind = k;
    if (k !== 'text') parts.push({ type: k, text: '' }); // a call may be empty, and is still a call
  };
  return {
    push: (id: number) => {
      const open = opens.get(id);
      if (open) switchTo(open);
      else if (closes.has(id)) switchTo('text');
      else emit(decoder.push(id));
    },
    finish: (): { text: string; parts: AssistantPart[] } => {
      emit(decoder.flush());
      return { text: parts.filter((p) => p.type === 'text').map((p) => p.text).join(''), parts };
    },
  };
}

// ---------------------------------------------------------------------------------------
// 5. The ChatModel over a checkpoint

/**
 * A ChatModel over a model and its tokenizer (loadChatModel builds one from a checkpoint).
 * `tools`: the registry tool calls run in (default: the calculator).
 */
export function createChatModel(model: GPT, tok: Tokenizer, id: string, o: { tools?: ToolRegistry } = {}): ChatModel {
  const contextLength = model.config.maxSeqLen;
  const stop = chatStops(tok);
  // Every other special is suppressed: a reply cannot open a user turn, and tool results
  // come from the tool runner (forced tokens), never from the model.
  const suppress = chatSuppress(tok);
  const afterToken = toolHook(tok, o.tools ?? defaultToolRegistry());
  const engine = new Engine(model, { maxRows: 1 });
  const queue = serialQueue();

  return {
    id,
    contextLength,
    // async: a conversation that cannot fit rejects at once, before it waits in the queue
    async complete(messages, c, onText, signal) {
      const { ids: prompt } = fitPrompt(tok, messages, contextLength, c.maxTokens);
      return queue(async () => {
        if (signal?.aborted) throw abortError(); // gave up while waiting: skip
        const reply = replyAssembler(tok, onText);
        const [row] = await engine.generate([prompt], {
          maxTokens: c.maxTokens, temperature: c.temperature, topP: c.topP, topK: c.topK ?? 0, suppress,
          seed: c.seed ?? Math.floor(Math.random() * 2 ** 32), stop, afterToken,
          onToken: (_, id) => reply.push(id), // every token but the stop, forced ones included
          signal, yieldEvery: 1, // one timer per token (~1 ms) is small next to a token's forward pass
        });
        if (row.finish === 'aborted') throw abortError();
        const { text, parts } = reply.finish();
        const completionTokens = row.finish === 'stop' ? row.tokens.length - 1 : row.tokens.length;
        return { text, finishReason: row.finish, promptTokens: prompt.length, completionTokens, parts };
      });
    },
  };
}

/** Load a checkpoint (a checkpoint directory or a run directory) as a ChatModel. */
export async function loadChatModel(ckptDir: string, backend?: Backend): Promise<ChatModel & { dispose(): void }> {
  const { model, tokenizer, dir } = await loadCheckpoint(ckptDir, { backend });
  for (const name of [SPECIALS.assistantStart, SPECIALS.assistantEnd, SPECIALS.userStart]) {
    if (!(name in tokenizer.specials)) throw new UserError(`${dir}: the tokenizer has no ${name} token, so this model cannot chat`);
  }
  const id = dir.split(/[\\/]/).filter((s) => s && s !== 'checkpoint').pop() ?? 'minichat';
  return { ...createChatModel(model, tokenizer, id), dispose: () => model.dispose() };
}
