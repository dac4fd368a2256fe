// `minichat pretrain` and `minichat speedrun`: train a GPT from a preset on a corpus.
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PRESETS } from '../model/gpt.ts';
import { PRETRAIN_DEFAULTS as D, type PretrainOptions, type PretrainResult, pretrain } from '../train/pretrain.ts';
import { nonNeg, nonNegInt, num, oneOf, posInt, progressPrinter, selectBackend } from './common.ts';

interface Flags extends Omit<PretrainOptions, 'backend'> {
  backend: string;
  threads: number;
  json: boolean;
}

/** The flags pretrain and speedrun share; `defaults` lets speedrun pick its own. */
function trainingFlags(cmd: Command, d: typeof D & { out: string }): Command {
  return cmd
    .option('--preset <name>', `model preset: ${Object.keys(PRESETS).join(', ')}`, d.preset)
    .option('--data <src>', "'synthetic' (built in, offline) or a .txt/.jsonl/.parquet file or directory", d.data)
    .option('--text-field <name>', 'JSONL/parquet field holding the text', d.textField)
    .option('--max-chars <n>', 'read at most this many characters of data (0 = all)', nonNegInt, d.maxChars)
    .option('--synthetic-stories <n>', 'stories in the built-in corpus', posInt, d.syntheticStories)
    .option('--out <dir>', 'run directory (checkpoint, tokenizer, metrics.jsonl)', d.out)
    .option('--tokenizer <dir>', 'use this tokenizer instead of training one on the data')
    .option('--vocab-size <n>', "vocabulary of the tokenizer trained on the data (0 = the preset's)", nonNegInt, d.vocabSize)
    .option('--steps <n>', 'optimizer steps', posInt, d.steps)
    .option('--batch-size <n>', 'sequences per micro-batch (B)', posInt, d.batchSize)
    .option('--seq-len <n>', 'tokens per sequence (T)', posInt, d.seqLen)
    .option('--grad-accum <n>', 'micro-batches per optimizer step', posInt, d.gradAccum)
    .option('--lr <x>', 'peak learning rate (shared by Muon and AdamW)', nonNeg, d.lr)
    .option('--optimizer <kind>', 'muon (hidden matrices) + adamw (the rest), or adamw for all', oneOf('muon', 'adamw'), d.optimizer)
    .option('--qk-norm', "force QK-norm on (default: the preset's choice)")
    .option('--no-qk-norm', 'turn QK-norm off (the Llama-2 / MiniMind2 baseline)')
    .option('--weight-decay <x>', 'decoupled weight decay on matrices', nonNeg, d.weightDecay)
    .option('--warmup-steps <n>', 'linear warmup steps', nonNegInt, d.warmupSteps)
    .option('--warmdown-fraction <x>', 'final fraction of steps with linear decay to 0', nonNeg, d.warmdownFraction)
    .option('--grad-clip <x>', 'clip the global gradient norm (0 = off)', nonNeg, d.gradClip)
    .option('--eval-every <n>', 'validate every N steps', posInt, d.evalEvery)
    .option('--eval-batches <n>', 'batches per validation', posInt, d.evalBatches)
    .option('--sample-every <n>', 'print a sample every N steps (0 = only at the end)', nonNegInt, d.sampleEvery)
    .option('--sample-tokens <n>', 'tokens per sample', posInt, d.sampleTokens)
    .option('--ckpt-every <n>', 'checkpoint every N steps', posInt, d.ckptEvery)
    .option('--val-fraction <x>', 'fraction of documents held out for validation', num, d.valFraction)
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', 'threads for the wasm backend (matmul split by rows)', posInt, availableParallelism())
    .option('--seed <n>', 'random seed (init, data order, samples)', nonNegInt, d.seed)
    .option('--resume', 'continue the checkpoint in --out exactly where it stopped', false)
    .option('--json', 'print one JSON summary on stdout (progress goes to stderr)', false);
}

async function run(f: Flags): Promise<PretrainResult> {
  const backend = await selectBackend(f.backend, f.threads);
  // --qk-norm is declared before --no-qk-norm, so commander leaves it undefined unless given
  const { json, backend: _b, threads: _t, ...rest } = f;
  const p = progressPrinter(false);
  const result = await pretrain({ ...rest, backend }, { log: p.log, progress: p.progress });
  p.done();
  if (json) {
    const { samples, ...summary } = result;
    console.log(JSON.stringify({ ...summary, sample: samples.at(-1) ?? '' }));
  } else {
    console.log(
      `done: ${result.steps} steps, ${(result.params / 1e6).toFixed(2)}M params, train loss ${result.train_loss.toFixed(4)}, ` +
        `val loss ${result.val_loss.toFixed(4)} (unigram baseline ${result.unigram_loss.toFixed(3)}), val bpb ${result.val_bpb.toFixed(4)}, ` +
        `${Math.round(result.tokens_per_second)} tok/s, ${result.seconds.toFixed(0)}s -> ${result.run_dir}`,
    );
  }
  return result;
}

export function registerPretrain(program: Command): void {
  trainingFlags(program.command('pretrain').description('pretrain a GPT from a preset on a corpus'), { ...D, out: 'runs/pretrain' }).action(async (f: Flags) => {
    await run(f);
  });

  trainingFlags(
    program
      .command('speedrun')
      .description('the whole pipeline offline in minutes: tokenizer on the built-in corpus, tiny GPT pretraining on CPU, eval, samples'),
    // sized to finish in about 6 minutes on 2 CPU cores (measured: see README)
    { ...D, steps: 120, batchSize: 16, seqLen: 128, evalEvery: 40, sampleEvery: 40, sampleTokens: 80, out: 'runs/speedrun' },
  ).action(async (f: Flags) => {
    // The demo job is meant to be run again and again: it replaces its own previous run
    // (a directory holding a minichat run's options.json), never anything else.
    if (!f.resume && existsSync(join(f.out, 'options.json'))) {
      process.stderr.write(`replacing the previous run in ${f.out} (use --resume to continue it instead)\n`);
      await rm(f.out, { recursive: true, force: true });
    }
    const r = await run(f);
    if (!f.json) {
      console.log('\nsamples:');
      r.samples.forEach((s) => console.log('  ' + JSON.stringify(s)));
      console.log(`\nnext: minichat generate --ckpt ${r.run_dir} --prompt "Once upon a time"`);
    }
  });
}
