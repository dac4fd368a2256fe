// The encoder against tiktoken itself: with the real gpt2, cl100k_base and o200k_base ranks
// (shipped in node_modules/tiktoken), our ids must equal tiktoken's on a corpus built here
// to hit the hard cases: prose, code, CJK, emoji and ZWJ sequences, combining marks, long
// runs, odd-case contractions, unusual whitespace and seeded random Unicode. Also: the
// pattern strings, round trips (fuzzed), lone surrogates, special tokens, streaming decode,
// and the WASM fast path.
import { describe, expect, it, beforeAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { get_encoding, type Tiktoken } from 'tiktoken';
import { Tokenizer, PATTERNS, createFastEncoder, toJsRegexSource } from '../src/tokenizer/index.ts';

const NAMES = ['gpt2', 'cl100k_base', 'o200k_base'] as const;

/** A small seeded generator (mulberry32), so the random corpus is the same on every run. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIXED: string[] = [
  // prose
  'The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times.',
  "  Leading spaces, trailing spaces   \nand a new line.\r\nWindows line ends\r\n\r\n",
  // code
  'function add(a: number, b: number): number {\n\treturn a + b; // sum\n}\n\nconst xs = [1, 2, 3].map((x) => x ** 2);\n',
  'def f(x):\n    if x <= 0:\n        return {"k": [1,2,3]}\n    return f(x-1)  # recurse\n',
  '<html><body class="main">&amp; &lt;tag&gt; https://example.com/a/b?c=1&d=2</body></html>',
  // CJK, Korean, Arabic, Hindi, Thai, Cyrillic, Greek
  '日本語のテキストです。中文文本，包括标点符号！한국어 텍스트입니다. مرحبا بالعالم हिन्दी पाठ ภาษาไทย Привет, мир! Γειά σου Κόσμε',
  // emoji, ZWJ sequences, skin tones, flags, keycaps, variation selectors
  '👋 👩‍👩‍👧‍👦 👨🏽‍💻 🏳️‍🌈 🇫🇷🇯🇵 1️⃣ ❤️ ☺︎ 🧑‍🤝‍🧑 😀😃😄😁',
  // combining marks (decomposed accents, zalgo), NFD vs NFC
  'e\u0301 cafe\u0301 café n\u0303 Z\u0351\u0360\u0327a\u0362\u0334l\u035d\u0321g\u0334o\u0338 a\u0308\u0304',
  // long runs
  ' '.repeat(1000) + 'x' + '\n'.repeat(300) + 'y' + '\t'.repeat(50) + ' \n '.repeat(40),
  '1234567890'.repeat(30) + ' 3.14159 1,000,000 ١٢٣ ４５６ ⅷ ½',
  'a'.repeat(500) + ' ' + 'ab'.repeat(200) + ' ' + '!'.repeat(100) + '...?!?' + '-'.repeat(80),
  // contractions in odd cases; U+017F LONG S folds to s
  "I'm you're he's it'd we'll they've I'M YOU'RE HE'S IT'D WE'LL THEY'VE I'm You'Re 'ſ 'S 'T 'LL 'lL o'clock '' ''s",
  "don't DON'T Don'T rock'n'roll 'twas ’s curly’re",
  // unusual whitespace: NBSP, NEL, BOM, line/paragraph separators, ideographic space, ZWSP
  'a\u00a0b\u0085c\ufeffd\u2028e\u2029f\u3000g\u200bh\u000bi\u000cj \u00a0 \u3000\u3000k\u1680l\u202fm',
  '\ufeffstarts with a byte order mark',
  // where JS's \s and Unicode White_Space disagree (U+0085 is White_Space, U+FEFF is not)
  'x \u0085 y \u0085\u0085\u0085 a!\u0085 \ufeff\ufeff   \ufeff x  \u0085 !!\ufeff\ufeff! \u0085\n a \ufeffb',
  '!!\ufeff\ufeff!',
  'x  \u0085',
  // specials-looking text (ordinary unless allowed)
  'text <|endoftext|> more <|fim_prefix|> <|endofprompt|> <|bos|> <|not a token|>',
  // CamelCase, mixed case, digits and letters (o200k splits these differently)
  'getElementById XMLHttpRequest iPhone McDonald HTTPServerError camelCaseWord ABCdef abcDEF x86_64 GPT4o',
  '',
];

// Code point ranges to draw random characters from: scripts, symbols, emoji, and the whole
// of Unicode (assigned or not, minus surrogates).
const RANGES: [number, number][] = [
  [0x20, 0x7e], [0x00, 0x1f], [0xa0, 0x24f], [0x300, 0x36f], [0x370, 0x3ff], [0x400, 0x4ff],
  [0x590, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], [0x1100, 0x11ff], [0x2000, 0x206f],
  [0x2100, 0x2bff], [0x3000, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0xff00, 0xffef],
  [0x1f300, 0x1faff], [0x1d400, 0x1d7ff], [0x10000, 0x10ffff],
];

function randomText(r: () => number, length: number): string {
  let s = '';
  while (s.length < length) {
    const u = r();
    if (u < 0.3) s += ' ';
    else if (u < 0.35) s += '\n';
    else if (u < 0.45) s += "'";
    else {
      const [lo, hi] = RANGES[Math.floor(r() * RANGES.length)];
      let cp = lo + Math.floor(r() * (hi - lo + 1));
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
      s += String.fromCodePoint(cp);
    }
  }
  return s;
}

function buildCorpus(): string[] {
  const r = rng(1234);
  const docs = [...FIXED];
  for (let i = 0; i < 60; i++) docs.push(randomText(r, 20 + Math.floor(r() * 300)));
  // mixtures: fixed fragments glued together in random orders
  for (let i = 0; i < 30; i++) {
    let s = '';
    for (let j = 0; j < 4; j++) s += FIXED[Math.floor(r() * FIXED.length)].slice(0, 200) + (r() < 0.5 ? ' ' : '');
    docs.push(s);
  }
  return docs;
}

const corpus = buildCorpus();
const ours = new Map<string, Tokenizer>();
const theirs = new Map<string, Tiktoken>();

beforeAll(async () => {
  for (const name of NAMES) {
    ours.set(name, await Tokenizer.builtin(name));
    theirs.set(name, get_encoding(name));
  }
}, 60_000);

describe('patterns', () => {
  it("built-in pattern strings are tiktoken's pat_str", () => {
    const require = createRequire(import.meta.url);
    for (const name of NAMES) {
      const json = JSON.parse(readFileSync(require.resolve(`tiktoken/encoders/${name}.json`), 'utf8'));
      expect(PATTERNS[name]).toBe(json.pat_str);
    }
  });

  it('translates (?i:...) and \\s for JavaScript', () => {
    const js = toJsRegexSource("(?i:'s|'t)|\\s+(?!\\S)|[^\\s\\p{L}]");
    expect(js).toContain("'[Ssſ]");
    expect(js).toContain('[\\p{White_Space}]+(?![\\P{White_Space}])');
    expect(js).toContain('[^\\p{White_Space}\\p{L}]');
    expect(js).not.toContain('(?i:');
  });
});

describe.each(NAMES)('%s: our ids equal tiktoken', (name) => {
  it('on every document of the corpus', () => {
    const tok = ours.get(name)!, enc = theirs.get(name)!;
    let tokens = 0;
    for (const doc of corpus) {
      const expected = Array.from(enc.encode(doc, [], []));
      const got = tok.encodeOrdinary(doc);
      if (got.join() !== expected.join()) {
        // report the first document that differs, readably
        expect({ doc, got }).toEqual({ doc, got: expected });
      }
      tokens += got.length;
    }
    expect(tokens).toBeGreaterThan(1000); // the corpus really was encoded
  });

  it('with special tokens allowed', () => {
    const tok = ours.get(name)!, enc = theirs.get(name)!;
    const text = FIXED.join('<|endoftext|>') + '<|endoftext|><|endoftext|>x';
    const got = tok.encode(text, { allowedSpecial: 'all' });
    expect(got).toEqual(Array.from(enc.encode(text, 'all')));
    const occurrences = text.split('<|endoftext|>').length - 1;
    expect(occurrences).toBeGreaterThan(FIXED.length);
    expect(got.filter((id) => id === tok.specialId('<|endoftext|>')).length).toBe(occurrences);
    // not allowed: the same text is ordinary, and equals tiktoken with nothing disallowed
    expect(tok.encode(text)).toEqual(Array.from(enc.encode(text, [], [])));
    expect(tok.encode(text)).not.toContain(tok.specialId('<|endoftext|>'));
  });

  it('lone surrogates become U+FFFD, as in tiktoken', () => {
    const tok = ours.get(name)!, enc = theirs.get(name)!;
    const text = 'a\ud800b \udfff x\ud83d'; // two lone halves and a cut-off pair
    expect(tok.encode(text)).toEqual(Array.from(enc.encode(text, [], [])));
    expect(tok.decode(tok.encode(text))).toBe('a\ufffdb \ufffd x\ufffd');
  });

  it('decodes back to the text', () => {
    const tok = ours.get(name)!, enc = theirs.get(name)!;
    for (const doc of corpus) {
      const ids = tok.encode(doc);
      expect(tok.decode(ids)).toBe(doc);
      expect(Buffer.from(tok.decodeBytes(ids)).equals(Buffer.from(enc.decode(Uint32Array.from(ids))))).toBe(true);
    }
  });
});

describe('round trip and streaming', () => {
  it('decode(encode(s)) === s for fuzzed valid strings', () => {
    const tok = ours.get('cl100k_base')!;
    const r = rng(99);
    for (let i = 0; i < 300; i++) {
      const s = randomText(r, Math.floor(r() * 200));
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
  });

  it('the stream decoder handles characters split across tokens', () => {
    const tok = ours.get('cl100k_base')!;
    const text = '日本語 👩‍👩‍👧 e\u0301 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ok';
    const ids = tok.encode(text);
    // the test only means something if some token holds part of a character
    const partial = ids.filter((id) => tok.decode([id]).includes('\ufffd'));
    expect(partial.length).toBeGreaterThan(0);
    const dec = tok.streamDecoder();
    let out = '';
    for (const id of ids) {
      const piece = dec.push(id);
      expect(piece).not.toContain('\ufffd'); // never emits half a character
      out += piece;
    }
    out += dec.flush();
    expect(out).toBe(text);
    // an unfinished character at the end becomes U+FFFD on flush
    const dec2 = tok.streamDecoder();
    const cut = tok.encode('👋').slice(0, 1);
    expect(dec2.push(cut) + dec2.flush()).toBe('\ufffd');
  });
});

describe('fast path (tiktoken WASM with our ranks)', () => {
  it('agrees with the TypeScript encoder', async () => {
    const tok = ours.get('o200k_base')!;
    const fast = await createFastEncoder(tok);
    expect(fast.kind).toBe('tiktoken-wasm');
    for (const doc of corpus) expect(fast.encode(doc)).toEqual(tok.encode(doc));
    const special = 'a<|endoftext|>b';
    expect(fast.encode(special, 'all')).toEqual(tok.encode(special, { allowedSpecial: 'all' }));
    fast.free();
  });
});

describe('errors', () => {
  it('unknown ids and specials are user errors', () => {
    const tok = ours.get('gpt2')!;
    expect(() => tok.decode([tok.vocabSize])).toThrow(/not in this tokenizer's vocabulary/);
    expect(() => tok.specialId('<|nope|>')).toThrow(/no special token <\|nope\|>/);
    expect(tok.bosId).toBe(50256); // gpt2 has no <|bos|>: <|endoftext|> separates documents
  });
});
