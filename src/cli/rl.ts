// `minichat rl`: reinforcement learning with verifiable rewards (GRPO / DAPO) on an SFT
// checkpoint (src/rl/run.ts, src/rl/train.ts).
import type { Command } from 'commander';
import { join } from 'node:path';
import { findCheckpoint, readCheckpoint } from '../io/checkpoint.ts';
import { RL_DEFAULTS as D, type RLOptions, type RLResult, runRL } from '../rl/run.ts';
import { nonNeg, nonNegInt, num, oneOf, posInt, selectBackend, withSavedOptions, THREADS_HELP } from './common.ts';
import { DUAL_MODES } from '../rl/dual.ts';
import { SERVICE_DEFAULTS } from '../rl/envs/service.ts';
import { ALGO_PRESETS } from '../rl/train.ts';
import { UserError } from '../util/errors.ts';

interface Flags extends Omit<RLOptions, 'backend'> {
  backend: string;
  space?: number;
  companies?: number;
  targets?: number;
  threads?: number; // undefined: not typed (selectBackend resolves the default)
  json: boolean;
}

export function rlFlags(cmd: Command, d: typeof D): Command {
  return cmd
    .option('--task <name>', 'arithmetic, countdown, gsm8k or service-env (the tool-use world with a dual LoRA)', d.task)
    .option('--mode <name>', `service-env: the arm, one of ${DUAL_MODES.join(', ')} (docs/world-model.md)`, oneOf(...DUAL_MODES), d.mode)
    .option('--policy-rank <n>', "service-env: the policy group's ranks of --lora-rank (0 = half; the world model gets the rest)", nonNegInt, d.policyRank)
    .option('--world-lr <x>', 'service-env: learning rate of the world-model group (--lr is the policy group\'s)', nonNeg, d.worldLr)
    .option('--world-seed <n>', 'service-env: seed of the world (companies and their requirements)', nonNegInt, d.worldSeed)
    .option('--space <n>', `service-env: size of the requirement space C(n, k) (default ${SERVICE_DEFAULTS.space})`, posInt)
    .option('--companies <n>', `service-env: known companies (default ${SERVICE_DEFAULTS.companies})`, posInt)
    .option('--targets <n>', `service-env: target companies, never seen before RL (default ${SERVICE_DEFAULTS.targets})`, posInt)
    .option('--task-data <file>', 'gsm8k: the JSONL file (e.g. ../shared/data/gsm8k/train.jsonl)')
    .option('--digits <n>', 'arithmetic: digits per operand', posInt, d.digits)
    .option('--ops <ops>', 'arithmetic: operators drawn from', d.ops)
    .option('--tool', 'the calculator is available (tool calls are executed and masked out of the loss; the default, as the speedrun SFT data teaches)', d.tool)
    .option('--no-tool', 'arithmetic without the calculator')
    .option('--algo <name>', 'grpo or dapo: the preset of the switches below', oneOf('grpo', 'dapo'), d.algo)
    .option('--clip-high', `DAPO clip-higher: eps_high ${ALGO_PRESETS.dapo.epsHigh} (default: on for dapo)`)
    .option('--no-clip-high', `symmetric clip at 1 ± ${ALGO_PRESETS.grpo.epsLow} (GRPO)`)
    .option('--dynamic-sampling', 'DAPO: drop groups whose rewards are all equal and sample more (default: on for dapo)')
    .option('--no-dynamic-sampling', 'keep every group')
    .option('--token-level-loss', 'DAPO: every token of the batch weighs the same (default: on for dapo)')
    .option('--no-token-level-loss', 'GRPO: mean over each sequence, then over sequences')
    .option('--overlong <spec>', "DAPO's overlong reward shaping: L_MAX,L_CACHE, on (= max-tokens,max-tokens/4, DAPO's proportion) or off (the default for both presets: see docs/rl.md)")
    .option('--beta <x>', 'KL penalty to the SFT model (k3 estimator; needs LoRA); 0 = off', nonNeg, d.beta)
    .option('--dr-grpo', 'Dr. GRPO advantage: r - mean, no division by the std', d.drGrpo)
    .option('--mu <n>', 'optimizer steps per batch of rollouts', posInt, d.mu)
    .option('--max-gen-rounds <n>', 'dynamic sampling: extra generation rounds per step at most', nonNegInt, d.maxGenRounds)
    .option('--group-size <n>', 'completions per prompt (G)', posInt, d.groupSize)
    .option('--prompts-per-step <n>', 'groups per optimizer batch', posInt, d.promptsPerStep)
    .option('--max-tokens <n>', 'response length limit', posInt, d.maxTokens)
    .option('--temperature <x>', 'rollout sampling temperature (1 keeps log-probs on-policy)', nonNeg, d.temperature)
    .option('--steps <n>', 'RL steps', posInt, d.steps)
    .option('--lr <x>', 'learning rate (AdamW)', nonNeg, d.lr)
    .option('--lora-rank <n>', 'LoRA rank (0 = full-parameter RL)', nonNegInt, d.loraRank)
    .option('--lora-alpha <x>', 'LoRA alpha (the update is scaled by alpha/rank)', num, d.loraAlpha)
    .option('--lora-targets <list>', 'layers with adapters: all, or a list of q,k,v,o,gate,up,down', d.loraTargets)
    .option('--eval-every <n>', 'held-out pass@1 every N steps (0 = only at the start and end)', nonNegInt, d.evalEvery)
    .option('--eval-problems <n>', 'held-out problems per evaluation', posInt, d.evalProblems)
    .option('--ckpt-every <n>', 'checkpoint every N steps', posInt, d.ckptEvery)
    .option('--seed <n>', 'random seed', nonNegInt, d.seed)
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
    .option('--resume', 'continue the checkpoint in --out exactly where it stopped', false)
    .option('--json', 'print one JSON summary on stdout (progress goes to stderr)', false);
}

