// The RL stage as a run: options, checkpoints, metrics, evaluation — around RLPolicy
// (train.ts), which holds the algorithm. The loop is the run core's (runLoop, src/train/run.ts):
// this file gives it the step (a batch of rollouts, then mu optimizer steps), the held-out
// evaluation, the checkpoint and the words for a divergence.
//
//   minichat rl --init runs/speedrun/sft --task arithmetic --algo dapo --steps 30 --out runs/rl
//
// Checkpoints hold the SFT weights, the adapters (adapters.safetensors + adapter_config.json,
// see io/checkpoint.ts), the optimizer state and state.json (step, the problem sampler's RNG);
// rollouts draw their sampling seeds from (seed, step), so --resume continues exactly. A resumed
// run must be the same run: --resume refuses options that change the task, the policy or the
// algorithm (resumeMismatch); only the budget, the learning rate and the bookkeeping may change.
// The loss or the logits turning NaN stops the run with the last good checkpoint kept, and no
// checkpoint is written of a model whose logits are not finite.
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { evalGenerative } from '../eval/generate-eval.ts';
import { findCheckpoint, loadCheckpoint, saveCheckpoint, tokenizerFingerprint, type TrainState } from '../io/checkpoint.ts';
import { claimRunDir } from '../io/run-dir.ts';
import { keepMetricsUpTo } from '../io/dir-store.ts';
import { parseLoraTargets } from '../model/lora.ts';
import { groupsStateDict, loadGroupsStateDict } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import { chatStops, chatSuppress, renderForCompletion } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { defaultToolRegistry, toolHook } from '../tools/hook.ts';
import { NotFiniteError, UserError } from '../util/errors.ts';
import { StageDiverged, runLoop } from '../train/run.ts';
import { DivergedError } from '../train/trainer.ts';
import { runServiceRL } from './run-dual.ts';
import { getTask, type RLTask } from '../tasks/index.ts';
import { ALGO_PRESETS, type AlgoOptions, RLPolicy, type RLProblemSource, type RLStepStats, completionText, preparePolicy } from './train.ts';

export interface RLOptions {
  init: string; // the SFT checkpoint (or run directory) to start from
  out: string; // the run directory
  task: string; // arithmetic | countdown | gsm8k | service-env (run-dual.ts)
  mode: string; // service-env: policy | world | dual | early | lookahead (dual.ts)
  policyRank: number; // service-env: the policy group's share of --lora-rank (0 = half; the world model gets the rest)
  worldLr: number; // service-env: learning rate of the world-model group (--lr is the policy's)
  worldSeed: number; // service-env: seed of the world (companies and requirements)
  shortValues: boolean; // service-env: two-digit profile values (what the experiment's warm start was taught)
  taskData?: string; // gsm8k: the JSONL file
  digits: number; // arithmetic: digits per operand
  ops: string; // arithmetic: operators, e.g. '+-*'
  tool: boolean; // the calculator is available (the engine runs the tool hook)
  algo: 'grpo' | 'dapo'; // the preset of the switches below
  clipHigh?: boolean; // override: ε_high = DAPO's (true) or = ε_low (false)
  dynamicSampling?: boolean; // override
  tokenLevelLoss?: boolean; // override
  overlong?: string; // override: 'L_max,L_cache' or 'off'
  beta: number; // KL coefficient (k3), 0 = off
  drGrpo: boolean; // Dr. GRPO advantage: no division by the std
  mu: number; // optimizer steps per batch of rollouts
  maxGenRounds: number; // dynamic sampling's extra generation rounds per step
  groupSize: number; // G
  promptsPerStep: number;
  maxTokens: number; // response length limit
  temperature: number;
  steps: number;
  lr: number;
  loraRank: number; // 0 = full-parameter RL
  loraAlpha: number;
  loraTargets: string; // 'all' or a list like 'q,k,v,o'
  evalEvery: number; // held-out pass@1 every N steps (and at the end); 0 = only at the end
  evalProblems: number;
  ckptEvery: number;
  seed: number;
  resume: boolean;
  backend: Backend;
}

export const RL_DEFAULTS: Omit<RLOptions, 'init' | 'out' | 'backend'> = {
  task: 'arithmetic', mode: 'dual', policyRank: 0, worldLr: 3e-3, worldSeed: 0, shortValues: false, digits: 3, ops: '+-*', tool: true, algo: 'dapo', beta: 0, drGrpo: false, mu: 1, maxGenRounds: 3,
  groupSize: 8, promptsPerStep: 16, maxTokens: 64, temperature: 0.6, steps: 20, lr: 1e-3,
  loraRank: 16, loraAlpha: 32, loraTargets: 'all', evalEvery: 10, evalProblems: 128, ckptEvery: 10, seed: 0, resume: false,
};

