// `minichat serve` refusing what it cannot do, as a user runs it (the real binary on a tiny
// checkpoint): a port out of range, a port in use and a bad --max-queue are one line each,
// with no stack trace; --help shows the queue's bound with its default.
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_DEFAULTS } from '../src/serve/server.ts';
import { tinyChatCheckpoint } from './chat-fixture.ts';

const bin = new URL('../bin/minichat.mjs', import.meta.url).pathname;
const run = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });

let ckpt: string;
let taken: Server;
let takenPort: number;
beforeAll(async () => {
  ckpt = await tinyChatCheckpoint();
  taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  takenPort = (taken.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => taken.close(() => r())));

describe('minichat serve: ports and the queue flag', () => {
  it('--port 70000 (and other non-ports) are refused before the model is loaded', () => {
    for (const [v, msg] of [['70000', /expected a port number from 0 to 65535, got "70000"/], ['-1', /got "-1"/]] as const) {
      const r = run(['serve', '--ckpt', ckpt, '--port', v]);
      expect(r.status, v).toBe(1);
      expect(r.stderr.split('\n')[0]).toMatch(/^error: option '--port <n>' argument '.*' is invalid\. /);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('a port in use is one line naming it', () => {
    const r = run(['serve', '--ckpt', ckpt, '--port', String(takenPort)]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`minichat: port ${takenPort} is already in use: pick another with --port (0 = any free port)\n`);
  });

  it('--max-queue must be an integer >= 0, and --help shows it with its default', () => {
    const bad = run(['serve', '--ckpt', ckpt, '--max-queue', '-3']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--max-queue <n>' argument '-3' is invalid\. expected an integer >= 0/);
    const help = run(['serve', '--help']);
    const text = help.stdout.replace(/\s+/g, ' '); // commander wraps long lines
    expect(text).toMatch(new RegExp(`--max-queue <n> .*503 with a Retry-After \\(default: ${SERVER_DEFAULTS.maxQueue}\\)`));
    expect(text).toMatch(/--port <n> TCP port, 0 to 65535/);
  });

  it('--max-queue 0 reaches the server: /health reports the limit', async () => {
    const child = spawn(process.execPath, [bin, 'serve', '--ckpt', ckpt, '--port', '0', '--max-queue', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = '';
        child.stderr.on('data', (d) => {
          err += d;
          const m = /at (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
          if (m) resolve(m[1]);
        });
        child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${err}`)));
      });
      expect(await (await fetch(url + '/health')).json()).toMatchObject({ status: 'ok', queue: { generating: 0, waiting: 0, limit: 0 } });
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
