// Reading documents: .txt (separator or blank lines), .jsonl (field, errors naming file and
// line), directories (sorted), the maxChars budget, and empty input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readAllDocuments, streamDocuments } from '../src/data/documents.ts';
import { UserError } from '../src/util/errors.ts';

let dir: string;
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'minichat-docs-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('.txt', () => {
  it('splits on the separator when the file has one (blank lines then stay inside)', async () => {
    const p = file('sep.txt', 'One.\n\nStill one.\n<|endoftext|>\nTwo.<|endoftext|>Three.\n<|endoftext|>\n');
    expect(await readAllDocuments(p)).toEqual(['One.\n\nStill one.', 'Two.', 'Three.']);
  });

  it('splits on blank lines otherwise (spaces and CRLF count as blank)', async () => {
    const p = file('blank.txt', 'First line\nof one.\n\nTwo.\r\n  \r\nThree.\n\n\n\n');
    expect(await readAllDocuments(p)).toEqual(['First line\nof one.', 'Two.', 'Three.']);
  });

  it('split can be forced, and a custom separator used', async () => {
    const p = file('force.txt', 'a\n\nb\n<|endoftext|>\nc');
    expect(await readAllDocuments(p, { split: 'blank-line' })).toEqual(['a', 'b\n<|endoftext|>\nc']);
    const q = file('custom.txt', 'x\n===\ny\n===\nz');
    expect(await readAllDocuments(q, { split: 'separator', separator: '===' })).toEqual(['x', 'y', 'z']);
  });

  it('documents that straddle the 1 MB read chunks come out whole', async () => {
    const docs = Array.from({ length: 3000 }, (_, i) => `Story ${i}. ` + 'word '.repeat(100 + (i % 37)).trim());
    const p = file('big.txt', docs.join('\n<|endoftext|>\n'));
    expect(await readAllDocuments(p)).toEqual(docs);
  });

  it('maxChars stops early and cuts the last document', async () => {
    const p = file('budget.txt', 'aaaa\n\nbbbb\n\ncccc');
    expect(await readAllDocuments(p, { maxChars: 6 })).toEqual(['aaaa', 'bb']);
    expect(await readAllDocuments(p, { maxChars: 8 })).toEqual(['aaaa', 'bbbb']);
  });
});

describe('.jsonl', () => {
  it('reads the text field (default "text") and skips blank lines', async () => {
    const p = file('ok.jsonl', '{"text": "hello there"}\n\n{"text": "second", "id": 2}\n');
    expect(await readAllDocuments(p)).toEqual(['hello there', 'second']);
    const q = file('q.jsonl', '{"question": "2+2?", "answer": "4"}\n');
    expect(await readAllDocuments(q, { textField: 'question' })).toEqual(['2+2?']);
  });

  it('a line that is not JSON names the file and the 1-based line', async () => {
    const p = file('bad.jsonl', '{"text": "fine"}\n{"text": "fine"}\n{"text": oops}\n');
    await expect(readAllDocuments(p)).rejects.toThrow(UserError);
    await expect(readAllDocuments(p)).rejects.toThrow(`${p}:3: not valid JSON`);
  });

  it('a missing field lists the fields there are', async () => {
    const p = file('missing.jsonl', '{"text": "a"}\n{"content": "b", "id": 1}\n');
    await expect(readAllDocuments(p)).rejects.toThrow(`${p}:2: no field "text" (fields: content, id); choose one with --text-field`);
  });

  it('a field that is not a string, or a line that is not an object, is an error', async () => {
    const p = file('num.jsonl', '{"text": 12}\n');
    await expect(readAllDocuments(p)).rejects.toThrow(`${p}:1: field "text" is number, expected a string`);
    const q = file('arr.jsonl', '["text"]\n');
    await expect(readAllDocuments(q)).rejects.toThrow(`${q}:1: expected a JSON object per line, got an array`);
  });
});

describe('sources', () => {
  it('a directory is read in sorted order, other files ignored', async () => {
    const d = join(dir, 'corpus');
    mkdirSync(d);
    writeFileSync(join(d, 'b.jsonl'), '{"text": "from b"}\n');
    writeFileSync(join(d, 'a.txt'), 'from a 1\n\nfrom a 2');
    writeFileSync(join(d, 'notes.csv'), 'ignored');
    expect(await readAllDocuments(d)).toEqual(['from a 1', 'from a 2', 'from b']);
  });

  it('streams without reading everything first', async () => {
    const p = file('stream.txt', 'a\n\nb\n\nc');
    const it = streamDocuments(p)[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe('a');
    await it.return?.(undefined);
  });

  it('empty input, a missing path and an unknown extension are clear UserErrors', async () => {
    const p = file('empty.txt', '  \n\n \n');
    await expect(readAllDocuments(p)).rejects.toThrow(`${p}: no documents found`);
    const q = file('empty.jsonl', '');
    await expect(readAllDocuments(q)).rejects.toThrow(UserError);
    await expect(readAllDocuments(join(dir, 'nope.txt'))).rejects.toThrow('data source not found');
    const r = file('data.csv', 'x');
    await expect(readAllDocuments(r)).rejects.toThrow('unsupported file type ".csv"');
  });
});
