// The OpenAI-compatible HTTP server (`minichat serve`): any OpenAI client — the official
// `openai` npm/pip packages, curl, chat UIs — can talk to a minichat checkpoint.
//
//   POST /v1/chat/completions   a reply, whole or streamed as server-sent events (stream: true)
//   GET  /v1/models             the one model this server holds
//   GET  /health                {"status": "ok"} once the model is loaded
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
// that disconnects aborts its generation, so it stops holding the model.
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

export interface ServerOptions {
  logger?: boolean; // Fastify's request log on stderr
  bodyLimit?: number; // bytes; default LIMITS.bodyBytes
}

/** An error the client caused, answered with `status` in OpenAI's error shape. */
class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null, readonly code: string | null = null) {
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
    const content = typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text ?? '').join('');
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
  const app = Fastify({
    logger: o.logger ?? false,
    bodyLimit: o.bodyLimit ?? LIMITS.bodyBytes,
    // close() ends open streams and keep-alive sockets too, so Ctrl-C stops the server at once
    forceCloseConnections: true,
    // OpenAI rejects "0.5" for a number rather than guessing: no type coercion; unknown
    // fields are left alone (and ignored), not stripped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  // the page's settings start at the same defaults a request without them gets
  const page = readFileSync(new URL('./page.html', import.meta.url), 'utf8')
    .replaceAll('__TEMPERATURE__', String(CHAT_DEFAULTS.temperature))
    .replaceAll('__MAX_TOKENS__', String(defaultMaxTokens(model.contextLength)));

  // Every error leaves in OpenAI's shape. Fastify's own (validation, bad JSON, body too
  // large, wrong content type) carry a 4xx statusCode; anything unexpected is a 500.
  app.setErrorHandler((err: FastifyError | ApiError | Error, _req, reply) => {
    if (err instanceof ApiError) return reply.code(err.status).send(errorBody(err.message, 'invalid_request_error', err.param, err.code));
    if (err instanceof ContextOverflowError) return reply.code(400).send(errorBody(err.message, 'invalid_request_error', 'messages', 'context_length_exceeded'));
    if (err instanceof UserError) return reply.code(400).send(errorBody(err.message, 'invalid_request_error', 'messages', null));
    const fe = err as FastifyError;
    if (fe.validation?.length) {
      const v = fe.validation[0];
      const param = v.instancePath.replace(/^\//, '').replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.') || null;
      return reply.code(400).send(errorBody(`${param ?? 'body'} ${v.message ?? 'is invalid'}`, 'invalid_request_error', param, 'invalid_value'));
    }
    const status = fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500 ? fe.statusCode : 500;
    if (status === 500) app.log.error(err);
    const code = status === 413 ? 'request_too_large' : fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? 'invalid_json' : null;
    return reply.code(status).send(errorBody(status === 500 ? 'internal server error' : err.message, status === 500 ? 'server_error' : 'invalid_request_error', null, code));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody(`no route ${req.method} ${req.url}`, 'invalid_request_error', null, 'not_found'));
  });

  app.get('/', (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
  app.get('/favicon.ico', (_req, reply) => reply.code(204).send()); // browsers ask; we have none
  app.get('/health', async () => ({ status: 'ok', model: model.id }));
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
    const id = newId(), created = Math.floor(Date.now() / 1000);

    if (!body.stream) {
      let c: Completion;
      try {
        c = await model.complete(messages, opts, undefined, signal);
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
      const c = await model.complete(messages, opts, onText, signal);
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
