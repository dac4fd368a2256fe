// The fast path for bulk encoding (turning a whole dataset into token shards): hand our ranks,
// pattern and specials to the npm `tiktoken` package, a WASM build of OpenAI's Rust encoder.
// It gives the same ids as our TypeScript encoder (the tests check this on a varied corpus).
//
// Measured (bench/tokenizer.bench.ts, Node 20, 1.9 MB of English): the WASM build is NOT
// faster than bpe.ts here: about 1-2.5 MB/s against 3-11 MB/s for ours (its fancy-regex
// pre-split and the copy of each string into WASM memory dominate, while our chunk cache
// skips BPE for repeated words). So bulk encoding can simply use Tokenizer.encode; this path
// stays as the cross-check against OpenAI's implementation and for callers that want it.
//
// The package is loaded on demand (dynamic import), so code that never bulk-encodes, such as
// the browser demo, never loads the WASM. If the WASM cannot take our pattern (a custom regex
// its Rust engine rejects), createFastEncoder falls back to the TypeScript encoder.
import type { Tokenizer, AllowedSpecial } from './bpe.ts';
import { toWellFormed } from './bpe.ts';

export interface BulkEncoder {
  /** 'tiktoken-wasm' or 'typescript' (the fallback). */
  readonly kind: 'tiktoken-wasm' | 'typescript';
  encode(text: string, allowedSpecial?: AllowedSpecial): number[];
  encodeToArray(text: string, allowedSpecial?: AllowedSpecial): Uint32Array;
  /** Release the WASM memory. */
  free(): void;
}

export async function createFastEncoder(tok: Tokenizer): Promise<BulkEncoder> {
  try {
    const { Tiktoken } = await import('tiktoken/lite');
    const enc = new Tiktoken(tok.toTiktokenRanks(), tok.specials, tok.pattern);
    const allowedList = (a?: AllowedSpecial): 'all' | string[] => (a === 'all' ? 'all' : [...(a ?? [])]);
    // disallowed = []: text that looks like a special but is not allowed is ordinary text,
    // as in our encoder (tiktoken's own default is to throw instead).
    const encodeToArray = (text: string, a?: AllowedSpecial) => enc.encode(toWellFormed(text), allowedList(a), []);
    return {
      kind: 'tiktoken-wasm',
      encodeToArray,
      encode: (text, a) => Array.from(encodeToArray(text, a)),
      free: () => enc.free(),
    };
  } catch {
    return typescriptEncoder(tok);
  }
}

/** The reference encoder behind the same interface. */
export function typescriptEncoder(tok: Tokenizer): BulkEncoder {
  return {
    kind: 'typescript',
    encode: (text, a) => tok.encode(text, { allowedSpecial: a }),
    encodeToArray: (text, a) => Uint32Array.from(tok.encode(text, { allowedSpecial: a })),
    free: () => {},
  };
}
