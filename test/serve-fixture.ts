// The server tests' one way to serve a model: the real Fastify app on a free loopback port,
// and an official OpenAI client pointed at it.
import OpenAI from 'openai';
import type { FastifyInstance } from 'fastify';
import type { ChatModel } from '../src/serve/chat-model.ts';
import { createServer } from '../src/serve/server.ts';

export async function listen(model: ChatModel, maxQueue?: number): Promise<{ app: FastifyInstance; base: string; client: OpenAI }> {
  const app = createServer(model, { maxQueue });
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  // maxRetries 0: a failure must show, not be retried away
  return { app, base, client: new OpenAI({ baseURL: base + '/v1', apiKey: 'x', maxRetries: 0 }) };
}
