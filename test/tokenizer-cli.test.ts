// `minichat tokenizer ...` as a user runs it: train → encode → decode → eval, and the
// one-line errors (missing file, empty input, vocab too small, unknown pattern name).
import { describe, expect, it } from 'vitest';
import { tempDir } from './tmp.ts';
import { spawnSync } from 'node:child_process';
import { writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { get_encoding } from 'tiktoken';

const cli = (args: string[], input?: string) => {
  const r = spawnSync(process.execPath, ['bin/minichat.mjs', 'tokenizer', ...args], { encoding: 'utf8', input });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

const dir = tempDir('minichat-cli-');
const textFile = join(dir, 'train.txt');
writeFileSync(textFile, 'To be, or not to be, that is the question. Whether tis nobler in the mind to suffer.\n'.repeat(200));
const jsonl = join(dir, 'docs.jsonl');
writeFileSync(jsonl, ['{"body":"first document here"}', '{"body":"second document, café"}'].join('\n') + '\n');

describe('minichat tokenizer', () => {
  it('trains, encodes, decodes and evaluates', () => {
    const out = join(dir, 'tok');
    const t = cli(['train', '--input', textFile, '--vocab-size', '300', '--out', out, '--json']);
    expect(t.err).toBe('');
    expect(t.code).toBe(0);
    expect(JSON.parse(t.out).vocab_size).toBe(300);
    expect(existsSync(join(out, 'tokenizer.tiktoken')) && existsSync(join(out, 'tokenizer.json'))).toBe(true);

    const e = cli(['encode', '--tokenizer', out, '--text', 'To be, or not to be 👋']);
    expect(e.code).toBe(0);
    const ids = JSON.parse(e.out) as number[];
    expect(ids.length).toBeGreaterThan(0);
    // stdin gives the same ids
    expect(JSON.parse(cli(['encode', '--tokenizer', out], 'To be, or not to be 👋').out)).toEqual(ids);
    const d = cli(['decode', '--tokenizer', out, '--ids', JSON.stringify(ids)]);
    expect(d.out).toBe('To be, or not to be 👋');

    const ev = cli(['eval', '--tokenizer', out, '--input', textFile, '--json']);
    const rows = JSON.parse(ev.out).results as { tokenizer: string; bytes_per_token: number }[];
    expect(rows.map((r) => r.tokenizer)).toEqual([out, 'gpt2', 'cl100k_base']);
    expect(rows[0].bytes_per_token).toBeGreaterThan(2); // it learned this text's words
  }, 60_000);

  it('reads JSONL with --text-field, and a built-in tokenizer by name', () => {
    const out = join(dir, 'tokj');
    expect(cli(['train', '--input', jsonl, '--text-field', 'body', '--vocab-size', '280', '--out', out, '--json']).code).toBe(0);
    const gpt2 = cli(['encode', '--tokenizer', 'gpt2', '--text', 'Hello world']);
    const enc = get_encoding('gpt2');
    expect(JSON.parse(gpt2.out)).toEqual(Array.from(enc.encode('Hello world'))); // tiktoken, live
    enc.free();
  }, 60_000);

  it('fails with one clear line on user mistakes', () => {
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, '');
    const cases: [string[], RegExp][] = [
      [['train', '--input', join(dir, 'missing.txt'), '--out', join(dir, 'x')], /missing\.txt: no such file/],
      [['train', '--input', empty, '--out', join(dir, 'x')], /empty\.txt \(the input is empty\)/],
      [['train', '--input', textFile, '--vocab-size', '260', '--out', join(dir, 'x')], /--vocab-size must be at least .* 267, got 260/],
      [['train', '--input', jsonl, '--out', join(dir, 'x')], /docs\.jsonl:1: no string field "text"/],
      [['encode', '--tokenizer', join(dir, 'tok'), '--pattern', 'gpt5', '--text', 'x'], /unknown pattern name gpt5/],
      [['encode', '--tokenizer', join(dir, 'nope'), '--text', 'x'], /nope: no such file or directory/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(args);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(msg);
      expect(r.err.trim().split('\n').length).toBe(1); // one line, no stack trace
      expect(r.err.startsWith('minichat: ')).toBe(true);
    }
  }, 60_000);
});
