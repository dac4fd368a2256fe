// `minichat rl --task service-env`: the service world with a dual LoRA (dual.ts), as a run:
// options, a progress line per step, metrics, greedy first-call success on the target pairs,
// checkpoints every --ckpt-every steps with both adapter groups, their optimizers, the RNG and
// the memory arm's memory, and an exact --resume.
//
//   minichat rl --task service-env --mode dual --steps 20 --out runs/rl-world
//
// Without --init the run starts from the world's cached warm start (warmstart.ts, built under
// runs/warmstart/ the first time: long, once per world); with --init, from that checkpoint
// (it must know the world's language: e.g. a warm start's checkpoint directory). Every flag of
// `minichat rl` that this task reads is honoured; the CLI refuses the others when typed
// (src/cli/rl.ts SERVICE_ENV_REFUSED). A diverged step (a non-finite loss or non-finite adapter
// weights) stops the run with a message and keeps the last good checkpoint. The loop is the
// run core's (runLoop, src/train/run.ts), as for every stage.
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { findCheckpoint, loadCheckpoint, saveCheckpoint, tokenizerFingerprint, type TrainState } from '../io/checkpoint.ts';
import { keepMetricsUpTo } from '../io/dir-store.ts';
import { adapterParams, parseLoraTargets } from '../model/lora.ts';
import * as T from '../tensor/index.ts';
import { StageDiverged, runLoop } from '../train/run.ts';
import { UserError } from '../util/errors.ts';
import { DUAL_DEFAULTS, DUAL_MODES, DualAgent, attachDualLora, fixedTasks, type DualMode } from './dual.ts';
import { SERVICE_DEFAULTS, createServiceWorld, targetPairs } from './envs/service.ts';
import type { AlgoOptions, RLStepStats } from './train.ts';
import { WARM_START_DEFAULTS, cachedWarmStart } from './warmstart.ts';

/** The `minichat rl` options this task reads (a subset of run.ts's RLOptions, plus the world's shape). */
export interface ServiceRLOptions {
  init: string; out: string; mode: string; resume: boolean; seed: number; backend: Backend;
  loraRank: number; policyRank: number; loraAlpha: number; loraTargets: string; worldSeed: number;
  groupSize: number; promptsPerStep: number; maxTokens: number; temperature: number; lr: number; worldLr: number;
  steps: number; evalEvery: number; evalProblems: number; ckptEvery: number;
  space?: number; companies?: number; targets?: number; warmRoot?: string;
}

/** Options a resumed run may change (as run.ts's RESUMABLE_OPTIONS): the budget and the bookkeeping. */
const RESUMABLE = new Set(['steps', 'evalEvery', 'evalProblems', 'ckptEvery', 'init', 'out', 'resume', 'backend', 'threads', 'json', 'warmRoot']);
const SPEC_KEYS = ['mode', 'seed', 'loraRank', 'policyRank', 'loraAlpha', 'loraTargets', 'worldSeed', 'groupSize', 'promptsPerStep', 'maxTokens', 'temperature', 'lr', 'worldLr', 'space', 'companies', 'targets'] as const;

/** The same fields as run.ts's RLResult. */
export interface ServiceRLResult {
  steps: number; initialSuccess: number; finalSuccess: number; completions: number; trainable: number; seconds: number; run_dir: string;
  history: RLStepStats[];
}

