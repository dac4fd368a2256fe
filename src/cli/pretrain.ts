// `minichat pretrain` and `minichat speedrun`: train a GPT from a preset on a corpus.
//
// The flags are a view of the run spec (src/train/spec.ts): each is generated from SPEC_FIELDS
// (name, help, default, parser), so no default is written here. Speedrun overrides a few.
// Resuming (--resume, or --resume PATH for a checkpoint made elsewhere, such as the file the
// page downloads): the checkpoint's own spec is the starting point and only the flags given on
// the command line change it, so `minichat pretrain --resume page.safetensors --out runs/x`
// continues the page's run exactly.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type PretrainResult, checkpointSpec, pretrain } from '../train/pretrain.ts';
import { type FieldKind, type RunSpec, SPEC_DEFAULTS, SPEC_FIELDS, flagName } from '../train/spec.ts';
import { num, nonNeg, nonNegInt, oneOf, posInt, progressPrinter, selectBackend, THREADS_HELP } from './common.ts';
import { InvalidArgumentError } from 'commander';

interface Flags extends RunSpec {
  out: string;
  backend: string;
  resume: boolean | string;
  threads?: number; // undefined: not typed (selectBackend resolves the default)
  json: boolean;
}

function fraction(v: string): number {
  const n = num(v);
  if (!(n >= 0 && n < 1)) throw new InvalidArgumentError(`expected a number in [0, 1), got "${v}"`);
  return n;
}

const PARSERS: Record<Exclude<FieldKind, 'string' | 'choice' | 'bool'>, (v: string) => number> = { posInt, nonNegInt, nonNeg, fraction };

/** Flags for the run-spec fields `keys` (all of them by default), generated from SPEC_FIELDS. */
export function specFlags(cmd: Command, overrides: Partial<RunSpec> = {}, keys = Object.keys(SPEC_FIELDS) as (keyof RunSpec)[]): Command {
  const d = { ...SPEC_DEFAULTS, ...overrides };
  for (const key of keys) {
    const f = SPEC_FIELDS[key];
    const flag = flagName(key), def = d[key] as string | number | undefined;
    if (f.kind === 'bool' && f.default !== undefined) cmd.option(flag, f.help, f.default as boolean);
    else if (f.kind === 'bool') {
      // --qk-norm is declared before --no-qk-norm, so commander leaves it undefined unless given
      cmd.option(flag, `turn on ${f.help} (default: the preset's choice)`).option(flag.replace('--', '--no-'), `turn it off (${f.offHelp})`);
    } else if (f.kind === 'choice') cmd.option(`${flag} <name>`, `${f.help}: ${f.choices!.join(', ')}`, oneOf(...f.choices!), def);
    else if (f.kind === 'string') cmd.option(`${flag} <value>`, f.help, def as string | undefined);
    else cmd.option(`${flag} ${f.kind.endsWith('Int') ? '<n>' : '<x>'}`, f.help, PARSERS[f.kind], def);
  }
  return cmd;
}

/** The spec's flags (from SPEC_FIELDS) plus the run's own; `overrides` changes defaults (speedrun). */
export function pretrainFlags(cmd: Command, out: string, overrides: Partial<RunSpec> = {}): Command {
  return specFlags(cmd, overrides)
    .option('--out <dir>', 'run directory (checkpoint/, tokenizer/, metrics.jsonl, spec.json)', out)
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
    .option('--resume [ckpt]', "continue --out's checkpoint exactly where it stopped; with a path (a checkpoint file or directory), continue that one into --out", false)
    .option('--json', 'print one JSON summary on stdout (progress goes to stderr)', false);
}

/** On resume: the checkpoint's spec, with the flags typed on the command line on top. */
async function resolveFlags(f: Flags, cmd: Command): Promise<Flags> {
  if (!f.resume) return f;
  const path = f.resume === true ? f.out : f.resume;
  const saved = await checkpointSpec(path).catch(() => ({}));
  const given = Object.fromEntries(Object.keys(SPEC_FIELDS).filter((k) => cmd.getOptionValueSource(k) === 'cli').map((k) => [k, f[k as keyof Flags]]));
  return { ...f, ...saved, ...given };
}

export type PretrainFlags = Flags;

/** Run `minichat pretrain` with parsed flags; also writes summary.json (for the report card). */
export async function runPretrainCommand(f: Flags, cmd: Command, o: { quietSummary?: boolean } = {}): Promise<PretrainResult> {
  const backend = await selectBackend(f.backend, f.threads);
  const { json, backend: _b, threads: _t, ...rest } = await resolveFlags(f, cmd);
  const p = progressPrinter(false);
  const result = await pretrain({ ...rest, backend }, { log: p.log, progress: p.progress });
  p.done();
  await writeFile(
    join(result.run_dir, 'summary.json'),
    JSON.stringify({ stage: 'pretrain', seconds: result.seconds, metrics: { steps: result.steps, params: result.params, train_loss: result.train_loss, val_loss: result.val_loss, val_bpb: result.val_bpb, unigram_loss: result.unigram_loss, tokens_per_second: Math.round(result.tokens_per_second) }, samples: result.samples.slice(-2) }, null, 2) + '\n',
  );
  if (o.quietSummary) return result;
  if (json) {
    const { samples, ...summary } = result;
    console.log(JSON.stringify({ ...summary, sample: samples.at(-1) ?? '' }));
  } else {
    console.log(
      `done: ${result.steps} steps, ${(result.params / 1e6).toFixed(2)}M params, train loss ${result.train_loss.toFixed(4)}, ` +
        `val loss ${result.val_loss.toFixed(4)} (unigram baseline ${result.unigram_loss.toFixed(3)}), val bpb ${result.val_bpb.toFixed(4)}, ` +
        `${Math.round(result.tokens_per_second)} tok/s, peak ${(result.peak_bytes / 2 ** 30).toFixed(2)} GiB, ${result.seconds.toFixed(0)}s -> ${result.run_dir}`,
    );
  }
  return result;
}

export function registerPretrain(program: Command): void {
  const pre = pretrainFlags(program.command('pretrain').description('pretrain a GPT from a preset on a corpus'), 'runs/pretrain');
  pre.action(async (f: Flags) => {
    await runPretrainCommand(f, pre);
  });


}
