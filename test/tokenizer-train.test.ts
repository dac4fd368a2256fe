// The BPE trainer: same merges as a slow textbook trainer (full recount per merge), so the
// incremental counts and the heap are right; deterministic; the result loads into the npm
// tiktoken and gives our ids; save/load round trip; errors.
import { describe, expect, it } from 'vitest';
import { tempDir } from './tmp.ts';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tiktoken } from 'tiktoken/lite';
import { Tokenizer, trainTokenizer, countChunks, DEFAULT_SPECIALS, DEFAULT_PATTERN } from '../src/tokenizer/index.ts';

/** A corpus with structure made here: pseudo-words from syllables with a skewed frequency
 *  (like natural text), plus numbers, punctuation, unicode and whitespace. */
function makeCorpus(seed: number, words: number): string {
  let a = seed >>> 0;
  const r = () => ((a = (Math.imul(a ^ (a >>> 15), 2246822507) + 0x9e3779b9) >>> 0) / 4294967296);
  const syllables = ['ka', 'lo', 'mi', 'ne', 'ru', 'th', 'er', 'ing', 'qu', 'st', 'ba', 'zo', 'é', 'ñ', '日', '語', 'sh', 'ou'];
  const extras = ["it's", "THEY'RE", '👋', 'x86', '2024', '3.14', 'Hello,', 'world!', '\n', '\n\n', '  ', '(a+b)', 'aaa'];
  const lexicon: string[] = [];
  for (let i = 0; i < 1500; i++) {
    let w = '';
    const n = 1 + Math.floor(r() * 4);
    for (let j = 0; j < n; j++) w += syllables[Math.floor(r() * syllables.length)];
    lexicon.push(r() < 0.1 ? w[0].toUpperCase() + w.slice(1) : w);
  }
  lexicon.push(...extras);
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(lexicon[Math.floor(Math.pow(r(), 2) * lexicon.length)]);
  return out.join(' ');
}

/**
 * The slow, obvious trainer: recount every pair over all chunks before each merge. Same
 * tie-break (highest count, then smallest (a, b)) and same rule for a pair whose bytes are
 * already a token (retire it, merge nothing). Returns the token byte strings in id order.
 */
function naiveTrain(texts: string[], merges: number): string[] {
  const chunks = [...countChunks(texts, DEFAULT_PATTERN)];
  const words = chunks.map(([bin]) => Array.from(bin, (c) => c.charCodeAt(0)));
  const vocab = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i));
  const retired = new Set<string>();
  while (vocab.length - 256 < merges) {
    const counts = new Map<string, number>();
    words.forEach((w, j) => {
      for (let i = 0; i + 1 < w.length; i++) {
        const k = `${w[i]},${w[i + 1]}`;
        if (!retired.has(k)) counts.set(k, (counts.get(k) ?? 0) + chunks[j][1]);
      }
    });
    let best: [number, number] | null = null, bestCount = 0;
    for (const [k, c] of counts) {
      const [x, y] = k.split(',').map(Number);
      if (c > bestCount || (c === bestCount && best && (x < best[0] || (x === best[0] && y < best[1])))) {
        best = [x, y];
        bestCount = c;
      }
    }
    if (!best) break;
    const [a, b] = best;
    retired.add(`${a},${b}`);
    if (vocab.includes(vocab[a] + vocab[b])) continue;
    const id = vocab.length;
    vocab.push(vocab[a] + vocab[b]);
    for (let j = 0; j < words.length; j++) {
      const w = words[j], out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) out.push(id), i++;
        else out.push(w[i]);
      }
      words[j] = out;
    }
  }
  return vocab;
}

/** Our trained tokens as byte strings, in id order. */
function tokenStrings(tok: Tokenizer): string[] {
  const out: string[] = [];
  for (const [bin, id] of tok.encoder) out[id] = bin;
  return out;
}

