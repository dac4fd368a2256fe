// `minichat chat` and `minichat serve` as a user runs them: the real binary on a tiny
// checkpoint. One-shot -p with --json, the REPL driven through stdin (/reset, /system,
// /temperature, /quit, end of input), flag errors, and the server answering on a free port.
import { spawn, spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { tinyChatCheckpoint } from './chat-fixture.ts';

const bin = new URL('../bin/minichat.mjs', import.meta.url).pathname;
const run = (args: string[], input?: string) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, input });

let ckpt: string;
beforeAll(async () => {
  ckpt = await tinyChatCheckpoint();
});

describe('minichat chat', () => {
  it('-p --json prints one reply with its finish reason and usage', () => {
    const r = run(['chat', '--ckpt', ckpt, '-p', 'Hello there!', '--json', '--max-tokens', '12', '--seed', '4']);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(typeof j.reply).toBe('string');
    expect(['stop', 'length']).toContain(j.finish_reason);
    expect(j.usage.total_tokens).toBe(j.usage.prompt_tokens + j.usage.completion_tokens);
    expect(j.usage.completion_tokens).toBeLessThanOrEqual(12);
    expect(j.usage.completion_tokens === 12).toBe(j.finish_reason === 'length');
    // the prompt is <|bos|><|user_start|>Hello there!<|user_end|><|assistant_start|>: 4 specials + the text
    expect(j.usage.prompt_tokens).toBeGreaterThan(4);
    // the same seed gives the same reply; streaming (no --json) prints that reply and a newline
    const again = run(['chat', '--ckpt', ckpt, '-p', 'Hello there!', '--max-tokens', '12', '--seed', '4']);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toBe(j.reply + '\n');
  });

  it('the REPL keeps a conversation, and /reset, /system, /temperature, /help, /quit work', () => {
    const input = ['Hello there!', '/temperature 0', '/help', 'How are you?', '/reset', '/system Be kind.', 'Hi', '/temperature x', '/bogus', '/quit', 'never read'].join('\n') + '\n';
    const r = run(['chat', '--ckpt', ckpt, '--max-tokens', '5', '--seed', '1'], input);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/chatting with .* \(128-token context\)/);
    expect(r.stderr).toContain('(temperature 0)');
    expect(r.stderr).toMatch(/commands:\n\s+\/reset/);
    expect(r.stderr).toContain('(conversation cleared)');
    expect(r.stderr).toContain('(system message set; conversation cleared)');
    expect(r.stderr).toMatch(/\/temperature needs one number >= 0, got "x"/);
    expect(r.stderr).toMatch(/unknown command \/bogus/);
    // three questions, three replies (one line each: a reply is followed by a newline)
    expect(r.stdout.split('\n').length - 1).toBeGreaterThanOrEqual(3);
  });

  it('end of input (Ctrl-D) leaves cleanly', () => {
    const r = run(['chat', '--ckpt', ckpt, '--max-tokens', '3'], 'Hello\n');
    expect(r.status, r.stderr).toBe(0);
  });

  it('greedy replies do not depend on the seed, and the REPL reply matches -p for the same settings', () => {
    const a = run(['chat', '--ckpt', ckpt, '-p', 'Hi', '--temperature', '0', '--max-tokens', '6', '--json', '--seed', '1']);
    const b = run(['chat', '--ckpt', ckpt, '-p', 'Hi', '--temperature', '0', '--max-tokens', '6', '--json', '--seed', '2']);
    expect(JSON.parse(a.stdout).reply).toBe(JSON.parse(b.stdout).reply);
    const repl = run(['chat', '--ckpt', ckpt, '--temperature', '0', '--max-tokens', '6'], 'Hi\n/quit\n');
    expect(repl.stdout).toBe(JSON.parse(a.stdout).reply + '\n');
  });

  it('flag mistakes are one-line errors', () => {
    const cases: [string[], RegExp][] = [
      [['chat', '--ckpt', ckpt, '--bogus'], /unknown option '--bogus'/],
      [['chat', '--ckpt', ckpt, '--top-p', '0'], /expected a number in \(0, 1\], got "0"/],
      [['chat', '--ckpt', ckpt, '--temperature', '-1'], /expected a number >= 0/],
      [['chat', '--ckpt', ckpt, '--json'], /--json needs -p/],
      [['chat', '--ckpt', ckpt, '-p', 'x', '--max-tokens', '128'], /leaves no room for the prompt in the model's 128-token context/],
      [['chat', '--ckpt', '/nope'], /\/nope: no checkpoint found/],
    ];
    for (const [args, msg] of cases) {
      const r = run(args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('--help shows every flag with its default', () => {
    const r = run(['chat', '--help']);
    r.stdout = r.stdout.replace(/\s+/g, ' '); // commander wraps long lines
    expect(r.stdout).toMatch(/--temperature <t>.*\(default: 0\.7\)/s);
    expect(r.stdout).toMatch(/--top-k <k>.*\(default: 50\)/s);
    expect(r.stdout).toMatch(/--max-tokens <n>.*default: 256, or half the context/s);
    const s = run(['serve', '--help']);
    s.stdout = s.stdout.replace(/\s+/g, ' ');
    expect(s.stdout).toMatch(/--port <n>.*\(default: 8000\)/s);
    expect(s.stdout).toMatch(/--host <addr>.*\(default: "127\.0\.0\.1"\)/s);
  });
});

describe('minichat serve', () => {
  it('listens, answers /v1/chat/completions, and stops on SIGTERM', async () => {
    const child = spawn(process.execPath, [bin, 'serve', '--ckpt', ckpt, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
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
      const r = await fetch(url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 }) });
      expect(r.status).toBe(200);
      const j = await r.json();
      expect(j.object).toBe('chat.completion');
      expect(j.usage.completion_tokens).toBeLessThanOrEqual(4);
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
