// `minichat data ...`: get text, and turn it into token shards for pretraining.
//
//   minichat data list                              the data sets `download` knows
//   minichat data download tinystories [--out DIR]  fetch one (resume-safe)
//   minichat data synthetic --stories 3             print synthetic stories (no files needed)
//   minichat data prepare --data SRC --tokenizer T --out DIR
//                                                   documents → tokens.bin / val.bin / meta.json
//
// Library code lives in src/train/{documents,shards,download}.ts and src/data/synthetic.ts;
// this file only parses flags and prints.
import type { Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { check } from '../util/errors.ts';
import { fraction01, nonNegInt, posInt } from './common.ts';
import { claimRunDir } from '../io/run-dir.ts';
import { UserError } from '../util/errors.ts';
import { DATASETS, downloadDataset, downloadHfModel, findDataset, fileUrl, nextStep } from '../data/download.ts';
import { streamDocuments, type TxtSplit } from '../data/documents.ts';
import { writeShards, DEFAULT_VAL_FRACTION, type TextTokenizer } from '../data/shards.ts';
import { generateSyntheticCorpus, DEFAULT_SYNTHETIC_STORIES } from '../data/synthetic.ts';

const BUILTIN_TOKENIZERS = ['gpt2', 'cl100k_base', 'o200k_base'];

export interface PrepareOptions {
  data: string;
  tokenizer: string;
  out: string;
  textField: string;
  split: TxtSplit;
  valFraction: number;
  maxChars?: number;
  stories: number;
  seed: number;
  json: boolean;
}

/** `--tokenizer` is a built-in name or a directory written by `minichat tokenizer train`. */
async function loadTokenizer(spec: string): Promise<{ tok: TextTokenizer; fingerprint: string; free: () => void }> {
  // Imported here, not at the top, so `data list/download` work even while the tokenizer
  // module is being changed, and so its WASM is loaded only when tokenizing.
  const { Tokenizer, createFastEncoder } = await import('../tokenizer/index.ts');
  // The same fingerprint that checkpoints store, so a run can check that shards match it.
  const { tokenizerFingerprint } = await import('../io/checkpoint.ts');
  const t = BUILTIN_TOKENIZERS.includes(spec) ? await Tokenizer.builtin(spec as 'gpt2') : await Tokenizer.load(spec);
  const fast = await createFastEncoder(t);
  const bosId = t.bosId; // throws a UserError when the tokenizer has no BOS-like special
  const tok: TextTokenizer = {
    vocabSize: t.vocabSize,
    bosId,
    encode: (s) => fast.encode(s), // special-looking text in documents stays ordinary text
    encodeBatch: (xs) => xs.map((s) => fast.encode(s)),
  };
  return { tok, fingerprint: tokenizerFingerprint(t), free: () => fast.free() };
}

export async function runPrepare(o: PrepareOptions, log: (line: string) => void = console.log) {
  const t0 = performance.now();
  const { tok, fingerprint, free } = await loadTokenizer(o.tokenizer);
  let docs: AsyncIterable<string> | Iterable<string>;
  let source: string;
  if (o.data === 'synthetic') {
    docs = generateSyntheticCorpus({ stories: o.stories, seed: o.seed });
    source = `synthetic corpus (${o.stories} stories, seed ${o.seed})`;
  } else {
    docs = streamDocuments(o.data, { textField: o.textField, split: o.split, maxChars: o.maxChars });
    source = o.data;
  }
  try {
    const meta = await writeShards(docs, tok, {
      outDir: o.out,
      valFraction: o.valFraction,
      fingerprint,
      source,
      progressEvery: 5000,
      onProgress: (p) => log(`  ${p.documents} documents, ${p.tokens} tokens (${(p.chars / Math.max(1, p.tokens)).toFixed(2)} chars/token)`),
    });
    const seconds = (performance.now() - t0) / 1000;
    return { ...meta, seconds };
  } finally {
    free();
  }
}

export function registerData(program: Command): void {
  const data = program.command('data').description('get pretraining text and turn it into token shards');

  data
    .command('list')
    .description('list the data sets that "data download" knows')
    .option('--json', 'print the registry as JSON', false)
    .action((o: { json: boolean }) => {
      if (o.json) return console.log(JSON.stringify(DATASETS, null, 2));
      for (const d of DATASETS) {
        console.log(`${d.name}  —  ${d.description}`);
        console.log(`    license ${d.license}; ${d.homepage}`);
        for (const f of d.files) console.log(`    ${f.filename}  (~${f.approxSize})  ${fileUrl(d, f)}`);
        if (d.note) console.log(`    ${d.note}`);
        console.log(`    then: ${nextStep(d, `runs/data/${d.name}`)}`);
      }
    });

  data
    .command('download')
    .description('download a public data set, or a Hugging Face model for `minichat import` (resume-safe: complete files are skipped)')
    .argument('[name]', `data set name (${DATASETS.map((d) => d.name).join(', ')})`)
    .option('--hf-model <owner/name>', 'instead: a Hugging Face model repository (config.json, tokenizer.json, safetensors weights) for `minichat import --hf DIR`')
    .option('--out <dir>', 'output directory (default: runs/data/NAME, or runs/hf/NAME for --hf-model)')
    .option('--base-url <url>', "fetch from this base URL instead of the registry's (a mirror)")
    .action(async (name: string | undefined, o: { out?: string; baseUrl?: string; hfModel?: string }) => {
      if (o.hfModel !== undefined) {
        if (name !== undefined) throw new UserError(`give a data set name or --hf-model, not both (got "${name}" and --hf-model ${o.hfModel})`);
        const out = o.out ?? join('runs', 'hf', o.hfModel.replace('/', '--'));
        const results = await downloadHfModel(o.hfModel, out, { baseUrl: o.baseUrl, log: console.log });
        console.log(`${results.length} file(s) in ${out}. Next: minichat import --hf ${out} --out runs/imported`);
        return;
      }
      if (name === undefined) throw new UserError(`name a data set (${DATASETS.map((d) => d.name).join(', ')}) or give --hf-model OWNER/NAME`);
      const d = findDataset(name);
      const out = o.out ?? join('runs', 'data', d.name);
      console.log(`${d.name}: ${d.description} (license ${d.license})`);
      const results = await downloadDataset(name, out, { baseUrl: o.baseUrl, log: console.log });
      console.log(`${results.length} file(s) in ${out}. Next: ${nextStep(d, out)}`);
    });

  data
    .command('synthetic')
    .description('print (or write) the built-in synthetic story corpus')
    .option('--stories <n>', 'number of stories', posInt, 3)
    .option('--seed <n>', 'random seed', nonNegInt, 0)
    .option('--out <file>', 'write a .txt file (stories separated by <|endoftext|> lines) instead of printing')
    .action(async (o: { stories: number; seed: number; out?: string }) => {
      check(Number.isInteger(o.stories) && o.stories > 0, `--stories must be a positive integer, got ${o.stories}`);
      check(Number.isInteger(o.seed), `--seed must be an integer, got ${o.seed}`);
      const docs = generateSyntheticCorpus({ stories: o.stories, seed: o.seed });
      if (!o.out) return console.log(docs.join('\n\n'));
      await writeFile(o.out, docs.join('\n<|endoftext|>\n') + '\n');
      console.log(`wrote ${docs.length} stories (${docs.reduce((n, d) => n + d.length, 0)} characters) to ${o.out}`);
    });

  data
    .command('prepare')
    .description('read documents, tokenize them with a BOS per document, write train/val token shards')
    .requiredOption('--data <src>', 'a .txt/.jsonl/.parquet file, a directory of them, or "synthetic"')
    .requiredOption('--tokenizer <dir>', `a tokenizer directory, or a built-in (${BUILTIN_TOKENIZERS.join(', ')})`)
    .requiredOption('--out <dir>', 'output shard directory (tokens.bin, val.bin, meta.json)')
    .option('--text-field <name>', 'JSONL field / parquet column with the text', 'text')
    .option('--split <how>', 'how .txt files split into documents: auto, separator (<|endoftext|>), blank-line', 'auto')
    .option('--val-fraction <x>', 'fraction of documents held out for validation', fraction01, DEFAULT_VAL_FRACTION)
    .option('--max-chars <n>', 'stop after this many characters of text (default: all)', posInt)
    .option('--stories <n>', 'with --data synthetic: number of stories', posInt, DEFAULT_SYNTHETIC_STORIES)
    .option('--seed <n>', 'with --data synthetic: generator seed', nonNegInt, 0)
    .option('--json', 'print one JSON summary on stdout', false)
    .action(async (o: PrepareOptions) => {
      check(['auto', 'separator', 'blank-line'].includes(o.split), `--split must be auto, separator or blank-line, got ${o.split}`);
      check(o.valFraction >= 0 && o.valFraction < 1, `--val-fraction must be in [0, 1), got ${o.valFraction}`);
      check(o.maxChars === undefined || (Number.isInteger(o.maxChars) && o.maxChars > 0), `--max-chars must be a positive integer, got ${o.maxChars}`);
      check(Number.isInteger(o.stories) && o.stories > 0, `--stories must be a positive integer, got ${o.stories}`);
      check(Number.isInteger(o.seed), `--seed must be an integer, got ${o.seed}`);
      await claimRunDir(o.out, 'data prepare', { mode: 'replace', options: { ...o } }); // new, empty, or a previous data prepare's shards
      const r = await runPrepare(o, o.json ? () => {} : console.log);
      if (o.json) return console.log(JSON.stringify(r));
      console.log(
        `${o.out}: ${r.train.documents} train documents (${r.train.tokens} tokens), ` +
          `${r.val.documents} validation documents (${r.val.tokens} tokens), ${r.dtype}, ` +
          `${(r.chars / (r.train.tokens + r.val.tokens)).toFixed(2)} chars/token, ${r.seconds.toFixed(1)}s`,
      );
    });
}
