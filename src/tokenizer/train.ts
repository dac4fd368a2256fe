// Training a byte-level BPE tokenizer. Pure TypeScript (no Node imports): the browser demo
// and the model stage call trainTokenizer() on text they already hold.
//
// The algorithm (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with
// Subword Units"; byte-level as in GPT-2):
//   1. Pre-split every text with the regex (patterns.ts) and count each distinct chunk once:
//      natural text repeats its words, so 1 MB of text has only a few tens of thousands of
//      distinct chunks. From then on we work on (chunk, count) pairs, never on the text.
//   2. Every chunk starts as its UTF-8 bytes: token ids 0..255.
//   3. Repeat until the vocabulary is full: take the most frequent adjacent pair (a, b)
//      over all chunks (weighted by chunk count), give it the next id, and replace it in
//      every chunk where it occurs.
//
// What makes it fast is step 3's bookkeeping, instead of recounting all pairs per merge:
//   - `pairCount` holds the current count of every pair, and `pairWords` the chunks where
//     each pair occurs, so a merge only visits the chunks that contain its pair and only
//     adjusts the counts of pairs in those chunks.
//   - A max-heap orders pairs by count. Counts of existing pairs only ever go down (a merge
//     creates new pairs only with the new id), so heap entries are upper bounds: when the
//     top entry's count is out of date we push it back with the true count and look again.
//
// Determinism: ties in count are broken by the smaller pair (first id, then second id), and
// nothing depends on Map/Set iteration order except sums, so a given input and vocab size
// always produce the same tokenizer.
//
// One subtlety: two different pairs can spell the same bytes ("ab"+"c" and "a"+"bc"). A
// ranks table maps bytes → one rank, so the second such pair is skipped rather than merged.
import { check } from '../util/errors.ts';
import { Heap } from './heap.ts';
import { Tokenizer, binaryToBytes, toWellFormed, utf8Binary } from './bpe.ts';
import { compilePattern, DEFAULT_PATTERN } from './patterns.ts';
import { DEFAULT_SPECIALS } from './chat.ts';

export interface TrainOptions {
  /** Final vocabulary size, including the 256 byte tokens and the special tokens. */
  vocabSize: number;
  /** Pre-split pattern in tiktoken's dialect; default: the GPT-4 (cl100k) pattern. */
  pattern?: string;
  /** Special tokens, given the last ids; default: the chat specials of chat.ts. */
  specials?: string[];
  /** Called now and then with (merges done, merges wanted). */
  onProgress?: (merges: number, total: number) => void;
}

// A pair (a, b) of token ids as one number, usable as a Map key: a * 2^20 + b.
const PAIR_SHIFT = 2 ** 20;
const MAX_VOCAB = PAIR_SHIFT;
const pairKey = (a: number, b: number) => a * PAIR_SHIFT + b;

/** Count the distinct pre-split chunks of all texts, as UTF-8 binary strings. */
export function countChunks(texts: Iterable<string>, pattern: string): Map<string, number> {
  const re = compilePattern(pattern);
  const counts = new Map<string, number>();
  for (const raw of texts) {
    const text = toWellFormed(raw);
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m[0].length === 0) {
        re.lastIndex++;
        continue;
      }
      counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
    }
  }
  // re-key by UTF-8 bytes (two spellings never collide: UTF-8 is one-to-one)
  const bytes = new Map<string, number>();
  for (const [chunk, n] of counts) bytes.set(utf8Binary(chunk), n);
  return bytes;
}

