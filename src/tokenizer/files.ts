// Tokenizer files on disk (Node only; the rest of src/tokenizer never touches the file system).
//
// A saved tokenizer is a directory with two files:
//   tokenizer.tiktoken  the ordinary tokens in tiktoken's format, one `base64(bytes) rank`
//                       line per token, sorted by rank. This is the format tiktoken itself
//                       loads, so our tokenizers work in tiktoken (Python or npm) unchanged.
//   tokenizer.json      what the ranks file cannot say: the pre-split pattern (tiktoken's
//                       regex dialect) and the special tokens with their ids.
//
// The npm `tiktoken` package ships gpt2, cl100k_base and o200k_base as JSON with a compact
// ranks string ("! 0 tokA tokB ...": a marker, the first rank, then tokens of consecutive
// ranks); readBuiltin() understands that too.
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { UserError, check } from '../util/errors.ts';
import { DEFAULT_PATTERN } from './patterns.ts';

export const RANKS_FILE = 'tokenizer.tiktoken';
export const META_FILE = 'tokenizer.json';

export interface TokenizerMeta {
  /** Pre-split regex, tiktoken dialect. */
  pattern: string;
  /** Special token text → id. */
  specials: Record<string, number>;
}

export interface TokenizerFiles extends TokenizerMeta {
  /** base64(token bytes) → rank */
  ranks: Map<string, number>;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Parse the tiktoken ranks text; `where` names the file for error messages. */
export function parseTiktokenRanks(text: string, where: string): Map<string, number> {
  const ranks = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const parts = line.split(' ');
    if (parts[0] === '!') {
      // the npm package's compact form: "! firstRank tok tok tok ..."
      const first = Number(parts[1]);
      check(Number.isInteger(first), `${where}:${i + 1}: bad first rank ${parts[1]}`);
      for (let j = 2; j < parts.length; j++) ranks.set(parts[j], first + j - 2);
      continue;
    }
    const rank = Number(parts[1]);
    check(parts.length === 2 && BASE64.test(parts[0]) && Number.isInteger(rank) && rank >= 0,
      `${where}:${i + 1}: expected "base64 rank", got ${JSON.stringify(line.slice(0, 60))}`);
    check(!ranks.has(parts[0]), `${where}:${i + 1}: token ${parts[0]} appears twice`);
    ranks.set(parts[0], rank);
  }
  check(ranks.size > 0, `${where}: no tokens in the ranks file`);
  return ranks;
}

async function readText(path: string): Promise<string> {
  check(existsSync(path), `${path}: no such file`);
  return readFile(path, 'utf8');
}

/** Read a tokenizer directory (save() format) or a bare `.tiktoken` ranks file. */
export async function readTokenizer(dirOrFile: string, pattern?: string): Promise<TokenizerFiles> {
  check(existsSync(dirOrFile), `${dirOrFile}: no such file or directory`);
  if (statSync(dirOrFile).isDirectory()) {
    const ranksPath = join(dirOrFile, RANKS_FILE), metaPath = join(dirOrFile, META_FILE);
    check(existsSync(ranksPath), `${dirOrFile}: not a tokenizer directory (no ${RANKS_FILE})`);
    const ranks = parseTiktokenRanks(await readText(ranksPath), ranksPath);
    let meta: TokenizerMeta = { pattern: DEFAULT_PATTERN, specials: {} };
    if (existsSync(metaPath)) {
      try {
        meta = { ...meta, ...(JSON.parse(await readText(metaPath)) as Partial<TokenizerMeta>) };
      } catch (e) {
        throw new UserError(`${metaPath}: invalid JSON (${(e as Error).message})`);
      }
    }
    check(typeof meta.pattern === 'string', `${metaPath}: "pattern" must be a string`);
    return { ranks, pattern: pattern ?? meta.pattern, specials: meta.specials ?? {} };
  }
  const ranks = parseTiktokenRanks(await readText(dirOrFile), dirOrFile);
  return { ranks, pattern: pattern ?? DEFAULT_PATTERN, specials: {} };
}

/** Write the two files, each through a temporary name so a crash never leaves half a file. */
export async function writeTokenizer(dir: string, ranksText: string, meta: TokenizerMeta): Promise<void> {
  await mkdir(dir, { recursive: true });
  const put = async (name: string, text: string) => {
    const tmp = join(dir, `.${name}.tmp`);
    await writeFile(tmp, text);
    await rename(tmp, join(dir, name));
  };
  await put(RANKS_FILE, ranksText);
  await put(META_FILE, JSON.stringify({ pattern: meta.pattern, specials: meta.specials }, null, 2) + '\n');
}

export const BUILTIN_NAMES = ['gpt2', 'cl100k_base', 'o200k_base'] as const;
export type BuiltinName = (typeof BUILTIN_NAMES)[number];

/** Path of an encoder JSON inside the npm tiktoken package. */
export function builtinPath(name: BuiltinName): string {
  return createRequire(import.meta.url).resolve(`tiktoken/encoders/${name}.json`);
}

/** gpt2 / cl100k_base / o200k_base from the npm tiktoken package. */
export async function readBuiltin(name: string): Promise<TokenizerFiles> {
  check((BUILTIN_NAMES as readonly string[]).includes(name), `unknown built-in tokenizer ${name} (known: ${BUILTIN_NAMES.join(', ')})`);
  const path = builtinPath(name as BuiltinName);
  const json = JSON.parse(await readText(path)) as { bpe_ranks: string; special_tokens: Record<string, number>; pat_str: string };
  return { ranks: parseTiktokenRanks(json.bpe_ranks, path), pattern: json.pat_str, specials: json.special_tokens };
}

export interface ReadTextsOptions {
  /** For JSONL inputs: the field that holds each document's text. */
  textField: string;
  /** Stop after this many characters in total (the last text is cut). */
  maxChars: number;
}

/**
 * Read training text from files: `.jsonl` files give one document per line (the string in
 * `textField`), any other file is one document. Errors name the file, and the line for JSONL.
 */
export async function readTrainingTexts(paths: string[], o: ReadTextsOptions): Promise<string[]> {
  check(paths.length > 0, 'no input files given (use --input FILE...)');
  const texts: string[] = [];
  let budget = o.maxChars;
  for (const path of paths) {
    if (budget <= 0) break;
    check(existsSync(path), `${path}: no such file`);
    check(!statSync(path).isDirectory(), `${path}: is a directory, expected a text or JSONL file`);
    const content = await readFile(path, 'utf8');
    const take = (t: string) => {
      const cut = t.length > budget ? t.slice(0, budget) : t;
      if (cut.length) texts.push(cut);
      budget -= cut.length;
    };
    if (!/\.jsonl$/i.test(path)) {
      take(content);
      continue;
    }
    const lines = content.split('\n');
    for (let i = 0; i < lines.length && budget > 0; i++) {
      if (lines[i].trim() === '') continue;
      let doc: unknown;
      try {
        doc = JSON.parse(lines[i]);
      } catch {
        throw new UserError(`${path}:${i + 1}: not valid JSON`);
      }
      const text = (doc as Record<string, unknown> | null)?.[o.textField];
      check(typeof text === 'string', `${path}:${i + 1}: no string field "${o.textField}" (choose another with --text-field)`);
      take(text);
    }
  }
  check(texts.length > 0, `no text found in ${paths.join(', ')} (the input is empty)`);
  return texts;
}