/** Options a resumed run may change: how long it runs, its learning rate (the advice after a
 *  divergence), how often it evaluates and saves, and where things are. Every other option
 *  defines the run (task, policy, algorithm, sampling, seed). */
export const RESUMABLE_OPTIONS = ['steps', 'lr', 'evalEvery', 'evalProblems', 'ckptEvery', 'init', 'out', 'resume', 'backend'] as const;

/** The options of `now` that differ from the ones a checkpoint's run was started with, as
 *  '--flag saved (now X)' phrases; empty when `now` continues the same run. */
export function resumeMismatch(saved: Record<string, unknown>, now: Record<string, unknown>): string[] {
  const flag = (k: string) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
  const show = (v: unknown) => JSON.stringify(v ?? null);
  return Object.keys(saved)
    .filter((k) => k in RL_DEFAULTS || ['clipHigh', 'dynamicSampling', 'tokenLevelLoss', 'overlong', 'taskData'].includes(k))
    .filter((k) => !(RESUMABLE_OPTIONS as readonly string[]).includes(k) && show(saved[k]) !== show(now[k]))
    .map((k) => `${flag(k)} ${show(saved[k])} (now ${show(now[k])})`);
}

/** The algorithm switches: the --algo preset, then each flag that was given. */
export function algoOptions(o: Pick<RLOptions, 'algo' | 'clipHigh' | 'dynamicSampling' | 'tokenLevelLoss' | 'overlong' | 'beta' | 'drGrpo' | 'mu' | 'maxGenRounds' | 'maxTokens'>): AlgoOptions {
  const p = ALGO_PRESETS[o.algo];
  if (!p) throw new UserError(`--algo must be grpo or dapo, got ${o.algo}`);
  const a: AlgoOptions = { ...p, beta: o.beta, mu: o.mu, advantage: o.drGrpo ? 'dr-grpo' : 'grpo', maxGenRounds: o.maxGenRounds };
  // DAPO's overlong shaping is off unless asked for: it penalises replies in the last quarter
  // of the length limit, and on the speedrun model's arithmetic replies (~40 tokens, a long
  // tail past 48) it punished correct answers and collapsed DAPO (docs/experiments/grpo-vs-dapo.md).
  // 'on' = DAPO's proportion: full penalty at the limit, starting a quarter of it before
  // (DAPO used 20k/4k).
  if (o.clipHigh !== undefined) a.epsHigh = o.clipHigh ? ALGO_PRESETS.dapo.epsHigh : a.epsLow;
  if (o.dynamicSampling !== undefined) a.dynamicSampling = o.dynamicSampling;
  if (o.tokenLevelLoss !== undefined) a.tokenLevelLoss = o.tokenLevelLoss;
  if (o.overlong !== undefined) {
    if (o.overlong === 'off') a.overlong = null;
    else if (o.overlong === 'on') a.overlong = [o.maxTokens, Math.max(1, Math.floor(o.maxTokens / 4))];
    else {
      const m = /^(\d+),(\d+)$/.exec(o.overlong);
      if (!m || !(+m[2] < +m[1])) throw new UserError(`--overlong must be L_MAX,L_CACHE with L_CACHE < L_MAX (e.g. 48,16), on (max-tokens,max-tokens/4) or off, got ${o.overlong}`);
      a.overlong = [+m[1], +m[2]];
    }
  }
  if (!(Number.isInteger(a.mu) && a.mu >= 1)) throw new UserError(`--mu must be a positive integer, got ${a.mu}`);
  if (!(a.beta >= 0)) throw new UserError(`--beta must be >= 0, got ${a.beta}`);
  return a;
}

/** A task's problems as rollout prompts for one tokenizer. */
export function problemSource(task: RLTask, tok: Tokenizer, tool: boolean): RLProblemSource {
  return {
    sample(n, split, rng) {
      return Array.from({ length: n }, () => {
        const p = task.sample(rng, split);
        return { ids: renderForCompletion(tok, task.prompt(p, { tool })), reward: (row) => task.reward(p, completionText(tok, row)) };
      });
    },
  };
}

/** Held-out pass@1 (greedy) on a fixed set of problems: the same set every time it is called. */
export async function heldOutSuccess(policy: RLPolicy, source: RLProblemSource, n: number, maxTokens: number, afterToken?: RLPolicy['afterToken']): Promise<number> {
  const tok = policy.tok;
  const problems = source.sample(n, 'test', new T.Rng(424242)).map((p) => ({ prompt: p.ids, check: (r: Parameters<typeof p.reward>[0]) => p.reward(r) >= 1 }));
  const r = await evalGenerative(policy.engine, problems as never, {
    maxTokens, stop: chatStops(tok), suppress: chatSuppress(tok), afterToken,
  });
  return r.passAt1;
}