export async function trainTokenizer(texts: Iterable<string>, opts: TrainOptions): Promise<Tokenizer> {
  const pattern = opts.pattern ?? DEFAULT_PATTERN;
  const specials = opts.specials ?? DEFAULT_SPECIALS;
  check(new Set(specials).size === specials.length, 'special tokens must be distinct');
  check(Number.isInteger(opts.vocabSize) && opts.vocabSize >= 256 + specials.length,
    `vocab size must be an integer of at least 256 + ${specials.length} special tokens = ${256 + specials.length}, got ${opts.vocabSize}`);
  check(opts.vocabSize <= MAX_VOCAB, `vocab size must be at most ${MAX_VOCAB}, got ${opts.vocabSize}`);
  const wantMerges = opts.vocabSize - 256 - specials.length;

  // 1-2. distinct chunks, each as a list of byte ids, with its count
  const chunkCounts = countChunks(texts, pattern);
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [bin, n] of chunkCounts) {
    if (bin.length < 2) continue; // a single byte has no pair and never changes
    words.push(Array.from(bin, (c) => c.charCodeAt(0)));
    counts.push(n);
  }

  // the vocabulary so far: id → bytes (binary string), and bytes → id to spot duplicates
  const vocab: string[] = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i));
  const known = new Set(vocab);

  // initial pair counts and where each pair occurs
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPair = (key: number, n: number, w: number) => {
    pairCount.set(key, (pairCount.get(key) ?? 0) + n);
    let set = pairWords.get(key);
    if (!set) pairWords.set(key, (set = new Set()));
    set.add(w);
  };
  words.forEach((word, w) => {
    for (let i = 0; i + 1 < word.length; i++) addPair(pairKey(word[i], word[i + 1]), counts[w], w);
  });

  // max-heap: higher count first, then the smaller pair key
  interface Entry { key: number; count: number }
  const heap = new Heap<Entry>((x, y) => x.count > y.count || (x.count === y.count && x.key < y.key));
  for (const [key, count] of pairCount) heap.push({ key, count });

  // pairs already merged or skipped: never counted again
  const retired = new Set<number>();

  // 3. merge loop
  const progressEvery = Math.max(1, Math.floor(wantMerges / 100));
  while (vocab.length - 256 < wantMerges) {
    const top = heap.pop();
    if (!top) break; // every chunk is a single token: the corpus cannot give more merges
    const current = pairCount.get(top.key) ?? 0;
    if (current === 0) continue;
    if (current !== top.count) {
      heap.push({ key: top.key, count: current }); // stale: re-queue with the true count
      continue;
    }
    const a = Math.floor(top.key / PAIR_SHIFT), b = top.key % PAIR_SHIFT;
    const merged = vocab[a] + vocab[b];
    pairCount.delete(top.key); // counts of (a, b) only fall from here on; never pick it again
    retired.add(top.key);
    if (known.has(merged)) continue; // same bytes as an existing token: skip (see header)
    const id = vocab.length;
    vocab.push(merged);
    known.add(merged);

    // replace (a, b) by id in every chunk that contains it
    const newPairs = new Set<number>();
    for (const w of pairWords.get(top.key)!) {
      const word = words[w], n = counts[w];
      let found = false;
      for (let i = 0; i + 1 < word.length; i++) if (word[i] === a && word[i + 1] === b) found = true;
      if (!found) continue; // this chunk lost the pair to an earlier merge
      // take away all of the chunk's old pairs, then add its new ones
      for (let i = 0; i + 1 < word.length; i++) {
        const k = pairKey(word[i], word[i + 1]);
        if (retired.has(k)) continue;
        const c = pairCount.get(k)! - n;
        if (c > 0) pairCount.set(k, c);
        else pairCount.delete(k);
      }
      const out: number[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
          out.push(id);
          i++; // left to right, non-overlapping: "aaa" → (aa) a
        } else out.push(word[i]);
      }
      words[w] = out;
      for (let i = 0; i + 1 < out.length; i++) {
        const k = pairKey(out[i], out[i + 1]);
        if (out[i] === id || out[i + 1] === id) {
          addPair(k, n, w);
          newPairs.add(k);
        } else if (!retired.has(k)) pairCount.set(k, (pairCount.get(k) ?? 0) + n);
      }
    }
    pairWords.delete(top.key);
    for (const k of newPairs) heap.push({ key: k, count: pairCount.get(k)! });
    if (opts.onProgress && (vocab.length - 256) % progressEvery === 0) opts.onProgress(vocab.length - 256, wantMerges);
  }
  opts.onProgress?.(vocab.length - 256, wantMerges);

  // ordinary tokens get ids 0..vocab.length-1 (their merge order), specials the ids after
  const specialIds: Record<string, number> = {};
  specials.forEach((s, i) => (specialIds[s] = vocab.length + i));
  return Tokenizer.fromRanks(vocab.map(binaryToBytes), pattern, specialIds);
}
