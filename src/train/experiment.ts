// The QK-norm + Muon experiment: does the combination make a small model's pretraining
// converge faster than the Llama-2 / MiniMind2 recipe (no QK-norm, AdamW)?
//
//   minichat experiment qknorm-muon [--preset tiny] [--data SRC] [--steps N]
//
// Fairness: both arms see the same tokenizer, data, batches (same loader seed), model
// initialisation seed and token budget; each arm gets its own small learning-rate sweep and
// is represented by its best learning rate (lowest final validation loss), because each
// recipe has its own stable range. "Steps to reach loss X" reads the training loss smoothed
// with an exponential moving average (factor 0.9), since single-batch losses are noisy.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { lineChartSvg } from '../eval/plot.ts';
import { trainTokenizer } from '../tokenizer/index.ts';
import { presetConfig } from '../model/gpt.ts';
import { UserError } from '../util/errors.ts';
import { type PretrainOptions, loadRunData, pretrain } from './pretrain.ts';
import { type RunSpec, SPEC_DEFAULTS } from './spec.ts';

/** The run-spec fields an experiment sets (the rest are the spec's defaults). */
type SpecPart = Pick<RunSpec, 'preset' | 'data' | 'textField' | 'maxChars' | 'steps' | 'batchSize' | 'seqLen' | 'seed'>;

export interface ExperimentOptions extends SpecPart {
  lrs: number[]; // the sweep, for each arm
  threshold: number; // the loss level whose crossing step is compared
  out: string;
  backend: Backend;
}

/** The experiment's defaults: the run spec's, except a shorter run of shorter windows (so the
 *  six runs of the sweep fit in minutes), plus the sweep and the threshold. */
export const EXPERIMENT_DEFAULTS: Omit<ExperimentOptions, 'out' | 'backend'> = {
  preset: SPEC_DEFAULTS.preset, data: SPEC_DEFAULTS.data, textField: SPEC_DEFAULTS.textField, maxChars: SPEC_DEFAULTS.maxChars,
  batchSize: SPEC_DEFAULTS.batchSize, seed: SPEC_DEFAULTS.seed,
  steps: 150,
  seqLen: 64,
  lrs: [3e-3, 1e-2, 3e-2],
  threshold: 3.0,
};

interface Run {
  arm: 'baseline' | 'ours';
  lr: number;
  curve: [number, number][]; // (step, smoothed train loss)
  valLoss: number;
  valBpb: number;
  seconds: number;
  stepsToThreshold: number | null;
}

export const ARMS = {
  baseline: { label: 'baseline: no QK-norm, AdamW', qkNorm: false, optimizer: 'adamw' as const },
  ours: { label: 'ours: QK-norm + Muon', qkNorm: true, optimizer: 'muon' as const },
};

