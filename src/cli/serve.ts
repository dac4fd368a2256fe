// `minichat serve`: an OpenAI-compatible HTTP server over a checkpoint (src/serve/server.ts),
// with a chat page at /. Runs until interrupted (Ctrl-C).
import { InvalidArgumentError, type Command } from 'commander';
import { loadChatModel } from '../serve/chat-model.ts';
import { createServer, SERVER_DEFAULTS } from '../serve/server.ts';
import { UserError } from '../util/errors.ts';
import { int, nonNegInt, selectBackend, posInt, THREADS_HELP } from './common.ts';

/** A TCP port: 0 … 65535 (0 = any free port). */
function port(v: string): number {
  const n = int(v);
  if (n < 0 || n > 65535) throw new InvalidArgumentError(`expected a port number from 0 to 65535, got "${v}"`);
  return n;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve a checkpoint over an OpenAI-compatible API (/v1/chat/completions) with a chat page at /')
    .requiredOption('--ckpt <dir>', 'checkpoint directory, or a run directory holding checkpoint/')
    .option('--port <n>', 'TCP port, 0 to 65535 (0 = any free port)', port, 8000)
    .option('--host <addr>', 'address to listen on (0.0.0.0 exposes the server to your network)', '127.0.0.1')
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
    .option('--max-queue <n>', 'requests that may wait while one is generated; one more is answered 503 with a Retry-After', nonNegInt, SERVER_DEFAULTS.maxQueue)
    .option('--log', "log every request (Fastify's JSON log) on stderr", false)
    .action(async (o) => {
      const backend = await selectBackend(o.backend, o.threads);
      const model = await loadChatModel(o.ckpt, backend);
      const app = createServer(model, { logger: o.log, maxQueue: o.maxQueue });
      let url: string;
      try {
        url = await app.listen({ port: o.port, host: o.host });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        model.dispose();
        if (code === 'EADDRINUSE') throw new UserError(`port ${o.port} is already in use: pick another with --port (0 = any free port)`);
        if (code === 'EACCES') throw new UserError(`no permission to listen on port ${o.port}: ports below 1024 need privileges; pick another with --port`);
        if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UserError(`cannot listen on ${o.host}: not an address of this machine`);
        throw e;
      }
      // tests and scripts read this line to find the port when --port 0
      process.stderr.write(`minichat: serving ${model.id} (${model.contextLength}-token context) at ${url}  (chat page: ${url}/, API: ${url}/v1)\n`);
      // Stay up until interrupted; then close the server so in-flight responses end cleanly.
      await new Promise<void>((resolve) => {
        const stop = () => void app.close().then(() => resolve());
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      model.dispose();
    });
}
