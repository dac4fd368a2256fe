// The tokenizer itself: byte-level BPE encoding and decoding with a table of ranks, exactly
// as tiktoken does it. Pure TypeScript with no Node imports, so the browser demo can use it;
// reading and writing files is in files.ts, loaded on demand by load()/save()/builtin().
//
// How encoding works (the same three steps as tiktoken):
//   1. Special tokens that the caller allows ('<|bos|>', ...) are cut out of the text first
//      and become their ids directly. Text that merely looks like a special token but is not
//      allowed is ordinary text.
//   2. The pre-split regex (patterns.ts) cuts the rest into chunks ("Hello", " world", "!").
//   3. Each chunk becomes UTF-8 bytes, and adjacent parts are merged, always choosing the
//      pair whose merged bytes have the lowest rank in the table, until no adjacent pair
//      is in the table. Each remaining part is one token; its id is its rank.
//
// Byte strings are kept as "binary strings": a JS string whose char codes are the bytes
// (0..255). They make fast Map keys, and base64 `atob` produces them directly.
//
// Lone surrogates: a JS string can hold half of a UTF-16 surrogate pair, which is not valid
// Unicode and has no UTF-8 encoding. We replace each one with U+FFFD before encoding, which
// is exactly what happens when the same string is passed to tiktoken (its WASM boundary
// converts with TextEncoder). So decode(encode(s)) === s for every well-formed string, and
// equals s with lone surrogates replaced by U+FFFD otherwise.
import { UserError, check } from '../util/errors.ts';
import { Heap } from './heap.ts';
import { compilePattern, DEFAULT_PATTERN } from './patterns.ts';

export type AllowedSpecial = 'all' | Set<string>;
export interface EncodeOptions {
  /** Which special tokens are recognised in the text; by default none are. */
  allowedSpecial?: AllowedSpecial;
}
/** Ranks as tiktoken files hold them (base64 of the token's bytes → rank), or as a list of
 *  byte strings indexed by rank. */
export type Ranks = Map<string, number> | Uint8Array[];

const ASCII = /^[\x00-\x7f]*$/;
const LONE_SURROGATE = /\p{Cs}/gu;
// Chunks up to this many characters are remembered with their ids (natural text repeats its
// words constantly); the cache is emptied when it holds too many entries.
const CACHE_CHUNK_CHARS = 32;
const CACHE_MAX_ENTRIES = 200_000;

/** Replace lone surrogates with U+FFFD (what TextEncoder and tiktoken do). */
export function toWellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, '\uFFFD');
}

/** UTF-8 bytes of a well-formed string, as a binary string. */
export function utf8Binary(s: string): string {
  if (ASCII.test(s)) return s; // ASCII is its own UTF-8
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) out += ch;
    else if (cp < 0x800) out += String.fromCharCode(0xc0 | (cp >> 6), 0x80 | (cp & 63));
    else if (cp < 0x10000)
      out += String.fromCharCode(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
    else
      out += String.fromCharCode(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
  }
  return out;
}

export function binaryToBytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

export function bytesToBinary(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

/**
 * Rank-based BPE on one chunk (a binary string), the heart of the encoder.
 *
 * Parts form a linked list over byte positions: part i covers piece[i, next[i]). A min-heap
 * holds candidate merges keyed by (rank, start); the smallest rank wins, and among equal
 * ranks the leftmost, which is tiktoken's rule. After a merge only the two pairs touching the
 * new part change, so we push those two; older heap entries for those positions are detected
 * as stale when popped (the pair starting there no longer has that rank). O(n log n), so
 * even a chunk of 100k spaces is quick.
 */
export function bytePairMerge(ranks: Map<string, number>, piece: string, out: number[]): void {
  const n = piece.length;
  const next = new Int32Array(n), prev = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1;
    prev[i] = i - 1;
  }
  const alive = new Uint8Array(n).fill(1); // 1 while position i starts a part
  // rank of merging the part at `start` with the part after it, or -1 if not a token
  const pairRank = (start: number): number => {
    const mid = next[start];
    if (mid >= n) return -1;
    const r = ranks.get(piece.slice(start, next[mid]));
    return r === undefined ? -1 : r;
  };
  // (rank, start) packed into one number: rank * 2^32 + start; smaller is better.
  const SHIFT = 2 ** 32;
  const heap = new Heap<number>((a, b) => a < b);
  const enqueue = (start: number) => {
    const r = pairRank(start);
    if (r >= 0) heap.push(r * SHIFT + start);
  };
  for (let i = 0; i + 1 < n; i++) enqueue(i);
  while (heap.size > 0) {
    const key = heap.pop()!;
    const start = key % SHIFT, rank = (key - start) / SHIFT;
    if (!alive[start] || pairRank(start) !== rank) continue; // stale entry
    // merge part `start` with the next one
    const mid = next[start];
    alive[mid] = 0;
    next[start] = next[mid];
    if (next[mid] < n) prev[next[mid]] = start;
    enqueue(start);
    if (prev[start] >= 0) enqueue(prev[start]);
  }
  for (let i = 0; i < n; i = next[i]) {
    const id = ranks.get(piece.slice(i, next[i]));
    if (id === undefined) throw new UserError(`the ranks have no token for byte ${piece.charCodeAt(i)}; a byte-level BPE needs all 256 single bytes`);
    out.push(id);
  }
}

