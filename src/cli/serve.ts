// `minichat serve`: an OpenAI-compatible HTTP server over a checkpoint (src/serve/server.ts),
// with a chat page at /. Runs until interrupted (Ctrl-C).
import type { Command } from 'commander';
import { loadChatModel } from '../serve/chat-model.ts';
import { createServer } from '../serve/server.ts';
import { UserError } from '../util/errors.ts';
import { nonNegInt, selectBackend, posInt } from './common.ts';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve a checkpoint over an OpenAI-compatible API (/v1/chat/completions) with a chat page at /')
    .requiredOption('--ckpt <dir>', 'checkpoint directory, or a run directory holding checkpoint/')
    .option('--port <n>', 'TCP port (0 = any free port)', nonNegInt, 8000)
    .option('--host <addr>', 'address to listen on (0.0.0.0 exposes the server to your network)', '127.0.0.1')
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', 'threads for the wasm backend (matmul split by rows; 1 = no worker threads, the default: see docs/wasm.md)', posInt, 1)
    .option('--log', "log every request (Fastify's JSON log) on stderr", false)
    .action(async (o) => {
      const backend = await selectBackend(o.backend, o.threads);
      const model = await loadChatModel(o.ckpt, backend);
      const app = createServer(model, { logger: o.log });
      let url: string;
      try {
        url = await app.listen({ port: o.port, host: o.host });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE') throw new UserError(`port ${o.port} is already in use: pick another with --port`);
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
