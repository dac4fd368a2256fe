// Supervised fine-tuning: from a base model that continues text to a chat model that answers.
//
//   minichat sft --init runs/base --data builtin --out runs/sft
//
// This file is the Node side of an SFT run, as pretrain.ts is for pretraining: it reads the
// base checkpoint and the conversations from disk, opens the run directory as a store
// (src/io/dir-store.ts), and hands them to the SFT run core (src/train/sft-run.ts), which the
// page's worker runs too:
//   1. the base checkpoint (model + tokenizer) from --init;
//   2. conversations: the built-in mix (story questions, calculator arithmetic, identity;
//      generated offline from a seed) or JSONL files `FILE.jsonl[:WEIGHT],...`
//      (src/data/conversations.ts: a bad line names file:line);
//   3. setupSft + runSft: rendering with the loss mask on assistant tokens, packed rows,
//      the shared loop (progress, metrics.jsonl, validation, checkpoints, exact --resume, a
//      non-finite loss stopping the run with the last good checkpoint kept);
//   4. options.json (the settings, for the report card) and summary.json (the final numbers).
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { loadConversationMix } from '../data/conversations.ts';
import { findCheckpoint, readCheckpoint } from '../io/checkpoint.ts';
import { DirStore } from '../io/dir-store.ts';
import { claimRunDir } from '../io/run-dir.ts';
import { UserError } from '../util/errors.ts';
import { type SftSpec, SFT_SPEC_DEFAULTS, builtinConversations, disposeSft, runSft, setupSft } from './sft-run.ts';
import type { StepInfo } from './run.ts';
import type { RunStore } from './store.ts';

export type { SftSpec } from './sft-run.ts';

export interface SftOptions extends SftSpec {
  init: string; // the base model: a checkpoint or run directory
  out: string; // the run directory
  resume: boolean; // continue the checkpoint in --out exactly where it stopped
  backend: Backend;
}

/** The CLI's view of the SFT defaults: the spec's table (SFT_SPEC_DEFAULTS, sft-run.ts) plus `resume`. */
export const SFT_DEFAULTS: Omit<SftOptions, 'init' | 'out' | 'backend'> = { ...SFT_SPEC_DEFAULTS, resume: false };

export type SftStepInfo = StepInfo;

export interface SftResult {
  steps: number;
  conversations: number; // used for training
  truncated: number;
  skipped: number;
  train_loss: number;
  val_loss: number;
  tokens_per_second: number; // trained (unmasked) tokens per second
  seconds: number;
  run_dir: string;
  losses: number[];
}

/** Just the SftSpec fields of the options (the spec travels in the checkpoint). */
function specOf(o: SftOptions): SftSpec {
  return Object.fromEntries(Object.keys(SFT_SPEC_DEFAULTS).map((k) => [k, o[k as keyof SftSpec]])) as unknown as SftSpec;
}

/** The SFT spec an SFT run's checkpoint was trained with ({} when --out has none yet): a
 *  resumed run starts from it (flags given on the command line override it). */
export async function sftCheckpointSpec(out: string): Promise<Partial<SftSpec>> {
  const dir = await findCheckpoint(join(out, 'checkpoint'));
  if (!dir) return {};
  const spec = (await readCheckpoint(dir)).parts.state?.spec ?? {};
  return Object.fromEntries(Object.keys(SFT_SPEC_DEFAULTS).filter((k) => k in spec).map((k) => [k, spec[k]])) as Partial<SftSpec>;
}

export async function sft(o: SftOptions, hooks: { log(line: string): void; progress?(s: SftStepInfo): void }): Promise<SftResult> {
  const t0 = performance.now();
  const log = hooks.log;
  const spec = specOf(o);
  const store = new DirStore(o.out);
  const _check: RunStore = store; // DirStore implements RunStore (matched by shape: io/ cannot import train/)
  void _check;
  const here = await findCheckpoint(store.checkpointDir);
  if (o.resume && !here) throw new UserError(`--resume: no checkpoint in ${o.out} (expected ${store.checkpointDir})`);
  // --out must be new, empty, or this command's own run (src/io/run-dir.ts); a checkpoint there continues only with --resume
  await claimRunDir(o.out, 'sft', { mode: 'resume', resume: o.resume, options: { ...spec, init: o.init, resume: o.resume, backend: o.backend.name } });

  const base = await readCheckpoint(o.init);
  const resume = o.resume ? await store.readCheckpoint() : null;
  const { convs, source } = o.data === 'builtin' ? builtinConversations(spec) : { convs: await loadConversationMix(o.data, o.seed + 17), source: o.data };
  const run = await setupSft(spec, { base: base.parts, baseName: base.where, convs, source, store, backend: o.backend, log, resume });
  await mkdir(o.out, { recursive: true });
  if (run.resumedAt !== null) await store.keepMetricsUpTo(run.resumedAt); // steps after the checkpoint run again
  // the settings, for the report card (which reads options.json or spec.json)
  await writeFile(join(o.out, 'options.json'), JSON.stringify({ ...spec, init: o.init, out: o.out, resume: o.resume, backend: o.backend.name, stage: 'sft' }, null, 2) + '\n');

  try {
    const r = await runSft(run, { store, log, onStep: hooks.progress });
    const result: SftResult = {
      steps: run.trainer.step, conversations: run.conversations, truncated: run.truncated, skipped: run.skipped,
      train_loss: run.lastLoss, val_loss: run.lastVal, tokens_per_second: r.trainSeconds > 0 ? run.trainedTokens / r.trainSeconds : 0,
      seconds: (performance.now() - t0) / 1000, run_dir: o.out, losses: r.losses,
    };
    await writeFile(
      join(o.out, 'summary.json'),
      JSON.stringify({ stage: 'sft', seconds: result.seconds, metrics: { steps: result.steps, train_loss: result.train_loss, val_loss: result.val_loss, conversations: result.conversations } }, null, 2) + '\n',
    );
    return result;
  } finally {
    disposeSft(run);
  }
}