/** Escape a literal string for use inside a RegExp. */
function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

export class Tokenizer {
  /** Token bytes (binary string) → id, for ordinary tokens. */
  readonly encoder: Map<string, number>;
  /** id → token bytes, for ordinary tokens (may have holes). */
  private readonly decoder: (Uint8Array | undefined)[] = [];
  /** Special token text → id. */
  readonly specials: Record<string, number>;
  private readonly specialById = new Map<number, string>();
  /** The pre-split pattern in tiktoken's dialect (what is saved and given to tiktoken). */
  readonly pattern: string;
  private readonly regex: RegExp;
  private readonly cache = new Map<string, number[]>();
  private specialRegexes = new Map<string, RegExp>();
  readonly vocabSize: number;

  private constructor(encoder: Map<string, number>, pattern: string, specials: Record<string, number>) {
    this.encoder = encoder;
    this.pattern = pattern;
    try {
      this.regex = compilePattern(pattern);
    } catch (e) {
      throw new UserError(`invalid split pattern ${JSON.stringify(pattern)}: ${(e as Error).message}`);
    }
    let maxId = -1;
    const seen = new Set<number>();
    for (const [bin, id] of encoder) {
      check(Number.isInteger(id) && id >= 0, `invalid rank ${id}`);
      check(!seen.has(id), `rank ${id} is given to two different tokens`);
      seen.add(id);
      this.decoder[id] = binaryToBytes(bin);
      maxId = Math.max(maxId, id);
    }
    this.specials = { ...specials };
    for (const [name, id] of Object.entries(specials)) {
      check(!seen.has(id), `special token ${name} has id ${id}, which an ordinary token already uses`);
      check(name.length > 0, 'a special token cannot be empty');
      seen.add(id);
      this.specialById.set(id, name);
      maxId = Math.max(maxId, id);
    }
    this.vocabSize = maxId + 1;
  }

  /** Build a tokenizer from ranks, a pattern (tiktoken dialect) and special tokens. Pure. */
  static fromRanks(ranks: Ranks, pattern: string = DEFAULT_PATTERN, specials: Record<string, number> = {}): Tokenizer {
    const encoder = new Map<string, number>();
    if (Array.isArray(ranks)) ranks.forEach((bytes, rank) => encoder.set(bytesToBinary(bytes), rank));
    else for (const [b64, rank] of ranks) encoder.set(atob(b64), rank);
    return new Tokenizer(encoder, pattern, specials);
  }

  /** Load a directory written by save(), or a `.tiktoken` ranks file (then the pattern is
   *  `opts.pattern`, by default the GPT-4 one, and there are no special tokens). Node only. */
  static async load(dirOrFile: string, opts: { pattern?: string } = {}): Promise<Tokenizer> {
    const files = await import('./files.ts');
    const { ranks, pattern, specials } = await files.readTokenizer(dirOrFile, opts.pattern);
    return Tokenizer.fromRanks(ranks, pattern, specials);
  }

  /** One of tiktoken's encodings, read from the ranks that ship in the npm `tiktoken`
   *  package. Node only. */
  static async builtin(name: 'gpt2' | 'cl100k_base' | 'o200k_base'): Promise<Tokenizer> {
    const files = await import('./files.ts');
    const { ranks, pattern, specials } = await files.readBuiltin(name);
    return Tokenizer.fromRanks(ranks, pattern, specials);
  }

  /** Write `tokenizer.tiktoken` and `tokenizer.json` into `dir`. Node only. */
  async save(dir: string): Promise<void> {
    const files = await import('./files.ts');
    await files.writeTokenizer(dir, this.toTiktokenRanks(), { pattern: this.pattern, specials: this.specials });
  }

  /** The ordinary tokens in tiktoken's text format: `base64(bytes) rank` per line. */
  toTiktokenRanks(): string {
    const lines: string[] = [];
    for (const [bin, id] of [...this.encoder].sort((a, b) => a[1] - b[1])) lines.push(`${btoa(bin)} ${id}`);
    return lines.join('\n') + '\n';
  }