/** The options a resumed run takes from its checkpoint unless typed again (not where it is). */
const SAVED_KEYS = [...Object.keys(D), 'clipHigh', 'dynamicSampling', 'tokenLevelLoss', 'overlong', 'taskData', 'space', 'companies', 'targets'].filter((k) => k !== 'resume');

/** Flags `--task service-env` has no use for: refused when typed, never silently ignored. */
export const SERVICE_ENV_REFUSED: Record<string, string> = {
  beta: 'there is no KL term in the service world', mu: 'one optimizer step per batch of episodes',
  maxGenRounds: 'no resampling: every arm gets the same episode budget (zero-variance groups are dropped)',
  overlong: 'episodes end with the world, not with a length', digits: 'arithmetic only', ops: 'arithmetic only', tool: 'the calculator is for arithmetic',
  taskData: 'gsm8k only',
};
/** Flags that only --task service-env reads. */
const SERVICE_ENV_ONLY = ['mode', 'policyRank', 'worldLr', 'worldSeed', 'space', 'companies', 'targets'];

const flagName = (k: string) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

export async function runRlCommand(f: Flags, cmd?: Command): Promise<RLResult> {
  const typed = (k: string) => cmd?.getOptionValueSource(k) === 'cli';
  if (f.task === 'service-env') {
    for (const [k, why] of Object.entries(SERVICE_ENV_REFUSED)) if (typed(k)) throw new UserError(`${flagName(k)} does not apply to --task service-env (${why})`);
  } else {
    if (!f.init) throw new UserError(`--init is required for --task ${f.task} (the SFT checkpoint to start from)`);
    for (const k of SERVICE_ENV_ONLY) if (typed(k)) throw new UserError(`${flagName(k)} applies to --task service-env only`);
  }
  const backend = await selectBackend(f.backend, f.threads);
  const ckpt = f.resume && cmd ? await findCheckpoint(join(f.out, 'checkpoint')) : null;
  if (ckpt) f = withSavedOptions(f, cmd!, (await readCheckpoint(ckpt)).parts.state?.spec ?? {}, SAVED_KEYS);
  const { json, backend: _b, threads: _t, ...rest } = f;
  const r = await runRL({ ...rest, backend }, {
    log: (l) => process.stderr.write(l + '\n'),
    progress: (s) =>
      process.stderr.write(
        `step ${s.step}/${s.steps}  reward ${s.reward.toFixed(3)}  success ${(100 * s.success).toFixed(1)}%  zero-adv ${(100 * (s.zeroAdvantage ?? NaN)).toFixed(0)}%  len ${s.responseLength.toFixed(1)}  ` +
          `entropy ${s.entropy.toFixed(2)}  clip ${(100 * s.clipFraction).toFixed(1)}%  kl ${s.kl.toFixed(4)}  groups ${s.keptGroups} kept/${s.droppedGroups} dropped  ${s.seconds.toFixed(1)}s\n`,
      ),
  });
  if (json) console.log(JSON.stringify({ ...r, history: undefined }));
  else console.log(`done: ${r.steps} steps, held-out pass@1 ${(100 * r.initialSuccess).toFixed(1)}% -> ${(100 * r.finalSuccess).toFixed(1)}%, ${r.completions} completions sampled, ${r.seconds.toFixed(0)}s -> ${r.run_dir}`);
  return r;
}

export function registerRl(program: Command): void {
  rlFlags(
    program
      .command('rl')
      .description('reinforcement learning with verifiable rewards: GRPO or DAPO (each DAPO change a flag) with a LoRA policy')
      .option('--init <dir>', 'the SFT checkpoint (or run directory) to start from (service-env: default the world\'s cached warm start)', '')
      .option('--out <dir>', 'run directory', 'runs/rl'),
    D,
  ).action(async (f: Flags, cmd: Command) => {
    await runRlCommand(f, cmd);
  });
}
