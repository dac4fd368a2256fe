// `minichat sft`: supervised fine-tuning of a base checkpoint on conversations (src/train/sft.ts).
import type { Command } from 'commander';
import { SFT_DEFAULTS as D, type SftOptions, type SftResult, sft, sftCheckpointSpec } from '../train/sft.ts';
import { nonNeg, nonNegInt, num, oneOf, posInt, progressPrinter, selectBackend, withSavedOptions, THREADS_HELP } from './common.ts';

interface Flags extends Omit<SftOptions, 'backend'> {
  backend: string;
  threads?: number; // undefined: not typed (selectBackend resolves the default)
  json: boolean;
}

export function sftFlags(cmd: Command, d: typeof D & { out?: string }): Command {
  return cmd
    .option('--data <spec>', "'builtin' (story QA, calculator arithmetic, identity; offline) or JSONL files FILE.jsonl[:WEIGHT],...", d.data)
    .option('--builtin-examples <n>', 'conversations in the built-in mix', posInt, d.builtinExamples)
    .option('--steps <n>', 'optimizer steps', posInt, d.steps)
    .option('--batch-size <n>', 'packed rows per step (B)', posInt, d.batchSize)
    .option('--seq-len <n>', "tokens per row (T; 0 = the model's context - 1)", nonNegInt, d.seqLen)
    .option('--lr <x>', 'peak learning rate', nonNeg, d.lr)
    .option('--optimizer <kind>', 'muon (hidden matrices) + adamw, or adamw for all', oneOf('muon', 'adamw'), d.optimizer)
    .option('--weight-decay <x>', 'decoupled weight decay on matrices', nonNeg, d.weightDecay)
    .option('--warmup-steps <n>', 'linear warmup steps', nonNegInt, d.warmupSteps)
    .option('--warmdown-fraction <x>', 'final fraction of steps with linear decay to 0', nonNeg, d.warmdownFraction)
    .option('--grad-clip <x>', 'clip the global gradient norm (0 = off)', nonNeg, d.gradClip)
    .option('--eval-every <n>', 'validation loss every N steps', posInt, d.evalEvery)
    .option('--ckpt-every <n>', 'checkpoint every N steps', posInt, d.ckptEvery)
    .option('--val-fraction <x>', 'fraction of conversations held out for validation', num, d.valFraction)
    .option('--too-long <what>', 'a conversation longer than a row: truncate or skip (counted either way)', oneOf('truncate', 'skip'), d.tooLong)
    .option('--seed <n>', 'random seed (data order, held-out split)', nonNegInt, d.seed)
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
    .option('--resume', 'continue the checkpoint in --out exactly where it stopped', false)
    .option('--json', 'print one JSON summary on stdout (progress goes to stderr)', false);
}

export async function runSft(f: Flags, cmd?: Command): Promise<SftResult> {
  const backend = await selectBackend(f.backend, f.threads);
  // on --resume the run's own spec (steps, schedule, data), with the flags typed now on top
  if (f.resume && cmd) f = withSavedOptions(f, cmd, await sftCheckpointSpec(f.out), Object.keys(D).filter((k) => k !== 'resume'));
  const { json, backend: _b, threads: _t, ...rest } = f;
  const p = progressPrinter(false);
  const r = await sft({ ...rest, backend }, { log: p.log, progress: p.progress });
  p.done();
  if (json) console.log(JSON.stringify({ ...r, losses: undefined }));
  else {
    console.log(
      `done: ${r.steps} steps on ${r.conversations} conversations, train loss ${r.train_loss.toFixed(4)}, val loss ${r.val_loss.toFixed(4)}, ` +
        `${Math.round(r.tokens_per_second)} trained tok/s, ${r.seconds.toFixed(0)}s -> ${r.run_dir}\nnext: minichat chat --ckpt ${r.run_dir}`,
    );
  }
  return r;
}

export function registerSft(program: Command): void {
  sftFlags(
    program
      .command('sft')
      .description('supervised fine-tuning: teach a base checkpoint to chat (loss on assistant tokens only)')
      .requiredOption('--init <dir>', 'the base model: a checkpoint or run directory (e.g. runs/pretrain)')
      .option('--out <dir>', 'run directory', 'runs/sft'),
    D,
  ).action(async (f: Flags, cmd: Command) => {
    await runSft(f, cmd);
  });
}
