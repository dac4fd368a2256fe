// `minichat experiment qknorm-muon`: the first claim behind minichat, as an experiment.
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { EXPERIMENT_DEFAULTS as D, runQkNormMuon } from '../train/experiment.ts';
import { SPEC_FIELDS } from '../train/spec.ts';
import { nonNegInt, num, posInt, selectBackend } from './common.ts';

function lrList(v: string): number[] {
  const xs = v.split(',').map(Number);
  if (!xs.length || xs.some((x) => !(x > 0))) throw new InvalidArgumentError(`expected comma-separated positive numbers, got "${v}"`);
  return xs;
}

export function registerExperiment(program: Command): void {
  const exp = program.command('experiment').description('reproduce the claims behind minichat as small experiments');
  exp
    .command('qknorm-muon')
    .description('baseline (no QK-norm, AdamW) vs ours (QK-norm + Muon): same data, seed and tokens, an lr sweep per arm; writes a table and a plot')
    .option('--preset <name>', SPEC_FIELDS.preset.help, D.preset)
    .option('--data <src>', SPEC_FIELDS.data.help, D.data)
    .option('--text-field <name>', SPEC_FIELDS.textField.help, D.textField)
    .option('--max-chars <n>', SPEC_FIELDS.maxChars.help, nonNegInt, D.maxChars)
    .option('--steps <n>', 'optimizer steps per run', posInt, D.steps)
    .option('--batch-size <n>', SPEC_FIELDS.batchSize.help, posInt, D.batchSize)
    .option('--seq-len <n>', SPEC_FIELDS.seqLen.help, posInt, D.seqLen)
    .option('--lrs <list>', 'learning rates swept for each arm', lrList, D.lrs)
    .option('--threshold <x>', 'report the step where the smoothed train loss first reaches this', num, D.threshold)
    .option('--seed <n>', 'seed shared by both arms', nonNegInt, D.seed)
    .option('--out <dir>', 'where runs, table (qknorm-muon.md) and plot (qknorm-muon.svg) go', 'runs/experiment-qknorm-muon')
    .option('--backend <name>', 'cpu or webgpu', 'cpu')
    .action(async (o) => {
      const backend = await selectBackend(o.backend);
      const { table } = await runQkNormMuon({ ...o, backend }, (s) => process.stderr.write(s + '\n'));
      console.log(table);
      console.log(`\n-> ${o.out}/qknorm-muon.md, ${o.out}/qknorm-muon.svg`);
    });
}
