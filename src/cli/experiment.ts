// `minichat experiment qknorm-muon`: the first claim behind minichat, as an experiment.
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { runQkNormMuon } from '../train/experiment.ts';
import { registerDualLora } from './experiment-dual.ts';
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
    .option('--preset <name>', 'model preset', 'tiny')
    .option('--data <src>', "'synthetic' or a .txt/.jsonl/.parquet file or directory", 'synthetic')
    .option('--text-field <name>', 'JSONL/parquet text field', 'text')
    .option('--max-chars <n>', 'read at most this many characters of data (0 = all)', nonNegInt, 0)
    .option('--steps <n>', 'optimizer steps per run', posInt, 150)
    .option('--batch-size <n>', 'sequences per step', posInt, 8)
    .option('--seq-len <n>', 'tokens per sequence', posInt, 64)
    .option('--lrs <list>', 'learning rates swept for each arm', lrList, [3e-3, 1e-2, 3e-2])
    .option('--threshold <x>', 'report the step where the smoothed train loss first reaches this', num, 3.0)
    .option('--seed <n>', 'seed shared by both arms', nonNegInt, 0)
    .option('--out <dir>', 'where runs, table (qknorm-muon.md) and plot (qknorm-muon.svg) go', 'runs/experiment-qknorm-muon')
    .option('--backend <name>', 'cpu or webgpu', 'cpu')
    .action(async (o) => {
      const backend = await selectBackend(o.backend);
      const { table } = await runQkNormMuon({ ...o, backend }, (s) => process.stderr.write(s + '\n'));
      console.log(table);
      console.log(`\n-> ${o.out}/qknorm-muon.md, ${o.out}/qknorm-muon.svg`);
    });
  registerDualLora(exp);
}
