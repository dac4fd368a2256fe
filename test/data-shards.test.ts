// Shards: one BOS per document, the validation split (whole documents, disjoint,
// deterministic, the asked-for fraction), uint16/int32 by vocab size, the on-disk format,
// and the in-memory path giving the same tokens as the disk path.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  writeShards, loadShards, tokenizeDocuments, isValidationDocument, decodeTokenFile, checkShardsMatchTokenizer,
  type TextTokenizer, type ShardProgress,
} from '../src/data/shards.ts';
import { UserError } from '../src/util/errors.ts';

/** A stub tokenizer: one id per byte (1..256), BOS = 0. Decodable, so tests can read docs back. */
const byteTok: TextTokenizer = {
  vocabSize: 257,
  bosId: 0,
  encode: (s) => Array.from(new TextEncoder().encode(s), (b) => b + 1),
};
/** Split a token array at BOS and decode each document. */
const docsOf = (tokens: ArrayLike<number>): string[] => {
  const out: string[] = [];
  let cur: number[] | null = null;
  for (const t of Array.from(tokens)) {
    if (t === 0) {
      if (cur) out.push(new TextDecoder().decode(Uint8Array.from(cur)));
      cur = [];
    } else cur!.push(t - 1);
  }
  if (cur) out.push(new TextDecoder().decode(Uint8Array.from(cur)));
  return out;
};

const corpus = Array.from({ length: 200 }, (_, i) => `document number ${i}: ${'ab'.repeat(i % 7)}`);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'minichat-shards-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('validation split rule', () => {
  it('holds out the asked fraction, evenly, deterministically', () => {
    for (const f of [0.05, 0.1, 0.25, 1 / 3]) {
      const held = Array.from({ length: 600 }, (_, i) => i).filter((i) => isValidationDocument(i, f));
      expect(Math.abs(held.length - 600 * f)).toBeLessThanOrEqual(1);
      expect(held[0]).toBe(0);
    }
    expect(Array.from({ length: 30 }, (_, i) => i).filter((i) => isValidationDocument(i, 0.1))).toEqual([0, 10, 20]);
    expect(isValidationDocument(5, 0)).toBe(false);
  });
});

describe('tokenizeDocuments (in memory)', () => {
  it('puts one BOS before every document and splits whole documents', () => {
    const { train, val, trainDocuments, valDocuments } = tokenizeDocuments(corpus, byteTok, { valFraction: 0.1 });
    expect(train).toBeInstanceOf(Uint16Array);
    expect(trainDocuments + valDocuments).toBe(200);
    expect(valDocuments).toBe(20);
    expect(train[0]).toBe(0);
    expect(val[0]).toBe(0);
    const t = docsOf(train), v = docsOf(val);
    expect(t.length).toBe(trainDocuments);
    expect(v.length).toBe(valDocuments);
    // disjoint and together exactly the corpus, in order
    expect(new Set([...t, ...v]).size).toBe(200);
    expect([...t, ...v].sort()).toEqual([...corpus].sort());
    expect(v).toEqual(corpus.filter((_, i) => isValidationDocument(i, 0.1)));
  });

  it('is deterministic', () => {
    const a = tokenizeDocuments(corpus, byteTok, { valFraction: 0.2 });
    const b = tokenizeDocuments(corpus, byteTok, { valFraction: 0.2 });
    expect(a).toEqual(b);
  });

  it('uses int32 when the vocabulary does not fit in 16 bits', () => {
    const big: TextTokenizer = { vocabSize: 100_000, bosId: 99_999, encode: (s) => [...s].map((c) => 70_000 + c.charCodeAt(0)) };
    const { train } = tokenizeDocuments(['hi', 'there'], big, { valFraction: 0 });
    expect(train).toBeInstanceOf(Int32Array);
    expect(Array.from(train)).toEqual([99_999, 70_104, 70_105, 99_999, 70_116, 70_104, 70_101, 70_114, 70_101]);
  });

  it('empty input and an all-validation split are UserErrors', () => {
    expect(() => tokenizeDocuments([], byteTok)).toThrow(UserError);
    expect(() => tokenizeDocuments(['only one'], byteTok, { valFraction: 0.5 })).toThrow(/went to validation/);
    expect(() => tokenizeDocuments(corpus, byteTok, { valFraction: 1 })).toThrow(/\[0, 1\)/);
  });
});

describe('writeShards / loadShards (on disk)', () => {
  it('writes tokens.bin, val.bin and meta.json that load back to the in-memory result', async () => {
    const out = join(dir, 'a');
    const progress: ShardProgress[] = [];
    let batches = 0;
    const tok: TextTokenizer = { ...byteTok, encodeBatch: (xs) => (batches++, xs.map(byteTok.encode)) };
    async function* stream() {
      yield* corpus;
    }
    const meta = await writeShards(stream(), tok, {
      outDir: out, valFraction: 0.1, fingerprint: 'bytes-v1', source: 'test corpus', onProgress: (p) => progress.push(p), progressEvery: 50, batchSize: 64,
    });
    expect(batches).toBe(4); // 200 docs in batches of 64
    expect(meta.dtype).toBe('uint16');
    expect(meta.documents).toBe(200);
    expect(meta.val.documents).toBe(20);
    expect(meta.tokenizer).toEqual({ vocabSize: 257, bosId: 0, fingerprint: 'bytes-v1' });
    expect(meta.chars).toBe(corpus.reduce((n, d) => n + d.length, 0));
    expect(progress.map((p) => p.documents)).toEqual([50, 100, 150, 200, 200]);

    const loaded = await loadShards(out);
    const mem = tokenizeDocuments(corpus, byteTok, { valFraction: 0.1 });
    expect(loaded.train).toEqual(mem.train);
    expect(loaded.val).toEqual(mem.val);
    expect(loaded.meta.train.tokens).toBe(mem.train.length);
    expect(JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')).source).toBe('test corpus');

    // the file itself: 32-byte header, then little-endian uint16
    const bytes = readFileSync(join(out, 'tokens.bin'));
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('MCTOKENS');
    expect(bytes.length).toBe(32 + 2 * mem.train.length);
    expect(bytes.readUInt16LE(32)).toBe(0); // BOS first
    expect(bytes.readUInt16LE(34)).toBe(mem.train[1]);
  });

  it('is deterministic on disk too', async () => {
    const opts = { valFraction: 0.05, fingerprint: 'f', source: 's' };
    await writeShards(corpus, byteTok, { ...opts, outDir: join(dir, 'd1') });
    await writeShards(corpus, byteTok, { ...opts, outDir: join(dir, 'd2') });
    for (const f of ['tokens.bin', 'val.bin']) expect(readFileSync(join(dir, 'd1', f)).equals(readFileSync(join(dir, 'd2', f)))).toBe(true);
  });

  it('a truncated file, a missing directory and a tokenizer mismatch are UserErrors', async () => {
    const out = join(dir, 'c');
    const meta = await writeShards(corpus, byteTok, { outDir: out, fingerprint: 'f1', source: 's' });
    const p = join(out, 'val.bin');
    writeFileSync(p, readFileSync(p).subarray(0, 40));
    await expect(loadShards(out)).rejects.toThrow(/truncated/);
    expect(() => decodeTokenFile(new Uint8Array(40), 'x.bin')).toThrow(/not a minichat token file/);
    await expect(loadShards(join(dir, 'none'))).rejects.toThrow(/no readable meta.json/);
    expect(() => checkShardsMatchTokenizer(meta, byteTok, 'f1')).not.toThrow();
    expect(() => checkShardsMatchTokenizer(meta, byteTok, 'f2')).toThrow(/different tokenizer/);
  });
});