  /** The BOS / document-separator token: `<|bos|>` when present, else `<|endoftext|>`. */
  get bosId(): number {
    const id = this.specials['<|bos|>'] ?? this.specials['<|endoftext|>'];
    if (id === undefined) throw new UserError('this tokenizer has no <|bos|> or <|endoftext|> special token');
    return id;
  }

  specialId(name: string): number {
    const id = this.specials[name];
    if (id === undefined) throw new UserError(`this tokenizer has no special token ${name}`);
    return id;
  }

  /** Encode text with no special tokens recognised. */
  encodeOrdinary(text: string): number[] {
    const ids: number[] = [];
    this.encodeSegment(toWellFormed(text), ids);
    return ids;
  }

  /** Encode text; the special tokens in `opts.allowedSpecial` become their ids, all other
   *  text (including special-looking text that is not allowed) is encoded as ordinary text. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const allowed = opts.allowedSpecial === 'all' ? Object.keys(this.specials) : [...(opts.allowedSpecial ?? [])];
    if (allowed.length === 0) return this.encodeOrdinary(text);
    for (const s of allowed) check(s in this.specials, `unknown special token ${s}`);
    const re = this.specialRegex(allowed);
    text = toWellFormed(text);
    const ids: number[] = [];
    let last = 0;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      this.encodeSegment(text.slice(last, m.index), ids);
      ids.push(this.specials[m[0]]);
      last = m.index + m[0].length;
    }
    this.encodeSegment(text.slice(last), ids);
    return ids;
  }

  // One regex that finds any of the allowed specials; longest first, so that a special which
  // is a prefix of another never shadows it.
  private specialRegex(allowed: string[]): RegExp {
    const key = [...allowed].sort().join('\u0000');
    let re = this.specialRegexes.get(key);
    if (!re) {
      const alts = [...allowed].sort((a, b) => b.length - a.length || (a < b ? -1 : 1)).map(escapeRegex);
      re = new RegExp(alts.join('|'), 'gu');
      this.specialRegexes.set(key, re);
    }
    return re;
  }

  // Pre-split a well-formed segment and BPE each chunk.
  private encodeSegment(text: string, ids: number[]): void {
    const re = this.regex;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const chunk = m[0];
      if (chunk.length === 0) {
        re.lastIndex++; // a user pattern that matches empty: step over one character
        continue;
      }
      this.encodeChunk(chunk, ids);
    }
  }

  private encodeChunk(chunk: string, ids: number[]): void {
    const cached = this.cache.get(chunk);
    if (cached) {
      for (const id of cached) ids.push(id);
      return;
    }
    const bin = utf8Binary(chunk);
    const whole = this.encoder.get(bin);
    if (whole !== undefined) {
      ids.push(whole); // the most common case: the chunk is a token by itself
      return;
    }
    const start = ids.length;
    bytePairMerge(this.encoder, bin, ids);
    if (chunk.length <= CACHE_CHUNK_CHARS) {
      if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.clear();
      this.cache.set(chunk, ids.slice(start));
    }
  }

  /** The bytes of a sequence of ids (special tokens give their text's UTF-8 bytes). */
  decodeBytes(ids: ArrayLike<number>): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const p = this.tokenBytes(ids[i]);
      parts.push(p);
      total += p.length;
    }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  /** The bytes of one token. */
  tokenBytes(id: number): Uint8Array {
    const b = this.decoder[id];
    if (b) return b;
    const special = this.specialById.get(id);
    if (special !== undefined) return new TextEncoder().encode(special);
    throw new UserError(`token id ${id} is not in this tokenizer's vocabulary (size ${this.vocabSize})`);
  }

  /** Decode ids to text. Byte sequences that are not valid UTF-8 (a sequence cut in the
   *  middle of a character) become U+FFFD, as in tiktoken's decode with errors='replace'. */
  decode(ids: ArrayLike<number>): string {
    // ignoreBOM: keep a leading U+FEFF, it is part of the text
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(this.decodeBytes(ids));
  }

  /** A decoder for ids that arrive one by one (sampling): it holds back the bytes of a
   *  character that is split across tokens until the rest arrives. */
  streamDecoder(): StreamDecoder {
    return new StreamDecoder(this);
  }
}

/** Incremental decoding: push ids as they come, get back the text that is complete. */
export class StreamDecoder {
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  constructor(private readonly tok: Tokenizer) {}

  /** Text completed by these ids; bytes of an unfinished character are kept for later. */
  push(ids: number | ArrayLike<number>): string {
    const list = typeof ids === 'number' ? [ids] : ids;
    return this.utf8.decode(this.tok.decodeBytes(list), { stream: true });
  }

  /** End of stream: any unfinished character becomes U+FFFD. */
  flush(): string {
    return this.utf8.decode();
  }
}
