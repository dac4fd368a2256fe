// `minichat experiment qknorm-muon`: the first claim behind minichat, as an experiment.
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { EXPERIMENT_DEFAULTS as D, runQkNormMuon } from '../train/experiment.ts';
import { SPEC_FIELDS } from '../train/spec.ts';
import { ARM_NAMES, GRPO_VS_DAPO_DEFAULTS as G, runGrpoVsDapo } from '../rl/experiment.ts';
import { existsSync } from 'node:fs';
import { UserError } from '../util/errors.ts';
import { claimRunDir } from '../io/run-dir.ts';
import { registerDualLora } from './experiment-dual.ts';
import { nonNegInt, num, posInt, selectBackend, THREADS_HELP } from './common.ts';

function lrList(v: string): number[] {
  const xs = v.split(',').map((x) => num(x.trim()));
  if (!xs.length || xs.some((x) => !(x > 0))) throw new InvalidArgumentError(`expected comma-separated positive numbers, got "${v}"`);
  return xs;
}

function seedList(v: string): number[] {
  const xs = v.split(',').map((x) => (/^\d+$/.test(x.trim()) ? Number(x) : NaN));
  if (xs.some((x) => !Number.isInteger(x))) throw new InvalidArgumentError(`expected comma-separated integers >= 0, got "${v}"`);
  if (new Set(xs).size !== xs.length) throw new InvalidArgumentError(`a seed is listed twice in "${v}"`);
  return xs;
}

function thresholdArg(v: string): number | 'auto' {
  return v.trim() === 'auto' ? 'auto' : num(v);
}

function armList(v: string): ('baseline' | 'ours')[] {
  const xs = v.split(',').map((x) => x.trim());
  const bad = xs.find((x) => x !== 'baseline' && x !== 'ours');
  if (bad !== undefined || !xs.length) throw new UserError(`--arms must be baseline, ours or baseline,ours, got ${v}`);
  return xs as ('baseline' | 'ours')[];
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
    .option('--arms <list>', 'arms to run: baseline, ours or both (e.g. to extend one arm\'s sweep)', armList, ['baseline', 'ours'])
    .option('--threshold <x>', "report the step where the smoothed train loss first reaches this; 'auto': the claim's loss 3.0 mapped onto this tokenizer and data (docs/experiments/qknorm-muon.md)", thresholdArg, D.threshold)
    .option('--seed <n>', 'seed shared by both arms (init and data order)', nonNegInt, D.seed)
    .option('--seeds <list>', 'several seeds (comma-separated, e.g. 0,1,2): every (arm, lr) runs once per seed; the table gives mean ± std (overrides --seed)', seedList)
    .option('--out <dir>', 'where runs, table (qknorm-muon.md) and plot (qknorm-muon.svg) go', 'runs/experiment-qknorm-muon')
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
    .action(async (o) => {
      const backend = await selectBackend(o.backend, o.threads);
      await claimRunDir(o.out, 'experiment qknorm-muon', { mode: 'replace', options: { ...o } }); // its own previous output, or a new or empty directory
      const { table, claim } = await runQkNormMuon({ ...o, backend }, (s) => process.stderr.write(s + '\n'));
      console.log(table);
      if (o.seeds?.length > 1) console.log(`\n${claim}`);
      console.log(`\n-> ${o.out}/qknorm-muon.md, ${o.out}/qknorm-muon.svg`);
    });

  exp
    .command('grpo-vs-dapo')
    .description('GRPO vs DAPO (and DAPO minus each change) from one SFT checkpoint, equal budgets of sampled completions; writes a table and plots')
    .option('--init <dir>', 'the SFT checkpoint every arm starts from (made by minichat speedrun)', G.init)
    .option('--task <name>', 'arithmetic, countdown or gsm8k', G.task)
    .option('--digits <n>', 'arithmetic: digits per operand', posInt, G.digits)
    .option('--ops <ops>', 'arithmetic: operators', G.ops)
    .option('--no-tool', 'without the calculator (default: with it, as the speedrun SFT data teaches)')
    .option('--budget <n>', 'completions sampled per arm (~20 DAPO steps of 16 x 8)', posInt, G.budget)
    .option('--group-size <n>', 'completions per prompt', posInt, G.groupSize)
    .option('--prompts-per-step <n>', 'groups per optimizer batch', posInt, G.promptsPerStep)
    .option('--mu <n>', 'optimizer steps per batch of rollouts (with 1 the importance ratio is always 1, so clip-higher cannot act)', posInt, G.mu)
    .option('--max-tokens <n>', 'response length limit (forced tool results count)', posInt, G.maxTokens)
    .option('--temperature <x>', 'rollout sampling temperature (docs/rl.md: where the signal is)', num, G.temperature)
    .option('--lr <x>', 'learning rate (3e-3 collapsed every arm to 0% within 4 steps on the speedrun model)', num, G.lr)
    .option('--lora-rank <n>', 'LoRA rank', posInt, G.loraRank)
    .option('--eval-every <n>', 'held-out evaluation every N steps', posInt, G.evalEvery)
    .option('--eval-problems <n>', 'held-out problems per evaluation', posInt, G.evalProblems)
    .option('--target <x>', 'the held-out success rate whose first crossing is compared (the speedrun model starts at ~62%)', num, G.target)
    .option('--seeds <list>', 'seeds (comma-separated); the table gives mean ± std', seedList, G.seeds)
    .option('--arms <list>', `arms (comma-separated): ${ARM_NAMES.join(', ')}`, G.arms.join(','))
    .option('--out <dir>', 'where the table, plots and runs.json go', G.out)
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
    .action(async (o) => {
      if (!existsSync(o.init)) throw new UserError(`--init ${o.init}: no such checkpoint; run \`minichat speedrun\` first (it ends with an SFT model in runs/speedrun/sft)`);
      const backend = await selectBackend(o.backend, o.threads);
      const seeds: number[] = o.seeds;
      const names = String(o.arms).split(',').map((x: string) => x.trim());
      const known = ARM_NAMES;
      const bad = names.find((n: string) => !known.includes(n));
      if (bad) throw new UserError(`unknown arm "${bad}"; choose from: ${known.join(', ')}`);
      await claimRunDir(o.out, 'experiment grpo-vs-dapo', { mode: 'replace', options: { ...o } });
      const { table, claim } = await runGrpoVsDapo({ ...o, seeds, arms: names, backend }, (s) => process.stderr.write(s + '\n'));
      console.log(table);
      console.log(`\n${claim}`);
      console.log(`\n-> ${o.out}/table.md, ${o.out}/grpo-vs-dapo.svg, ${o.out}/grpo-vs-dapo-steps.svg`);
    });

  registerDualLora(exp);
}