export async function runServiceRL(o: ServiceRLOptions, algo: AlgoOptions, hooks: { log(line: string): void }): Promise<ServiceRLResult> {
  const t0 = performance.now();
  const log = hooks.log;
  if (!(DUAL_MODES as readonly string[]).includes(o.mode)) throw new UserError(`--mode must be one of ${DUAL_MODES.join(', ')}, got ${o.mode}`);
  if (o.loraRank < 2) throw new UserError(`--task service-env needs a dual LoRA: --lora-rank >= 2 (got ${o.loraRank})`);
  if (algo.beta !== 0) throw new UserError('--beta: --task service-env has no KL term (use 0)');
  if (algo.mu !== 1) throw new UserError('--mu: --task service-env takes one optimizer step per batch (use 1)');
  // DAPO's default overlong shaping is not applied: an episode ends with the world, not a length (a typed --overlong is refused by the CLI)
  const spec = {
    mode: o.mode, seed: o.seed, loraRank: o.loraRank, policyRank: o.policyRank || Math.floor(o.loraRank / 2), loraAlpha: o.loraAlpha, loraTargets: o.loraTargets,
    worldSeed: o.worldSeed, groupSize: o.groupSize, promptsPerStep: o.promptsPerStep, maxTokens: o.maxTokens, temperature: o.temperature, lr: o.lr, worldLr: o.worldLr,
    space: o.space ?? SERVICE_DEFAULTS.space, companies: o.companies ?? SERVICE_DEFAULTS.companies, targets: o.targets ?? SERVICE_DEFAULTS.targets, algo,
  };
  const world = createServiceWorld({ seed: spec.worldSeed, space: spec.space, companies: spec.companies, targets: spec.targets });
  const ckptDir = join(o.out, 'checkpoint');
  const resumeFrom = o.resume ? await findCheckpoint(ckptDir) : null;
  if (o.resume && !resumeFrom) throw new UserError(`--resume: no checkpoint in ${o.out} (expected ${ckptDir})`);
  if (!o.resume && (await findCheckpoint(ckptDir))) throw new UserError(`${o.out} already holds a checkpoint: --resume to continue it, or choose another --out`);

  let loaded;
  if (resumeFrom) loaded = await loadCheckpoint(resumeFrom, { backend: o.backend, withOptimizer: true });
  else if (o.init) loaded = await loadCheckpoint(o.init, { backend: o.backend });
  else {
    const w = await cachedWarmStart(o.warmRoot ?? 'runs/warmstart', world, WARM_START_DEFAULTS, o.backend, log);
    loaded = { model: w.model, tokenizer: w.tok, state: null, optimizerState: null };
  }
  const { model, tokenizer: tok } = loaded;
  if (!resumeFrom) {
    if (model.adapter) throw new UserError(`${o.init} already has LoRA adapters: merge them first (minichat export --merge-lora)`);
    attachDualLora(model, { rank: spec.loraRank, policyRank: spec.policyRank, alpha: spec.loraAlpha, targets: parseLoraTargets(spec.loraTargets) }, new T.Rng(o.seed + 5));
  }
  const missing = world.fields.filter((f) => tok.encodeOrdinary(f).length !== 1);
  if (missing.length) throw new UserError(`${o.init || resumeFrom}: its tokenizer does not know this world's language (${missing.slice(0, 3).join(', ')} are not single tokens); start from this world's warm start (omit --init)`);
  const mode = spec.mode as DualMode;
  const agent = new DualAgent(model, tok, world, {
    ...DUAL_DEFAULTS, mode, algo, groupSize: spec.groupSize, tasksPerStep: spec.promptsPerStep, maxTokens: spec.maxTokens, temperature: spec.temperature,
    policyLr: spec.lr, worldLr: spec.worldLr, totalSteps: o.steps, seed: spec.seed,
  });
  const rng = new T.Rng(o.seed);
  const metricsPath = join(o.out, 'metrics.jsonl');
  if (resumeFrom && loaded.state) {
    const saved = loaded.state.spec as Record<string, unknown>;
    const differ = SPEC_KEYS.filter((k) => !RESUMABLE.has(k) && JSON.stringify(saved[k]) !== JSON.stringify(spec[k]));
    if (JSON.stringify(saved.algo) !== JSON.stringify(algo)) differ.push('algo' as never);
    if (differ.length) throw new UserError(`--resume: ${o.out} was started with other options: ${differ.join(', ')}; resume with the run's own options, or start a new run with another --out`);
    if (loaded.optimizerState) {
      await agent.loadOptimizerState(loaded.optimizerState);
      Object.values(loaded.optimizerState).forEach((t) => t.dispose());
    }
    agent.restore((loaded.state.loader as { dual: ReturnType<DualAgent['progress']> }).dual);
    rng.setState(loaded.state.rng);
    await keepMetricsUpTo(metricsPath, agent.step); // steps after the checkpoint are run again
    log(`resumed from ${resumeFrom} at step ${agent.step} (${agent.episodes} episodes)`);
  }
  log(`service world (seed ${spec.worldSeed}, space ${spec.space}: ${world.fields.length} fields, ${world.k} per requirement; ${targetPairs(world).length} target pairs), mode ${mode}: dual LoRA rank ${spec.loraRank} = policy ${spec.policyRank} + world ${spec.loraRank - spec.policyRank}, lr ${spec.lr} / ${spec.worldLr}; ${spec.promptsPerStep} tasks x ${spec.groupSize} episodes per step`);
  await writeFile(join(o.out, 'options.json'), JSON.stringify({ ...o, ...spec, backend: o.backend.name, stage: 'rl' }, null, 2) + '\n');
  const evalSet = fixedTasks(world, targetPairs(world), Math.max(1, Math.ceil(o.evalProblems / targetPairs(world).length))).slice(0, o.evalProblems);
  const resumedAt = resumeFrom ? agent.step : null; // the last good checkpoint until this run saves one
  const fresh = agent.step === 0; // evaluated before its first step
  const history: RLStepStats[] = [];
  const fmt = (x: number | null) => (x === null ? '-' : x.toFixed(4));
  const episodesAtStart = agent.episodes;
  let finalSuccess = NaN;

  // the stage over the run core's loop (src/train/run.ts): a step is the agent's (episodes,
  // then each arm's losses on their own trainers), checked for finite adapter weights
  const loop = await runLoop({
    at: () => agent.step,
    steps: o.steps,
    step: async () => {
      const s = await agent.trainStep(rng);
      const bad = adapterParams(model).find((p) => p.param.dataSync().some((x) => !Number.isFinite(x)));
      if (bad) throw new StageDiverged(`the adapter weight ${bad.name} is not finite`);
      return { step: s.step, loss: s.policyLoss ?? 0, lr: spec.lr, seconds: s.seconds, stats: s };
    },
    tokensPerStep: 0, // (episodes differ in length; the progress line reports seconds per step)
    onStep: (_, { stats: s }) => {
      log(`step ${s.step}/${o.steps}  episodes ${s.episodes}  success ${(100 * s.success).toFixed(1)}%  policy loss ${fmt(s.policyLoss)}  world loss ${fmt(s.worldLoss)}  groups ${s.keptGroups} kept/${s.droppedGroups} dropped  ${s.seconds.toFixed(1)}s`);
      history.push({ step: s.step, reward: s.success, success: s.success, responseLength: 0, entropy: 0, clipFraction: 0, kl: 0, keptGroups: s.keptGroups, droppedGroups: s.droppedGroups, genRounds: 1, completions: s.episodes, loss: s.policyLoss ?? 0, seconds: s.seconds });
    },
    metrics: (m) => appendFile(metricsPath, JSON.stringify(m) + '\n'),
    record: ({ stats: s }) => ({ ...s }),
    evalEvery: o.evalEvery,
    evalAtStart: true,
    evaluate: async (step) => {
      const s = (finalSuccess = await agent.success(evalSet));
      log(`step ${step}: greedy first-call success on the targets ${(100 * s).toFixed(1)}% (${evalSet.length} tasks)`);
      return { target_success: s };
    },
    sampleEvery: 0,
    ckptEvery: o.ckptEvery,
    save: () =>
      saveCheckpoint(ckptDir, {
        model, tokenizer: tok, optimizerState: agent.optimizerState(),
        state: {
          step: agent.step, rng: rng.getState(), loader: { dual: agent.progress() }, tokenizerFingerprint: tokenizerFingerprint(tok),
          dataFingerprint: `service-env|${spec.worldSeed}|${spec.space}|${spec.companies}|${spec.targets}`, metrics: {}, spec,
        } satisfies TrainState,
      }),
    diverged: (e, saved, step) =>
      new UserError(
        `RL diverged at step ${step}: ${e instanceof StageDiverged ? e.what : `the loss is ${e.loss}`}. ` +
          `${saved !== null || resumedAt !== null ? `The last good checkpoint (step ${saved ?? resumedAt}) is kept in ${ckptDir}; ` : 'No checkpoint was written yet; '}try a lower --lr / --world-lr (now ${spec.lr} / ${spec.worldLr}).`,
      ),
  });
  const initialSuccess = fresh ? loop.evals[0].target_success : NaN;
  const completions = agent.episodes - episodesAtStart; // sampled by this invocation
  const trainable = model.trainableParams().reduce((s, p) => s + p.param.size, 0);
  const result: ServiceRLResult = { steps: agent.step, initialSuccess, finalSuccess, completions, trainable, seconds: (performance.now() - t0) / 1000, run_dir: o.out, history };
  await writeFile(join(o.out, 'summary.json'), JSON.stringify({ stage: 'rl', seconds: result.seconds, metrics: { steps: result.steps, target_before: initialSuccess, target_after: finalSuccess, episodes: agent.episodes } }, null, 2) + '\n');
  model.dispose();
  return result;
}
