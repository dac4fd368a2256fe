// `minichat tokenizer train|encode|decode|eval`: the tokenizer stage from the command line.
//
//   minichat tokenizer train --input data.txt --vocab-size 4096 --out runs/tok
//   echo "Hello world" | minichat tokenizer encode --tokenizer runs/tok
//   minichat tokenizer decode --tokenizer runs/tok --ids "[15496, 995]"
//   minichat tokenizer eval --tokenizer runs/tok --input data.txt
//
// --tokenizer takes a directory written by `train`, a `.tiktoken` ranks file, or the name of a
// built-in encoding (gpt2, cl100k_base, o200k_base).
import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { Tokenizer, trainTokenizer, DEFAULT_SPECIALS, patternByName } from '../tokenizer/index.ts';
import { BUILTIN_NAMES, readTrainingTexts } from '../tokenizer/files.ts';
import { PATTERN_NAMES } from '../tokenizer/patterns.ts';
import { UserError, check } from '../util/errors.ts';
import { posInt } from './common.ts';
import { claimRunDir } from '../io/run-dir.ts';


/** --pattern: a built-in name, or a regex in tiktoken's dialect. A bare word that is not a
 *  known name is a typo, not a regex, so it is an error. */
export function resolvePattern(p: string | undefined): string | undefined {
  if (p === undefined) return undefined;
  const named = patternByName(p);
  if (named) return named;
  check(!/^[A-Za-z0-9_-]+$/.test(p), `unknown pattern name ${p} (known: ${PATTERN_NAMES.join(', ')}; or give a regex)`);
  return p;
}

/** --tokenizer: a path, or a built-in encoding's name. */
export async function resolveTokenizer(spec: string, patternFlag?: string): Promise<Tokenizer> {
  const pattern = resolvePattern(patternFlag);
  if (existsSync(spec)) return Tokenizer.load(spec, { pattern });
  if ((BUILTIN_NAMES as readonly string[]).includes(spec)) {
    check(pattern === undefined, `--pattern cannot change the pattern of the built-in ${spec}; give a .tiktoken file instead`);
    return Tokenizer.builtin(spec as (typeof BUILTIN_NAMES)[number]);
  }
  throw new UserError(`${spec}: no such file or directory (nor a built-in tokenizer: ${BUILTIN_NAMES.join(', ')})`);
}

function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch {
    return ''; // no stdin attached
  }
}

interface TrainFlags { input: string[]; vocabSize: number; out: string; maxChars: number; textField: string; pattern: string; json: boolean }
interface EncodeFlags { tokenizer: string; pattern?: string; text?: string; special: boolean }
interface DecodeFlags { tokenizer: string; pattern?: string; ids?: string }
interface EvalFlags { tokenizer: string; input: string[]; maxChars: number; textField: string; json: boolean }