describe('trainTokenizer', () => {
  const text = makeCorpus(7, 6000);

  it('learns the same merges as the slow reference trainer', async () => {
    const merges = 300;
    const tok = await trainTokenizer([text], { vocabSize: 256 + merges + DEFAULT_SPECIALS.length });
    const expected = naiveTrain([text], merges);
    expect(tokenStrings(tok)).toEqual(expected);
    expect(expected.length).toBe(256 + merges); // the corpus had enough pairs
  });

  it('sizes the vocabulary as asked, with specials at the end', async () => {
    const tok = await trainTokenizer([text], { vocabSize: 400 });
    expect(tok.vocabSize).toBe(400);
    expect(tok.bosId).toBe(400 - DEFAULT_SPECIALS.length);
    expect(tok.specialId(DEFAULT_SPECIALS[DEFAULT_SPECIALS.length - 1])).toBe(399);
    expect(tok.decode(tok.encode(text))).toBe(text);
    // compression: the trained vocabulary needs far fewer tokens than bytes
    expect(tok.encode(text).length).toBeLessThan(new TextEncoder().encode(text).length / 2);
  });

  it('is deterministic', async () => {
    const texts = [makeCorpus(1, 3000), makeCorpus(2, 3000)];
    const a = await trainTokenizer(texts, { vocabSize: 600 });
    const b = await trainTokenizer(texts, { vocabSize: 600 });
    expect(a.toTiktokenRanks()).toBe(b.toTiktokenRanks());
    expect(a.specials).toEqual(b.specials);
  });

  it('loads into the npm tiktoken and gives the same ids as ours', async () => {
    const tok = await trainTokenizer([text], { vocabSize: 500 });
    const enc = new Tiktoken(tok.toTiktokenRanks(), tok.specials, tok.pattern);
    const probes = [text.slice(0, 3000), makeCorpus(99, 500), 'unseen words: zebra quokka 12345 ñandú 😀', '<|bos|>hi<|user_start|>'];
    for (const p of probes) expect(tok.encode(p)).toEqual(Array.from(enc.encode(p, [], [])));
    expect(tok.encode(probes[3], { allowedSpecial: 'all' })).toEqual(Array.from(enc.encode(probes[3], 'all')));
    enc.free();
  });

  it('saves and loads (directory, and the bare .tiktoken file)', async () => {
    const tok = await trainTokenizer([text], { vocabSize: 500, pattern: "'s|'t| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+" });
    const dir = tempDir('minichat-tok-');
    await tok.save(dir);
    const back = await Tokenizer.load(dir);
    expect(back.pattern).toBe(tok.pattern);
    expect(back.specials).toEqual(tok.specials);
    expect(back.encode(text)).toEqual(tok.encode(text));
    const bare = await Tokenizer.load(join(dir, 'tokenizer.tiktoken'), { pattern: tok.pattern });
    expect(bare.encodeOrdinary(text)).toEqual(tok.encodeOrdinary(text));
    expect(Object.keys(bare.specials)).toEqual([]);
  });

  it('stops early when the corpus runs out of pairs', async () => {
    const tok = await trainTokenizer(['ab ab ab'], { vocabSize: 1000, specials: ['<|bos|>'] });
    // chunks "ab" and " ab": merges a+b, then " "+"ab"; nothing else to merge
    expect(tok.vocabSize).toBe(256 + 2 + 1);
    expect(tok.encode('ab ab')).toEqual([256, 257]);
  });

  it('rejects a vocab size below 256 + specials, and bad files', async () => {
    await expect(trainTokenizer(['x'], { vocabSize: 256 })).rejects.toThrow(/at least 256 \+ 11 special tokens = 267/);
    await expect(Tokenizer.load('/nonexistent/tok')).rejects.toThrow(/no such file/);
    const dir = tempDir('minichat-tok-');
    const bad = join(dir, 'bad.tiktoken');
    writeFileSync(bad, 'IQ== 0\nnot base64! x\n');
    await expect(Tokenizer.load(bad)).rejects.toThrow(/bad\.tiktoken:2: expected "base64 rank"/);
  });
});
