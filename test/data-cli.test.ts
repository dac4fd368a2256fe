// `minichat data prepare` end to end through its library function, with the built-in gpt2
// tokenizer (its ranks ship in the npm tiktoken package: no network), and the one-line
// errors of the `data` commands through the CLI's main().
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPrepare } from '../src/cli/data.ts';
import { main } from '../src/cli/main.ts';
import { loadShards } from '../src/data/shards.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'minichat-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = { textField: 'text', split: 'auto' as const, valFraction: 0.1, stories: 40, seed: 0, json: true };

describe('data prepare', () => {
  it('synthetic stories → shards with one BOS per document', async () => {
    const out = join(dir, 'syn');
    const meta = await runPrepare({ ...base, data: 'synthetic', tokenizer: 'gpt2', out }, () => {});
    expect(meta.documents).toBe(40);
    expect(meta.val.documents).toBe(4);
    expect(meta.tokenizer.fingerprint).toMatch(/^[0-9a-f]{16}$/); // checkpoint.ts's tokenizerFingerprint
    const { train, val } = await loadShards(out);
    const bos = meta.tokenizer.bosId;
    expect(train.filter((t) => t === bos).length).toBe(36);
    expect(val.filter((t) => t === bos).length).toBe(4);
    expect(train[0]).toBe(bos);
  }, 30_000);

  it('a JSONL file that does not parse: one line on stderr naming file and line, exit code 1', async () => {
    const p = join(dir, 'bad.jsonl');
    writeFileSync(p, '{"text": "ok"}\nnot json\n');
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const code = process.exitCode;
    try {
      await main(['node', 'minichat', 'data', 'prepare', '--data', p, '--tokenizer', 'gpt2', '--out', join(dir, 'bad')]);
      expect(process.exitCode).toBe(1);
      const msg = err.mock.calls.map((c) => String(c[0])).join('');
      expect(msg).toMatch(new RegExp(`^minichat: ${p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2: not valid JSON`));
      expect(msg.trim().split('\n').length).toBe(1);
    } finally {
      err.mockRestore();
      process.exitCode = code;
    }
  }, 30_000);

  it('bad flags are one-line errors', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const code = process.exitCode;
    try {
      await main(['node', 'minichat', 'data', 'prepare', '--data', 'synthetic', '--tokenizer', 'gpt2', '--out', join(dir, 'x'), '--val-fraction', '1']);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toBe('minichat: --val-fraction must be in [0, 1), got 1\n');
      await main(['node', 'minichat', 'data', 'download', 'nope']);
      expect(err.mock.calls.at(-1)![0]).toMatch(/^minichat: unknown data set "nope"/);
    } finally {
      err.mockRestore();
      process.exitCode = code;
    }
  });
});