export function registerTokenizer(program: Command): void {
  const tok = program.command('tokenizer').description('train, use and evaluate byte-level BPE tokenizers');

  tok
    .command('train')
    .description('train a BPE tokenizer on text or JSONL files and save it to a directory')
    .requiredOption('--input <files...>', 'text files, or .jsonl files with one document per line')
    .option('--vocab-size <n>', 'vocabulary size, including 256 bytes and the special tokens', posInt, 4096)
    .requiredOption('--out <dir>', 'directory to write tokenizer.tiktoken and tokenizer.json into')
    .option('--max-chars <n>', 'read at most this many characters of input', posInt, 100_000_000)
    .option('--text-field <name>', 'field of each JSONL line that holds the text', 'text')
    .option('--pattern <name|regex>', 'pre-split pattern: gpt2, cl100k, o200k, or a regex', 'cl100k')
    .option('--json', 'print one JSON summary on stdout', false)
    .action(async (o: TrainFlags) => {
      check(Number.isInteger(o.maxChars) && o.maxChars > 0, `--max-chars must be a positive integer, got ${o.maxChars}`);
      const min = 256 + DEFAULT_SPECIALS.length;
      check(Number.isInteger(o.vocabSize) && o.vocabSize >= min,
        `--vocab-size must be at least 256 bytes + ${DEFAULT_SPECIALS.length} special tokens = ${min}, got ${o.vocabSize}`);
      const pattern = resolvePattern(o.pattern)!;
      await claimRunDir(o.out, 'tokenizer train', { mode: 'replace', options: { ...o } }); // new, empty, or a previous tokenizer train's
      const t0 = performance.now();
      const texts = await readTrainingTexts(o.input, { textField: o.textField, maxChars: o.maxChars });
      const chars = texts.reduce((n, t) => n + t.length, 0);
      const log = o.json ? () => {} : (s: string) => process.stderr.write(s + '\n');
      log(`read ${chars.toLocaleString('en')} characters from ${o.input.length} file(s)`);
      let lastLog = 0;
      const tokenizer = await trainTokenizer(texts, {
        vocabSize: o.vocabSize,
        pattern,
        onProgress: (done, total) => {
          if (done === total || performance.now() - lastLog > 2000) {
            lastLog = performance.now();
            log(`merges ${done}/${total}`);
          }
        },
      });
      await tokenizer.save(o.out);
      const seconds = (performance.now() - t0) / 1000;
      const summary = { out: o.out, vocab_size: tokenizer.vocabSize, requested_vocab_size: o.vocabSize, chars, seconds };
      if (tokenizer.vocabSize < o.vocabSize) log(`note: the input only supports ${tokenizer.vocabSize} tokens; give more text for a bigger vocabulary`);
      if (o.json) console.log(JSON.stringify(summary));
      else log(`saved a ${tokenizer.vocabSize}-token tokenizer to ${o.out} in ${seconds.toFixed(1)}s`);
    });

  tok
    .command('encode')
    .description('encode text (--text, or stdin) and print the ids as a JSON array')
    .requiredOption('--tokenizer <dir|file|name>', 'tokenizer directory, .tiktoken file, or gpt2/cl100k_base/o200k_base')
    .option('--pattern <name|regex>', 'pre-split pattern for a bare .tiktoken file: gpt2, cl100k, o200k, or a regex (default: the saved one, else cl100k)')
    .option('--text <text>', 'the text to encode (default: read stdin)')
    .option('--special', 'recognise special tokens such as <|bos|> in the text', false)
    .action(async (o: EncodeFlags) => {
      const t = await resolveTokenizer(o.tokenizer, o.pattern);
      const text = o.text ?? readStdin();
      console.log(JSON.stringify(t.encode(text, { allowedSpecial: o.special ? 'all' : undefined })));
    });

  tok
    .command('decode')
    .description('decode a JSON array of ids (--ids, or stdin) and print the text')
    .requiredOption('--tokenizer <dir|file|name>', 'tokenizer directory, .tiktoken file, or gpt2/cl100k_base/o200k_base')
    .option('--pattern <name|regex>', 'pre-split pattern for a bare .tiktoken file (not needed to decode)')
    .option('--ids <json>', 'the ids as a JSON array (default: read stdin)')
    .action(async (o: DecodeFlags) => {
      const t = await resolveTokenizer(o.tokenizer, o.pattern);
      const src = o.ids ?? readStdin();
      let ids: unknown;
      try {
        ids = JSON.parse(src);
      } catch {
        throw new UserError(`${o.ids !== undefined ? '--ids' : 'stdin'}: expected a JSON array of token ids, got ${JSON.stringify(src.slice(0, 40))}`);
      }
      check(Array.isArray(ids) && ids.every((x) => Number.isInteger(x) && x >= 0), 'expected a JSON array of non-negative integer token ids');
      process.stdout.write(t.decode(ids as number[]));
    });

  tok
    .command('eval')
    .description('compression (bytes per token) of a tokenizer on some text, beside gpt2 and cl100k_base')
    .requiredOption('--tokenizer <dir|file|name>', 'tokenizer directory, .tiktoken file, or built-in name')
    .requiredOption('--input <files...>', 'text or .jsonl files to measure on')
    .option('--max-chars <n>', 'read at most this many characters of input', posInt, 10_000_000)
    .option('--text-field <name>', 'field of each JSONL line that holds the text', 'text')
    .option('--json', 'print one JSON summary on stdout', false)
    .action(async (o: EvalFlags) => {
      check(Number.isInteger(o.maxChars) && o.maxChars > 0, `--max-chars must be a positive integer, got ${o.maxChars}`);
      const texts = await readTrainingTexts(o.input, { textField: o.textField, maxChars: o.maxChars });
      const bytes = texts.reduce((n, t) => n + new TextEncoder().encode(t).length, 0);
      const rows: { tokenizer: string; vocab_size: number; tokens: number; bytes_per_token: number }[] = [];
      const measure = (name: string, t: Tokenizer) => {
        const tokens = texts.reduce((n, s) => n + t.encodeOrdinary(s).length, 0);
        rows.push({ tokenizer: name, vocab_size: t.vocabSize, tokens, bytes_per_token: bytes / tokens });
      };
      measure(o.tokenizer, await resolveTokenizer(o.tokenizer));
      measure('gpt2', await Tokenizer.builtin('gpt2'));
      measure('cl100k_base', await Tokenizer.builtin('cl100k_base'));
      if (o.json) {
        console.log(JSON.stringify({ bytes, results: rows }));
        return;
      }
      console.log(`${bytes.toLocaleString('en')} bytes of text`);
      console.log(`${'tokenizer'.padEnd(28)} ${'vocab'.padStart(8)} ${'tokens'.padStart(10)} ${'bytes/token'.padStart(12)}`);
      for (const r of rows)
        console.log(`${r.tokenizer.padEnd(28)} ${String(r.vocab_size).padStart(8)} ${String(r.tokens).padStart(10)} ${r.bytes_per_token.toFixed(3).padStart(12)}`);
    });
}
