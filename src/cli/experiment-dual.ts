// `minichat experiment dual-lora`: the world-model claim as an experiment (src/rl/experiment-dual.ts).
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { DUAL_MODES, type DualMode } from '../rl/dual.ts';
import { DUAL_EXPERIMENT_DEFAULTS as D, runDualExperiment } from '../rl/experiment-dual.ts';
import { spaceShape } from '../rl/envs/service.ts';
import { nonNegInt, num, posInt, selectBackend } from './common.ts';
import { claimRunDir } from '../io/run-dir.ts';

function intList(v: string): number[] {
  const xs = v.split(',').map((x) => (/^\d+$/.test(x.trim()) ? Number(x) : NaN)); // strict, as common.ts int
  if (!xs.length || xs.some((x) => !(Number.isInteger(x) && x >= 0))) throw new InvalidArgumentError(`expected comma-separated non-negative integers, got "${v}"`);
  return xs;
}

function spaceList(v: string): number[] {
  const xs = intList(v);
  for (const x of xs) {
    try {
      spaceShape(x);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message.replace(/^--space must be/, 'each size must be'));
    }
  }
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
    .description('does a world model help an agent learn from failures? reward-only vs world-only vs dual vs shared vs look-ahead vs shuffled control vs in-context memory on target companies of the service world: a gate on the warm start, equal episode budgets, seeds with spread, a transfer probe; writes a table and a plot')
    .option('--modes <list>', `arms compared (${DUAL_MODES.join(', ')})`, modeList, D.modes)
    .option('--seeds <list>', 'seeds (each arm runs once per seed)', intList, D.seeds)
    .option('--space <list>', 'sizes of the requirement space C(n, k), e.g. 6,28,120 (more than one: the scaling table; each size is its own world and warm start)', spaceList, D.spaces)
    .option('--steps <n>', 'training steps per run (episodes = steps x tasks-per-step x group-size)', posInt, D.steps)
    .option('--tasks-per-step <n>', 'target tasks per step', posInt, D.tasksPerStep)
    .option('--group-size <n>', 'episodes per task per step (G)', posInt, D.groupSize)
    .option('--eval-every <n>', 'greedy target success every N steps', posInt, D.evalEvery)
    .option('--eval-each <n>', 'fixed evaluation tasks per target pair', posInt, D.evalEach)
    .option('--target <x>', 'success rate whose first crossing is reported (episodes to target)', num, D.target)
    .option('--lora-rank <n>', 'total rank of the dual adapter', posInt, D.loraRank)
    .option('--policy-rank <n>', "the policy group's ranks (the world model gets the rest)", posInt, D.policyRank)
    .option('--policy-lr <x>', 'learning rate of the policy loss', num, D.policyLr)
    .option('--world-lr <x>', 'learning rate of the world-model loss', num, D.worldLr)
    .option('--world-seed <n>', 'seed of the service world (companies, fields and requirements)', nonNegInt, D.worldSeed)
    .option('--companies <n>', 'known companies (the warm start is trained on them)', posInt, D.companies)
    .option('--targets <n>', 'target companies (never seen before RL)', posInt, D.targets)
    .option('--warm-root <dir>', 'where warm starts are cached (one per world and options)', D.warmRoot)
    .option('--out <dir>', 'where the table (dual-lora-table.md), plot (dual-lora.svg) and JSON go', 'runs/experiment-dual-lora')
    .option('--backend <name>', 'wasm (the fast CPU path), cpu or webgpu', 'wasm')
    .action(async (o) => {
      const backend = await selectBackend(o.backend);
      await claimRunDir(o.out, 'experiment dual-lora', { mode: 'replace', options: { ...o } }); // its own previous output, or a new or empty directory
      const { table } = await runDualExperiment({ ...D, ...o, spaces: o.space, backend }, (s) => process.stderr.write(s + '\n'));
      console.log(table);
      console.log(`\n-> ${o.out}/dual-lora-table.md, ${o.out}/dual-lora.svg, ${o.out}/dual-lora.json`);
    });
}