/** Throws StageDiverged (the run core's: the run stops) unless the policy's logits on one
 *  held-out prompt are finite: a checkpoint of a diverged model would be no good to resume from. */
async function checkFiniteLogits(policy: RLPolicy, source: RLProblemSource): Promise<void> {
  const ids = source.sample(1, 'test', new T.Rng(0))[0].ids;
  const logits = await T.noGrad(() => T.tidy(async () => policy.model.forward(T.tensor(ids, [1, ids.length], { dtype: 'int32', backend: policy.model.backend })).data()));
  const bad = Array.from(logits).find((x) => !Number.isFinite(x));
  if (bad !== undefined) throw new StageDiverged(`the model's logits are not finite (${bad}): its weights have diverged`);
}

export interface RLResult {
  steps: number;
  initialSuccess: number; // held-out pass@1 before the first step (NaN on resume)
  finalSuccess: number; // held-out pass@1 at the end
  completions: number; // completions sampled by this invocation
  trainable: number; // parameters trained
  seconds: number;
  run_dir: string;
  history: (RLStepStats & { heldOut?: number })[];
}

export async function runRL(o: RLOptions, hooks: { log(line: string): void; progress?(s: RLStepStats & { steps: number }): void }): Promise<RLResult> {
  const t0 = performance.now();
  const log = hooks.log;
  // --out must be new, empty, or this command's own run (src/io/run-dir.ts); a checkpoint there continues only with --resume
  await claimRunDir(o.out, 'rl', { mode: 'resume', resume: o.resume, options: { ...o, backend: o.backend.name } });
  const ckptDir = join(o.out, 'checkpoint');
  const resumeFrom = o.resume ? await findCheckpoint(ckptDir) : null;
  if (o.resume && !resumeFrom) throw new UserError(`--resume: no checkpoint in ${o.out} (expected ${ckptDir})`);
  const algo = algoOptions(o);
  if (o.task === 'service-env') return runServiceRL(o, algo, hooks);
  const task = await getTask(o.task, { arithmetic: { digits: o.digits, ops: [...o.ops] as never }, gsm8k: o.taskData ? { path: o.taskData } : undefined });

  // the policy: the SFT model plus a fresh adapter, or (on resume) our own checkpoint with its adapter
  const loaded = await loadCheckpoint(resumeFrom ?? o.init, { backend: o.backend, withOptimizer: !!resumeFrom });
  const { model, tokenizer: tok } = loaded;
  const rng = new T.Rng(o.seed);
  let trainable: number;
  if (resumeFrom) {
    trainable = model.trainableParams().reduce((s, p) => s + p.param.size, 0);
  } else {
    if (model.adapter) throw new UserError(`${o.init} already has LoRA adapters: merge them first (minichat export --merge-lora) or resume that run`);
    trainable = preparePolicy(model, { loraRank: o.loraRank, loraAlpha: o.loraAlpha, loraTargets: parseLoraTargets(o.loraTargets) }, new T.Rng(o.seed + 5)).trainable;
  }
  const afterToken = o.tool ? toolHook(tok, defaultToolRegistry()) : undefined;
  const policy = new RLPolicy(model, tok, { algo, groupSize: o.groupSize, promptsPerStep: o.promptsPerStep, maxTokens: o.maxTokens, temperature: o.temperature, lr: o.lr, seed: o.seed }, afterToken);
  const source = problemSource(task, tok, o.tool);
  if (resumeFrom && loaded.state) {
    if (loaded.optimizerState) {
      await loadGroupsStateDict(policy.trainer.groups, loaded.optimizerState);
      Object.values(loaded.optimizerState).forEach((t) => t.dispose());
    }
    const saved = loaded.state.spec;
    const differ = resumeMismatch(saved, { ...o });
    if (differ.length) throw new UserError(`--resume: ${o.out} was started with other options: ${differ.join(', ')}; resume with the run's own options, or start a new run with another --out`);
    policy.step = loaded.state.step;
    policy.trainer.step = (loaded.state.loader as { trainerStep?: number }).trainerStep ?? policy.step; // optimizer steps (the LR schedule's clock)
    rng.setState(loaded.state.rng);
    await keepMetricsUpTo(join(o.out, 'metrics.jsonl'), policy.step); // steps after the checkpoint are run again
    log(`resumed from ${resumeFrom} at step ${policy.step}${saved.lr !== undefined && saved.lr !== o.lr ? ` (--lr ${o.lr}, was ${saved.lr})` : ''}`);
  }
  log(`policy: ${o.loraRank > 0 ? `LoRA rank ${o.loraRank} (alpha ${o.loraAlpha}) on ${o.loraTargets}` : 'full model'}, ${trainable} trainable parameters of ${model.numParams()}`);
  log(`algorithm: ${o.algo} — eps ${algo.epsLow}/${algo.epsHigh}, ${algo.tokenLevelLoss ? 'token-level' : 'sequence-level'} loss, dynamic sampling ${algo.dynamicSampling ? `on (<= ${algo.maxGenRounds} extra rounds)` : 'off'}, overlong ${algo.overlong ? algo.overlong.join(',') : 'off'}, beta ${algo.beta}, ${algo.advantage} advantage, mu ${algo.mu}`);
  log(`task: ${o.task}${o.task === 'arithmetic' ? ` (${o.digits} digits, ${o.ops})` : ''}, calculator ${o.tool ? 'on' : 'off'}; ${o.promptsPerStep} prompts x ${o.groupSize} completions per step`);

  const optionsRecord = { ...o, backend: o.backend.name, stage: 'rl', algoResolved: algo };
  await writeFile(join(o.out, 'options.json'), JSON.stringify(optionsRecord, null, 2) + '\n');
  const resumedAt = resumeFrom ? policy.step : null; // the last good checkpoint until this run saves one
  const fresh = policy.step === 0; // evaluated before its first step
  const history: RLResult['history'] = [];
  let completions = 0, finalSuccess = NaN;

  // the stage over the run core's loop (src/train/run.ts): a step is a batch of rollouts and
  // mu optimizer steps; the held-out evaluation is written before the step's own metrics line
  const loop = await runLoop({
    at: () => policy.step,
    steps: o.steps,
    step: async () => {
      let s: RLStepStats;
      try {
        s = await policy.trainStep(source, rng);
      } catch (e) {
        if (e instanceof NotFiniteError) throw new StageDiverged(e.message); // the rollouts' logits
        throw e;
      }
      if (!Number.isFinite(s.loss)) throw new DivergedError(s.step, s.loss);
      return { step: s.step, loss: s.loss, lr: o.lr, seconds: s.seconds, stats: s };
    },
    tokensPerStep: 0, // (rollouts differ in length; RL reports seconds per step instead)
    onStep: (_, { stats: s }) => {
      completions += s.completions;
      history.push({ ...s });
      hooks.progress?.({ ...s, steps: o.steps });
    },
    metrics: (m) => appendFile(join(o.out, 'metrics.jsonl'), JSON.stringify(m) + '\n'),
    record: ({ stats: s }) => ({ ...s }),
    evalEvery: o.evalEvery,
    evalAtStart: true,
    evalBeforeRecord: true,
    evaluate: async (step) => {
      const s = (finalSuccess = await heldOutSuccess(policy, source, o.evalProblems, o.maxTokens, afterToken));
      log(`step ${step}: held-out pass@1 ${(100 * s).toFixed(1)}% (${o.evalProblems} problems)`);
      if (history.at(-1)?.step === step) history.at(-1)!.heldOut = s;
      return { held_out_success: s };
    },
    sampleEvery: 0,
    ckptEvery: o.ckptEvery,
    save: async () => {
      await checkFiniteLogits(policy, source);
      const last = history.at(-1);
      await saveCheckpoint(ckptDir, {
        model, optimizerState: groupsStateDict(policy.trainer.groups), tokenizer: tok,
        state: {
          step: policy.step, rng: rng.getState(), loader: { rng: rng.getState(), batches: policy.step, trainerStep: policy.trainer.step }, tokenizerFingerprint: tokenizerFingerprint(tok),
          dataFingerprint: `${o.task}|${o.digits}|${o.ops}|${o.taskData ?? ''}`, metrics: last ? { success: last.success, reward: last.reward } : {}, spec: optionsRecord,
        } satisfies TrainState,
      });
    },
    diverged: (e, saved, step) =>
      new UserError(
        `RL diverged at step ${step}: ${e instanceof StageDiverged ? e.what : `the loss is ${e.loss}`}. ` +
          (saved !== null || resumedAt !== null ? `The last good checkpoint (step ${saved ?? resumedAt}) is kept in ${ckptDir}; ` : 'No checkpoint was written yet; ') +
          `try a lower --lr (now ${o.lr}).`,
      ),
  });
  const initialSuccess = fresh ? loop.evals[0].held_out_success : NaN;
  const result: RLResult = { steps: policy.step, initialSuccess, finalSuccess, completions, trainable, seconds: (performance.now() - t0) / 1000, run_dir: o.out, history };
  await writeFile(join(o.out, 'summary.json'), JSON.stringify({ stage: 'rl', seconds: result.seconds, metrics: { steps: result.steps, held_out_before: initialSuccess, held_out_after: finalSuccess, completions } }, null, 2) + '\n');
  model.dispose();
  return result;
}