export async function runQkNormMuon(o: ExperimentOptions, log: (s: string) => void) {
  await mkdir(o.out, { recursive: true });
  // one tokenizer for every run, trained on the same documents the runs read
  const data = await loadRunData({ ...SPEC_DEFAULTS, ...o });
  if (data.kind !== 'documents') throw new UserError(`--data ${o.data}: the experiment trains its own tokenizer, so it needs documents, not token shards`);
  const tokDir = join(o.out, 'tokenizer');
  const tok = await trainTokenizer(data.docs, { vocabSize: presetConfig(o.preset).vocabSize });
  await tok.save(tokDir);
  log(`tokenizer: ${tok.vocabSize} tokens, shared by every run`);

  const runs: Run[] = [];
  for (const arm of ['baseline', 'ours'] as const) {
    for (const lr of o.lrs) {
      const dir = join(o.out, 'runs', `${arm}-lr${lr}`);
      const curve: [number, number][] = [];
      let ema = NaN;
      const opts: PretrainOptions = {
        ...SPEC_DEFAULTS, preset: o.preset, data: o.data, textField: o.textField, maxChars: o.maxChars, tokenizer: tokDir,
        steps: o.steps, batchSize: o.batchSize, seqLen: o.seqLen, lr, optimizer: ARMS[arm].optimizer, qkNorm: ARMS[arm].qkNorm,
        evalEvery: o.steps, ckptEvery: o.steps, sampleEvery: 0, seed: o.seed, out: dir, backend: o.backend,
      };
      await rm(dir, { recursive: true, force: true });
      log(`${ARMS[arm].label}, lr ${lr}: training ${o.steps} steps`);
      const r = await pretrain(opts, {
        log: () => {},
        progress: (p) => {
          ema = Number.isNaN(ema) ? p.loss : 0.9 * ema + 0.1 * p.loss;
          curve.push([p.step, ema]);
        },
      }).catch((e) => {
        log(`  diverged or failed: ${(e as Error).message}`);
        return null;
      });
      const crossing = curve.find(([, l]) => l <= o.threshold)?.[0] ?? null;
      const run: Run = { arm, lr, curve, valLoss: r?.val_loss ?? NaN, valBpb: r?.val_bpb ?? NaN, seconds: r?.seconds ?? NaN, stepsToThreshold: crossing };
      runs.push(run);
      log(`  val loss ${run.valLoss.toFixed(4)}, steps to ${o.threshold}: ${crossing ?? 'not reached'}, ${run.seconds.toFixed(0)}s`);
    }
  }
  const best = (arm: Run['arm']) => runs.filter((r) => r.arm === arm && Number.isFinite(r.valLoss)).sort((a, b) => a.valLoss - b.valLoss)[0];
  const bBase = best('baseline'), bOurs = best('ours');

  const colors = { baseline: '#d62728', ours: '#1f77b4' };
  const svg = lineChartSvg(
    [
      ...runs.filter((r) => r !== bBase && r !== bOurs && r.curve.length).map((r) => ({ name: `${r.arm} lr ${r.lr}`, points: r.curve, color: colors[r.arm], width: 1, dashed: true })),
      ...[bBase, bOurs].filter(Boolean).map((r) => ({ name: `${r.arm} lr ${r.lr} (best)`, points: r.curve, color: colors[r.arm], width: 2.5 })),
    ],
    { title: `QK-norm + Muon vs baseline (${o.preset}, ${o.data === 'synthetic' ? 'synthetic corpus' : o.data})`, xLabel: 'step', yLabel: 'train loss (EMA 0.9), nats/token', hLine: o.threshold, yMax: Math.min(8, Math.max(...runs.flatMap((r) => r.curve.map((p) => p[1])))) },
  );
  await writeFile(join(o.out, 'qknorm-muon.svg'), svg);

  const fmt = (v: number | null, d = 4) => (v === null || !Number.isFinite(v) ? '—' : v.toFixed(d));
  const lines = [
    `| arm | lr | steps to loss ${o.threshold} | final val loss | val bpb | wall time (s) |`,
    '|---|---|---|---|---|---|',
    ...runs.map((r) => `| ${ARMS[r.arm].label}${r === bBase || r === bOurs ? ' **(best)**' : ''} | ${r.lr} | ${r.stepsToThreshold ?? 'not reached'} | ${fmt(r.valLoss)} | ${fmt(r.valBpb)} | ${fmt(r.seconds, 0)} |`),
  ];
  const table = lines.join('\n');
  const summary = {
    preset: o.preset, data: o.data, steps: o.steps, batch: [o.batchSize, o.seqLen], lrs: o.lrs, threshold: o.threshold, seed: o.seed,
    best: { baseline: bBase && { lr: bBase.lr, val_loss: bBase.valLoss, steps_to_threshold: bBase.stepsToThreshold }, ours: bOurs && { lr: bOurs.lr, val_loss: bOurs.valLoss, steps_to_threshold: bOurs.stepsToThreshold } },
    runs: runs.map(({ curve, ...r }) => ({ ...r, curve_every_10: curve.filter(([s]) => s % 10 === 0) })),
  };
  await writeFile(join(o.out, 'qknorm-muon.md'), `# QK-norm + Muon vs baseline\n\n${table}\n\n![loss curves](qknorm-muon.svg)\n`);
  await writeFile(join(o.out, 'qknorm-muon.json'), JSON.stringify(summary, null, 2) + '\n');
  return { table, summary };
}
