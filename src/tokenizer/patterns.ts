// Pre-split patterns: the regular expression that cuts text into chunks before BPE runs.
//
// BPE never merges across a chunk boundary, so the pattern decides what a token can be: with
// the GPT-4 pattern a token never mixes letters with digits, never holds more than 3 digits,
// and a leading space sticks to the word after it (" world").
//
// Patterns are stored in tiktoken's dialect (the `pat_str` of its encoder files, written for
// Rust's fancy-regex), so that a saved tokenizer loads unchanged into tiktoken. JavaScript's
// RegExp needs three translations to mean exactly the same thing:
//   1. `(?i:...)` (a case-insensitive group) is not supported by Node 20's RegExp, so each
//      letter inside it becomes a class of all its case variants, e.g. `s` → `[Ssſ]`
//      (U+017F LONG S folds to s, as it does in Rust's regex crate).
//   2. `\s` means Unicode White_Space in Rust, but in JS it also matches U+FEFF and misses
//      U+0085 (NEL). We write `\p{White_Space}` instead, and `\P{White_Space}` for `\S`.
//   3. The `u` flag, so that `\p{L}` works and the regex walks code points, not UTF-16 units.
// The test suite checks the translated patterns chunk-for-chunk against tiktoken.

/** The exact `pat_str` strings of tiktoken's encoders (node_modules/tiktoken/encoders/*.json). */
export const PATTERNS = {
  // GPT-2: contractions, optional space + letters / digits / other, whitespace.
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
  // GPT-4: case-insensitive contractions, at most 3 digits per chunk, newlines kept apart.
  cl100k_base:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  // GPT-4o: also splits CamelCase words and attaches contractions to the word before.
  o200k_base:
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
} as const;

export type PatternName = keyof typeof PATTERNS;

/** Our default for training: the GPT-4 (cl100k) pattern. It is the best studied choice,
 *  keeps numbers in short chunks (good for arithmetic tasks later) and is what nanochat uses
 *  in spirit. */
export const DEFAULT_PATTERN: string = PATTERNS.cl100k_base;

/** Short names accepted on the command line, and the full tiktoken names. */
const ALIASES: Record<string, PatternName> = {
  gpt2: 'gpt2', r50k_base: 'gpt2',
  cl100k: 'cl100k_base', cl100k_base: 'cl100k_base', gpt4: 'cl100k_base',
  o200k: 'o200k_base', o200k_base: 'o200k_base', gpt4o: 'o200k_base',
};

/** A built-in pattern by name, or undefined when the name is not one of ours. */
export function patternByName(name: string): string | undefined {
  const key = ALIASES[name];
  return key ? PATTERNS[key] : undefined;
}

export const PATTERN_NAMES = Object.keys(ALIASES);

// Case variants of one letter under Unicode simple case folding, found by asking the JS
// engine itself (its `iu` matching uses the same folding as Rust's regex crate). Scanning
// the BMP once per letter costs a few milliseconds and is cached.
const foldCache = new Map<string, string>();
function caseVariants(ch: string): string {
  let out = foldCache.get(ch);
  if (out === undefined) {
    const re = new RegExp(`^${ch}$`, 'iu');
    out = '';
    for (let cp = 0; cp < 0x10000; cp++) {
      if (cp >= 0xd800 && cp < 0xe000) continue; // surrogates are never letters
      const c = String.fromCharCode(cp);
      if (re.test(c)) out += c;
    }
    foldCache.set(ch, out);
  }
  return out;
}

/**
 * Translate a tiktoken-dialect pattern into an equivalent JavaScript RegExp source (use with
 * flags 'gu'). Handles escapes, character classes and `(?i:...)` groups; other syntax is
 * passed through unchanged, since the two dialects agree on it.
 */
export function toJsRegexSource(pat: string): string {
  let out = '';
  let inClass = false; // inside [...]
  const ciDepth: number[] = []; // group depths at which a (?i: ...) group was opened
  let depth = 0; // parenthesis depth
  for (let i = 0; i < pat.length; i++) {
    const c = pat[i];
    if (c === '\\') {
      const next = pat[i + 1];
      if (next === 's') out += inClass ? '\\p{White_Space}' : '[\\p{White_Space}]';
      else if (next === 'S') out += inClass ? '\\P{White_Space}' : '[\\P{White_Space}]';
      else if (next === 'p' || next === 'P') {
        // copy \p{...} whole, so its letters are not case-expanded below
        const end = pat.indexOf('}', i);
        out += pat.slice(i, end + 1);
        i = end;
        continue;
      } else out += c + next;
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      continue;
    }
    if (pat.startsWith('(?i:', i)) {
      depth++;
      ciDepth.push(depth);
      out += '(?:';
      i += 3;
      continue;
    }
    if (c === '(') depth++;
    if (c === ')') {
      if (ciDepth[ciDepth.length - 1] === depth) ciDepth.pop();
      depth--;
    }
    // a letter inside a case-insensitive group: match every case variant
    if (ciDepth.length && /\p{L}/u.test(c)) {
      const v = caseVariants(c);
      out += v.length > 1 ? `[${v}]` : c;
      continue;
    }
    out += c;
  }
  return out;
}

/** Compile a tiktoken-dialect pattern to a global, Unicode-aware JS RegExp. */
export function compilePattern(pat: string): RegExp {
  return new RegExp(toJsRegexSource(pat), 'gu');
}
