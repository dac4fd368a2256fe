// The OpenAI-compatible HTTP server (`minichat serve`): any OpenAI client — the official
// `openai` npm/pip packages, curl, chat UIs — can talk to a minichat checkpoint.
//
//   POST /v1/chat/completions   a reply, whole or streamed as server-sent events (stream: true)
//   GET  /v1/models             the one model this server holds
//   GET  /health                {"status": "ok", ...} once the model is loaded, with the queue
//   GET  /                      a small chat page (page.html) that streams replies
//
// Shapes follow OpenAI's Chat Completions API: responses are "chat.completion" objects,
// stream chunks are "chat.completion.chunk" objects sent as `data: {json}\n\n` and closed by
// `data: [DONE]`; errors are {error: {message, type, param, code}} with a 4xx status.
// Extensions (ignored by OpenAI clients): `top_k` in requests; `minichat_parts` on a message
// and `minichat_part` on a delta carry tool calls, which minichat runs itself (they are not
// OpenAI "tool_calls" that the client would be asked to execute).
//
// The server holds one model; requests queue on it (ChatModel serialises them) and a client
// that disconnects aborts its generation, so it stops holding the model. The queue is
// bounded (maxQueue): a request that finds it full is answered 503 at once, with a
// Retry-After, rather than left waiting without limit.
//
// The body is read as bytes and parsed here (parseBody), not by Fastify's default parser,
// so that a body that is not UTF-8 is refused instead of decoded with replacement
// characters, and every refusal says what was wrong.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { UserError } from '../util/errors.ts';
import { CHAT_DEFAULTS, ContextOverflowError, defaultMaxTokens, type AssistantPart, type ChatModel, type Completion, type Message } from './chat-model.ts';

/** Request limits (answered 400, or 413 for the body size). */
export const LIMITS = {
  maxMessages: 500,
  maxMessageChars: 8_000, // one message's content
  maxTotalChars: 32_000, // all messages together
  // 32,000 characters can take 6 bytes each as JSON escapes (\uXXXX), plus the envelope
  bodyBytes: 256 * 1024,
} as const;

/** Defaults of `minichat serve`'s flags that the server itself applies. */
export const SERVER_DEFAULTS = {
  // requests that may wait while one generates; the next is refused (503). 64 waiting
  // requests of 256 tokens are minutes of work for a CPU model: a client that waits longer
  // than that is better told to come back.
  maxQueue: 64,
} as const;

export interface ServerOptions {
  logger?: boolean; // Fastify's request log on stderr
  bodyLimit?: number; // bytes; default LIMITS.bodyBytes
  maxQueue?: number; // requests waiting for the model at most; default SERVER_DEFAULTS.maxQueue
}

/** An error answered with `status` in OpenAI's error shape (a 4xx: the client caused it;
 *  503: the server is busy). */
