// `minichat experiment dual-lora`: the world-model claim as an experiment (src/rl/experiment-dual.ts).
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { DUAL_MODES, type DualMode } from '../rl/dual.ts';
import { DUAL_EXPERIMENT_DEFAULTS as D, runDualExperiment } from '../rl/experiment-dual.ts';
import { nonNegInt, num, posInt, selectBackend } from './common.ts';
import { claimRunDir } from '../io/run-dir.ts';

function intList(v: string): number[] {
  const xs = v.split(',').map((x) => (/^\d+$/.test(x.trim()) ? Number(x) : NaN)); // strict, as common.ts int
  if (!xs.length || xs.some((x) => !(Number.isInteger(x) && x >= 0))) throw new InvalidArgumentError(`expected comma-separated non-negative integers, got "${v}"`);
  return xs;
}

function modeList(v: string): DualMode[] {
  const xs = v.split(',').map((s) => s.trim());
  for (const x of xs) if (!(DUAL_MODES as readonly string[]).includes(x)) throw new InvalidArgumentError(`unknown mode "${x}"; choose from ${DUAL_MODES.join(', ')}`);
  return xs as DualMode[];
}

export function registerDualLora(exp: Command): void {
  exp
    .command('dual-lora')
    .description('policy-only DAPO vs world model vs dual LoRA vs early experience vs look-ahead in the service world: equal episode budgets, seeds with spread; writes a table and a plot')
    .option('--modes <list>', 'modes compared', modeList, D.modes)
    .option('--seeds <list>', 'seeds (each mode runs once per seed)', intList, D.seeds)
    .option('--steps <n>', 'training steps per run (episodes = steps x tasks-per-step x group-size)', posInt, D.steps)
    .option('--tasks-per-step <n>', 'tasks per step', posInt, D.tasksPerStep)
    .option('--group-size <n>', 'episodes per task per step (G)', posInt, D.groupSize)
    .option('--eval-every <n>', 'greedy training success every N steps', posInt, D.evalEvery)
    .option('--eval-tasks <n>', 'fixed training-company tasks for the success rate', posInt, D.evalTasks)
    .option('--held-out-tasks <n>', 'fixed held-out tasks after the one exposure', posInt, D.heldOutTasks)
    .option('--target <x>', 'success rate whose first crossing is reported (episodes to target)', num, D.target)
    .option('--lora-rank <n>', 'total rank of the dual adapter', posInt, D.loraRank)
    .option('--policy-rank <n>', "the policy group's ranks (the world model gets the rest)", posInt, D.policyRank)
    .option('--policy-lr <x>', 'learning rate of the policy group', num, D.policyLr)
    .option('--world-lr <x>', 'learning rate of the world-model group', num, D.worldLr)
    .option('--sft-steps <n>', 'warm start: steps of format SFT on oracle episodes', nonNegInt, D.sftSteps)
    .option('--world-seed <n>', 'seed of the service world (companies and requirements)', nonNegInt, D.worldSeed)
    .option('--no-short-values', 'realistic user values (emails, dates, ids) instead of two digits')
    .option('--out <dir>', 'where the warm start, table (dual-lora-table.md), plot (dual-lora.svg) and JSON go', 'runs/experiment-dual-lora')
    .option('--backend <name>', 'cpu or webgpu', 'cpu')
    .action(async (o) => {
      const backend = await selectBackend(o.backend);
      await claimRunDir(o.out, 'experiment dual-lora', { mode: 'replace', options: { ...o } }); // its own previous output, or a new or empty directory
      const { table } = await runDualExperiment({ ...o, backend }, (s) => process.stderr.write(s + '\n'));
      console.log(table);
      console.log(`\n-> ${o.out}/dual-lora-table.md, ${o.out}/dual-lora.svg, ${o.out}/dual-lora.json`);
    });
}
