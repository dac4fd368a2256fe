// Pretraining from the command line: next-token prediction on a stream of documents.
//
//   minichat pretrain --preset tiny --data synthetic --out runs/tiny
//
// This file is the Node side of a run: it reads the data from disk (the built-in corpus, a
// .txt/.jsonl/.parquet file or directory, or a shard directory from `minichat data prepare`),
// opens the run directory as a store (src/io/dir-store.ts), and hands both to the run core
// (src/train/run.ts), which the page's worker calls too:
//   1. documents → tokenizer (loaded with --tokenizer, or trained and kept in the run) → tokens,
//      whole documents held out for validation;
//   2. model from a preset, parameter groups by role (Muon + AdamW, or AdamW alone), LR schedule;
//   3. the loop: gradient accumulation, optional clipping, a progress line, metrics.jsonl,
//      validation loss and bits per byte, samples, checkpoints; a NaN/inf loss stops the run and
//      keeps the last good checkpoint.
// --resume continues the run directory's checkpoint exactly; --resume PATH continues another
// checkpoint (a directory, or the one file the page downloads) into --out.
//
// Simplifications, on purpose: the whole token stream is held in memory (fine up to a few
// hundred million tokens); batches are random windows that may cross document boundaries
// (the BOS token marks them, as in GPT-2 and nanochat); no dropout.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { loadDocuments } from '../data/documents.ts';
import { loadShards } from '../data/shards.ts';
import { findCheckpoint, readCheckpoint } from '../io/checkpoint.ts';
import { DirStore } from '../io/dir-store.ts';
import { claimRunDir } from '../io/run-dir.ts';
import { Tokenizer } from '../tokenizer/index.ts';
import { UserError } from '../util/errors.ts';
import { type RunData, type StepInfo, disposeRun, runPretrain, setupPretrain, syntheticData } from './run.ts';
import { type RunSpec, SPEC_DEFAULTS, pickSpec, validateSpec } from './spec.ts';
import type { RunStore } from './store.ts';

export type { StepInfo } from './run.ts';

export interface PretrainOptions extends RunSpec {
  out: string; // the run directory
  backend: Backend; // where tensors live
  resume?: boolean | string; // true: continue --out's checkpoint; a path: continue that checkpoint into --out
}

/** The run spec's defaults (src/train/spec.ts), under the name callers know. */
export const PRETRAIN_DEFAULTS: RunSpec = SPEC_DEFAULTS;

export interface PretrainHooks {
  log(line: string): void; // a line for humans
  progress?(s: StepInfo): void; // every step (the CLI draws a progress line)
}

export interface PretrainResult {
  steps: number;
  params: number;
  train_loss: number;
  val_loss: number;
  val_bpb: number;
  unigram_loss: number; // loss of predicting every token by its training frequency
  tokens_per_second: number;
  peak_bytes: number; // the most bytes the backend's tensors held at once during the run (Backend.peakBytes)
  seconds: number;
  run_dir: string;
  samples: string[];
  losses: number[]; // training loss of every step this invocation ran
}

/** Is `path` a shard directory written by `minichat data prepare`? (It has meta.json.) */
export function isShardDir(path: string): boolean {
  return existsSync(join(path, 'meta.json')) && !existsSync(join(path, 'config.json'));
}

/** A run's data from its spec: the built-in corpus, a shard directory, or documents on disk. */
export async function loadRunData(spec: Pick<RunSpec, 'data' | 'syntheticStories' | 'textField' | 'maxChars'>): Promise<RunData> {
  if (spec.data === 'synthetic') return syntheticData(spec.syntheticStories);
  if (isShardDir(spec.data)) {
    const { meta, train, val } = await loadShards(spec.data);
    return { kind: 'shards', meta, train, val, source: spec.data };
  }
  return { kind: 'documents', ...(await loadDocuments(spec)) };
}

/**
 * The run spec a checkpoint was trained with (a resumed run starts from it: flags given on the
 * command line override it).
 */
export async function checkpointSpec(path: string): Promise<Partial<RunSpec>> {
  const { parts } = await readCheckpoint(path);
  return pickSpec(parts.state?.spec ?? {});
}

export async function pretrain(o: PretrainOptions, hooks: PretrainHooks): Promise<PretrainResult> {
  const t0 = performance.now();
  const log = hooks.log;
  const spec = validateSpec(pickSpec(o as unknown as Record<string, unknown>));
  const store = new DirStore(o.out);
  const _check: RunStore = store; // DirStore implements RunStore (matched by shape: io/ cannot import train/)
  void _check;
  const here = await findCheckpoint(store.checkpointDir);
  if (o.resume === true && !here) throw new UserError(`--resume: no checkpoint in ${o.out} (expected ${store.checkpointDir})`);
  // --out must be new, empty, or this command's own run (src/io/run-dir.ts); a checkpoint there continues only with --resume
  await claimRunDir(o.out, 'pretrain', { mode: 'resume', resume: o.resume === true, options: { ...spec, resume: o.resume ?? false, backend: o.backend.name } });
  const from = typeof o.resume === 'string' ? (await readCheckpoint(o.resume)).parts : o.resume === true ? true : undefined;

  const data = await loadRunData(spec);
  log(`data: ${data.kind === 'documents' ? `${data.docs.length} documents` : 'token shards'} from ${data.source}`);
  const tokenizer = o.tokenizer && !from ? await Tokenizer.load(o.tokenizer) : undefined;
  const run = await setupPretrain(spec, { data, store, backend: o.backend, log, tokenizer, resume: from });
  await store.writeFile('spec.json', JSON.stringify({ ...spec, backend: o.backend.name }, null, 2) + '\n');
  if (run.resumedAt !== null) await store.keepMetricsUpTo(run.resumedAt); // steps after the checkpoint run again

  try {
    const r = await runPretrain(run, { store, log, onStep: hooks.progress });
    return {
      steps: run.trainer.step,
      params: run.model.numParams(),
      train_loss: run.lastLoss,
      val_loss: run.lastVal.loss,
      val_bpb: run.lastVal.bpb,
      unigram_loss: run.unigram,
      tokens_per_second: r.tokensPerSecond,
      peak_bytes: o.backend.peakBytes(),
      seconds: (performance.now() - t0) / 1000,
      run_dir: o.out,
      samples: r.samples,
      losses: r.losses,
    };
  } finally {
    disposeRun(run);
  }
}