class ApiError extends Error {
  constructor(
    readonly status: number, message: string, readonly param: string | null = null, readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function errorBody(message: string, type: string, param: string | null, code: string | null) {
  return { error: { message, type, param, code } };
}

// The request body as we accept it. JSON schema checks types and ranges (Fastify compiles
// it once); the character limits are counted in the handler, where content arrays are joined.
interface ChatRequest {
  model?: string; // accepted and ignored: this server holds one model
  messages: { role: string; content: string | { type: string; text?: string }[] | null }[];
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  n?: number;
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
}

function requestSchema(contextLength: number) {
  const maxTokens = { type: 'integer', minimum: 1, maximum: contextLength };
  return {
    type: 'object',
    required: ['messages'],
    properties: {
      model: { type: 'string' },
      messages: {
        type: 'array',
        minItems: 1,
        maxItems: LIMITS.maxMessages,
        items: {
          type: 'object',
          required: ['role'],
          properties: {
            // "developer" is OpenAI's newer name for the system role
            role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
            content: {
              anyOf: [
                { type: 'string' },
                { type: 'null' },
                { type: 'array', items: { type: 'object', required: ['type'], properties: { type: { const: 'text' }, text: { type: 'string' } } } },
              ],
            },
          },
        },
      },
      max_tokens: maxTokens,
      max_completion_tokens: maxTokens,
      temperature: { type: 'number', minimum: 0, maximum: 2 },
      top_p: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
      top_k: { type: 'integer', minimum: 0 },
      seed: { type: 'integer' },
      n: { type: 'integer', minimum: 1, maximum: 1 }, // one choice per request
      stream: { type: 'boolean' },
      stream_options: { anyOf: [{ type: 'null' }, { type: 'object', properties: { include_usage: { type: 'boolean' } } }] },
    },
  };
}

/** The request's messages as minichat Messages, enforcing the character limits. */
function toMessages(body: ChatRequest): Message[] {
  let total = 0;
  return body.messages.map((m, i) => {
    // only an assistant turn may come without content (OpenAI's shape for one that only
    // called tools); a user, system or tool message without it is a mistake, not "".
    if (m.content == null && m.role !== 'assistant') {
      throw new ApiError(400, `messages[${i}].content is missing: a ${m.role} message needs content (a string or text parts)`, `messages[${i}].content`, 'invalid_value');
    }
    const parts = typeof m.content === 'string' ? [] : (m.content ?? []);
    const empty = parts.findIndex((p) => p.text === undefined);
    if (empty >= 0) throw new ApiError(400, `messages[${i}].content[${empty}] has no text`, `messages[${i}].content[${empty}].text`, 'invalid_value');
    const content = typeof m.content === 'string' ? m.content : parts.map((p) => p.text).join('');
    if (content.length > LIMITS.maxMessageChars) {
      throw new ApiError(400, `messages[${i}].content has ${content.length} characters; the limit is ${LIMITS.maxMessageChars}`, `messages[${i}].content`, 'string_above_max_length');
    }
    total += content.length;
    if (total > LIMITS.maxTotalChars) {
      throw new ApiError(400, `the messages hold more than ${LIMITS.maxTotalChars} characters in all`, 'messages', 'string_above_max_length');
    }
    const role = m.role === 'developer' ? 'system' : (m.role as Message['role']);
    return { role, content } as Message;
  });
}

// ---------------------------------------------------------------------------------------
// The body: bytes → text → JSON, each step refused with its own reason

const utf8 = new TextDecoder('utf-8', { fatal: true }); // fatal: invalid bytes throw, not U+FFFD
const LONE_SURROGATE = /\p{Cs}/u; // with the u flag a valid pair is one code point, so only a lone half matches

/** A JSON request body as a value. Refuses (ApiError): a charset other than UTF-8, bytes that
 *  are not UTF-8, an empty body, JSON that does not parse, a string holding half a
 *  surrogate pair (a \ud800 escape alone: not Unicode text), and the __proto__ /
 *  constructor.prototype keys Fastify's own parser refuses (prototype poisoning). */
export function parseBody(contentType: string | undefined, bytes: Buffer): unknown {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1];
  if (charset && !/^utf-?8$/i.test(charset)) {
    throw new ApiError(415, `the body must be JSON in UTF-8, but content-type says charset=${charset}`, null, 'unsupported_media_type');
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new ApiError(400, 'the body is not valid UTF-8 (JSON must be UTF-8 text)', null, 'invalid_encoding');
  }
  if (text.trim() === '') throw new ApiError(400, 'the body is empty: send a JSON object with "messages"', null, 'invalid_json');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the body is not valid JSON: ${(e as Error).message}`, null, 'invalid_json');
  }
  // walk every key and string (a stack, not recursion: JSON.parse takes any depth, so must we)
  const stack: [string, unknown][] = [['', value]];
  while (stack.length) {
    const [key, v] = stack.pop()!;
    if (typeof v === 'string' && LONE_SURROGATE.test(v)) {
      throw new ApiError(400, `${key ? `"${key}"` : 'a string'} holds half of a UTF-16 surrogate pair (a \\uD800-\\uDFFF escape without its other half): not valid Unicode`, null, 'invalid_encoding');
    }
    if (v === null || typeof v !== 'object') continue;
    for (const [k, x] of Object.entries(v)) {
      if (k === '__proto__' || (k === 'constructor' && x !== null && typeof x === 'object' && 'prototype' in x)) {
        throw new ApiError(400, `the body holds a "${k === '__proto__' ? '__proto__' : 'constructor.prototype'}" key, which this server refuses`, null, 'invalid_json');
      }
      if (LONE_SURROGATE.test(k)) throw new ApiError(400, 'a key holds half of a UTF-16 surrogate pair: not valid Unicode', null, 'invalid_encoding');
      stack.push([Array.isArray(v) ? key : k, x]);
    }
  }
  return value;
}

/** Fastify's schema errors as one sentence. Where a value may take several shapes (anyOf),
 *  ajv lists the failure of every shape, then the anyOf: we name the one that got furthest
 *  into the value (the shape the client meant), or, if each failed at the value itself,
 *  the types it may have. */
function validationMessage(errors: NonNullable<FastifyError['validation']>): { param: string | null; message: string } {
  const where = (path: string) => path.replace(/^\//, '').replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.') || null;
  let e = errors[0];
  const anyOf = errors.find((x) => x.keyword === 'anyOf');
  if (anyOf) {
    const branches = errors.filter((x) => x !== anyOf);
    // deepest first; at equal depth a wrong constant ("type": "image_url") says most
    const rank = (x: (typeof errors)[number]) => 2 * x.instancePath.length + (x.keyword === 'const' ? 1 : 0);
    const deepest = branches.reduce((a, b) => (rank(b) > rank(a) ? b : a), branches[0]);
    if (deepest && deepest.instancePath.length > anyOf.instancePath.length) e = deepest;
    else {
      const types = branches.map((x) => (x.keyword === 'type' ? String(x.params.type) : '')).filter(Boolean);
      const param = where(anyOf.instancePath);
      const list = types.length > 1 ? `${types.slice(0, -1).join(', ')} or ${types.at(-1)}` : (types[0] ?? 'valid');
      return { param, message: `${param ?? 'body'} must be ${list}` };
    }
  }
  const param = where(e.instancePath);
  let message = `${param ?? 'body'} ${e.message ?? 'is invalid'}`;
  if (e.keyword === 'enum') message += `: ${(e.params.allowedValues as unknown[]).join(', ')}`;
  if (e.keyword === 'const') message += ` "${String(e.params.allowedValue)}"`;
  return { param, message };
}

// ---------------------------------------------------------------------------------------
// The queue's bound

/**
 * Places for requests: the one generating and at most maxQueue waiting behind it. enter()
 * takes a place, or throws a 503 with Retry-After when none is left; the function it returns
 * gives the place back (when the reply is done or the client has left, whichever comes first;
 * later calls do nothing). Retry-After is the time the requests ahead should take at the
 * model's recent time per reply (a moving average; 1 s before the first reply).
 */
function admission(maxQueue: number) {
  let holding = 0; // requests that entered and have not left: generating + waiting
  let lastFinish = 0; // when the last reply was done (ms)
  let perReply = 1; // seconds the model spent on a reply, moving average
  return {
    get generating() {
      return Math.min(holding, 1);
    },
    get waiting() {
      return Math.max(0, holding - 1);
    },
    enter(): (finished: boolean) => void {
      if (holding > maxQueue) {
        const seconds = Math.max(1, Math.ceil(perReply * holding));
        throw new ApiError(
          503, `the server is busy: 1 request is generating and ${holding - 1} are waiting, its limit; retry in about ${seconds} s`,
          null, 'queue_full', { 'retry-after': String(seconds) },
        );
      }
      holding++;
      const entered = Date.now();
      let left = false;
      return (finished) => {
        if (left) return;
        left = true;
        holding--;
        if (!finished) return;
        // one model, one reply at a time: this reply started when it arrived or when the
        // one before it was done, whichever was later
        const now = Date.now();
        perReply = 0.8 * perReply + 0.2 * ((now - Math.max(entered, lastFinish)) / 1000);
        lastFinish = now;
      };
    },
  };
}

const newId = () => 'chatcmpl-' + randomBytes(12).toString('hex');
const usage = (c: Pick<Completion, 'promptTokens' | 'completionTokens'>) => ({
  prompt_tokens: c.promptTokens,
  completion_tokens: c.completionTokens,
  total_tokens: c.promptTokens + c.completionTokens,
});

/** An AbortSignal that fires when the client goes away before its response is finished. */
function disconnectSignal(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) ac.abort();
  });
  return ac.signal;
}

export function createServer(model: ChatModel, o: ServerOptions = {}): FastifyInstance {
  const bodyLimit = o.bodyLimit ?? LIMITS.bodyBytes;
  const maxQueue = o.maxQueue ?? SERVER_DEFAULTS.maxQueue;
  const app = Fastify({
    logger: o.logger ?? false,
    bodyLimit,
    // close() ends open streams and keep-alive sockets too, so Ctrl-C stops the server at once
    forceCloseConnections: true,
    // OpenAI rejects "0.5" for a number rather than guessing: no type coercion; unknown
    // fields are left alone (and ignored), not stripped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  // JSON is the only body this server reads (Fastify would also take text/plain)
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    try {
      done(null, parseBody(req.headers['content-type'], body as Buffer));
    } catch (e) {
      done(e as Error, undefined);
    }
  });
  const queue = admission(maxQueue);
  // the page's settings start at the same defaults a request without them gets
  const page = readFileSync(new URL('./page.html', import.meta.url), 'utf8')
    .replaceAll('__TEMPERATURE__', String(CHAT_DEFAULTS.temperature))
    .replaceAll('__MAX_TOKENS__', String(defaultMaxTokens(model.contextLength)));

  // Every error leaves in OpenAI's shape. Fastify's own (validation, body too large, wrong
  // content type) carry a 4xx statusCode; anything unexpected is a 500.
  app.setErrorHandler((err: FastifyError | ApiError | Error, req, reply) => {
    if (err instanceof ApiError) {
      return reply.code(err.status).headers(err.headers).send(errorBody(err.message, err.status >= 500 ? 'server_error' : 'invalid_request_error', err.param, err.code));
    }
    if (err instanceof ContextOverflowError) return reply.code(400).send(errorBody(err.message, 'invalid_request_error', 'messages', 'context_length_exceeded'));
    if (err instanceof UserError) return reply.code(400).send(errorBody(err.message, 'invalid_request_error', 'messages', null));
    const fe = err as FastifyError;
    if (fe.validation?.length) {
      const { param, message } = validationMessage(fe.validation);
      return reply.code(400).send(errorBody(message, 'invalid_request_error', param, 'invalid_value'));
    }
    if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      const type = req.headers['content-type'];
      return reply.code(415).send(errorBody(`the body must be JSON, sent with content-type: application/json${type ? ` (got ${type})` : ' (none was sent)'}`, 'invalid_request_error', null, 'unsupported_media_type'));
    }
    const status = fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500 ? fe.statusCode : 500;
    if (status === 500) app.log.error(err);
    const message = status === 413 ? `the body is larger than ${bodyLimit} bytes` : status === 500 ? 'internal server error' : err.message;
    return reply.code(status).send(errorBody(message, status === 500 ? 'server_error' : 'invalid_request_error', null, status === 413 ? 'request_too_large' : null));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(`no route ${req.method} ${req.url}`, 'invalid_request_error', null, 'not_found'));
  });

  app.get('/', (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
  app.get('/favicon.ico', (_req, reply) => reply.code(204).send()); // browsers ask; we have none
  app.get('/health', async () => ({ status: 'ok', model: model.id, queue: { generating: queue.generating, waiting: queue.waiting, limit: maxQueue } }));
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{ id: model.id, object: 'model', created: 0, owned_by: 'minichat', context_length: model.contextLength }],
  }));

  app.post<{ Body: ChatRequest }>('/v1/chat/completions', { schema: { body: requestSchema(model.contextLength) } }, async (req, reply) => {
    const body = req.body;
    const messages = toMessages(body);
    const opts = {
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? defaultMaxTokens(model.contextLength),
      temperature: body.temperature ?? CHAT_DEFAULTS.temperature,
      topP: body.top_p ?? CHAT_DEFAULTS.topP,
      topK: body.top_k ?? CHAT_DEFAULTS.topK,
      seed: body.seed,
    };
    const signal = disconnectSignal(reply);
    const leave = queue.enter(); // a 503 if the queue is full
    signal.addEventListener('abort', () => leave(false), { once: true }); // a client that left holds no place
    const complete = (onText?: Parameters<ChatModel['complete']>[2]) =>
      model.complete(messages, opts, onText, signal).then(
        (c) => (leave(true), c),
        (e) => (leave(false), Promise.reject(e)),
      );
    const id = newId(), created = Math.floor(Date.now() / 1000);

    if (!body.stream) {
      let c: Completion;
      try {
        c = await complete();
      } catch (e) {
        if (!signal.aborted) throw e;
        reply.hijack(); // the client left: nobody to answer, and no error to log
        reply.raw.destroy();
        return reply;
      }
      return {
        id, object: 'chat.completion', created, model: model.id,
        choices: [{ index: 0, message: { role: 'assistant', content: c.text, ...(c.parts?.some((p) => p.type !== 'text') ? { minichat_parts: c.parts } : {}) }, logprobs: null, finish_reason: c.finishReason }],
        usage: usage(c),
      };
    }

    // Streaming. The headers go out with the first piece of the reply, so an error found
    // before generation starts (the conversation cannot fit) is still a plain 400.
    const chunk = (delta: object, finish: string | null = null) => ({
      id, object: 'chat.completion.chunk', created, model: model.id, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
    const send = (obj: object | string) => reply.raw.write(`data: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n\n`);
    const start = () => {
      if (reply.sent) return;
      reply.hijack(); // from here on we write the raw response ourselves
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      send(chunk({ role: 'assistant', content: '' }));
    };
    const onText = (delta: string, part: AssistantPart['type']) => {
      start();
      send(chunk(part === 'text' ? { content: delta } : { minichat_part: { type: part, text: delta } }));
    };
    try {
      const c = await complete(onText);
      start();
      send(chunk({}, c.finishReason));
      if (body.stream_options?.include_usage) send({ id, object: 'chat.completion.chunk', created, model: model.id, choices: [], usage: usage(c) });
      send('[DONE]');
      reply.raw.end();
    } catch (e) {
      if (signal.aborted) {
        reply.raw.destroy(); // the client left; nobody to answer
        return reply;
      }
      if (!reply.sent) throw e; // nothing streamed yet: the error handler answers
      // mid-stream: the status is already 200, so the error travels as a final event
      send({ error: { message: (e as Error).message, type: 'server_error', param: null, code: null } });
      reply.raw.end();
    }
    return reply;
  });

  return app;
}
