// `minichat rl --task service-env`: the service world with a dual LoRA (dual.ts), as a run:
// options, a progress line per step with the world model's loss and next-observation
// accuracy, metrics, held-out evaluation and a final checkpoint with both adapter groups.
//
//   minichat rl --init runs/experiment-dual-lora/warm --task service-env --mode dual --steps 20
//
// --init must know the call format: the experiment's warm start (runs/experiment-dual-lora/warm,
// written by `minichat experiment dual-lora`) is such a checkpoint. --resume is not supported
// for this task yet (the run is short; start again).
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { findCheckpoint, loadCheckpoint, saveCheckpoint, tokenizerFingerprint, type TrainState } from '../io/checkpoint.ts';
import { parseLoraTargets } from '../model/lora.ts';
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';
import { DUAL_DEFAULTS, DUAL_MODES, DualAgent, attachDualLora, evalTasks, probesFor, type DualMode } from './dual.ts';
import { createServiceWorld } from './envs/service.ts';
import type { AlgoOptions, RLStepStats } from './train.ts';

/** The `minichat rl` options this task reads (a subset of run.ts's RLOptions). */
export interface ServiceRLOptions {
  init: string; out: string; mode: string; resume: boolean; seed: number; backend: Backend;
  loraRank: number; policyRank: number; loraAlpha: number; loraTargets: string; worldSeed: number; shortValues: boolean;
  groupSize: number; promptsPerStep: number; maxTokens: number; temperature: number; lr: number; worldLr: number;
  steps: number; evalEvery: number; evalProblems: number;
}

/** The same fields as run.ts's RLResult. */
export interface ServiceRLResult {
  steps: number; initialSuccess: number; finalSuccess: number; completions: number; trainable: number; seconds: number; run_dir: string;
  history: RLStepStats[];
}

export async function runServiceRL(o: ServiceRLOptions, algo: AlgoOptions, hooks: { log(line: string): void }): Promise<ServiceRLResult> {
  const t0 = performance.now();
  const log = hooks.log;
  if (!(DUAL_MODES as readonly string[]).includes(o.mode)) throw new UserError(`--mode must be one of ${DUAL_MODES.join(', ')}, got ${o.mode}`);
  if (o.resume) throw new UserError('--resume is not supported for --task service-env; start a new run with another --out');
  if (o.loraRank < 2) throw new UserError(`--task service-env needs a dual LoRA: --lora-rank >= 2 (got ${o.loraRank})`);
  await mkdir(o.out, { recursive: true });
  const ckptDir = join(o.out, 'checkpoint');
  if ((await findCheckpoint(ckptDir))) throw new UserError(`${o.out} already holds a checkpoint; choose another --out`);
  const { model, tokenizer: tok } = await loadCheckpoint(o.init, { backend: o.backend });
  if (model.adapter) throw new UserError(`${o.init} already has LoRA adapters: merge them first (minichat export --merge-lora)`);
  const policyRank = o.policyRank || Math.floor(o.loraRank / 2);
  attachDualLora(model, { rank: o.loraRank, policyRank, alpha: o.loraAlpha, targets: parseLoraTargets(o.loraTargets) }, new T.Rng(o.seed + 5));
  const world = createServiceWorld({ seed: o.worldSeed, shortValues: o.shortValues });
  const mode = o.mode as DualMode;
  const agent = new DualAgent(model, tok, world, {
    ...DUAL_DEFAULTS, mode, algo, groupSize: o.groupSize, tasksPerStep: o.promptsPerStep, maxTokens: o.maxTokens, temperature: o.temperature,
    policyLr: o.lr, worldLr: o.worldLr, totalSteps: o.steps, seed: o.seed,
  });
  log(`service world (seed ${o.worldSeed}), mode ${mode}: dual LoRA rank ${o.loraRank} = policy ${policyRank} + world ${o.loraRank - policyRank}, lr ${o.lr} / ${o.worldLr}; ${o.promptsPerStep} tasks x ${o.groupSize} episodes per step`);
  await writeFile(join(o.out, 'options.json'), JSON.stringify({ ...o, backend: o.backend.name, stage: 'rl', algoResolved: algo }, null, 2) + '\n');
  const metric = (m: Record<string, unknown>) => appendFile(join(o.out, 'metrics.jsonl'), JSON.stringify(m) + '\n');

  const heldOut = evalTasks(world, 'test', o.evalProblems);
  const trainProbes = probesFor(tok, world, evalTasks(world, 'train', Math.min(8, o.evalProblems)));
  const evaluate = async () => {
    const s = await agent.success(heldOut);
    const acc = await agent.observationAccuracy(trainProbes);
    log(`step ${agent.step}: held-out success ${(100 * s).toFixed(1)}% (${heldOut.length} tasks), next-obs accuracy ${(100 * acc).toFixed(1)}%`);
    await metric({ step: agent.step, held_out_success: s, next_obs_accuracy: acc });
    return s;
  };
  const rng = new T.Rng(o.seed);
  const initialSuccess = await evaluate();
  let finalSuccess = initialSuccess;
  const history: RLStepStats[] = [];
  while (agent.step < o.steps) {
    const s = await agent.trainStep(rng);
    log(
      `step ${s.step}/${o.steps}  episodes ${s.episodes}  success ${(100 * s.success).toFixed(1)}%  policy loss ${s.policyLoss.toFixed(4)}  ` +
        `world loss ${s.worldLoss.toFixed(4)}  groups ${s.keptGroups} kept/${s.droppedGroups} dropped  ${s.seconds.toFixed(1)}s`,
    );
    await metric({ ...s });
    history.push({ step: s.step, reward: s.success, success: s.success, responseLength: 0, entropy: 0, clipFraction: 0, kl: 0, keptGroups: s.keptGroups, droppedGroups: s.droppedGroups, genRounds: 1, completions: s.episodes, loss: s.policyLoss, seconds: s.seconds });
    if ((o.evalEvery > 0 && agent.step % o.evalEvery === 0) || agent.step === o.steps) finalSuccess = await evaluate();
  }
  await saveCheckpoint(ckptDir, {
    model, tokenizer: tok, optimizerState: null,
    state: { step: agent.step, rng: rng.getState(), loader: { rng: rng.getState(), batches: agent.step }, tokenizerFingerprint: tokenizerFingerprint(tok), dataFingerprint: `service-env|${o.worldSeed}`, metrics: { success: finalSuccess }, spec: { ...o, backend: o.backend.name } } satisfies TrainState,
  });
  const trainable = model.trainableParams().reduce((s, p) => s + p.param.size, 0);
  const result: ServiceRLResult = { steps: agent.step, initialSuccess, finalSuccess, completions: agent.episodes, trainable, seconds: (performance.now() - t0) / 1000, run_dir: o.out, history };
  await writeFile(join(o.out, 'summary.json'), JSON.stringify({ stage: 'rl', seconds: result.seconds, metrics: { steps: result.steps, held_out_before: initialSuccess, held_out_after: finalSuccess, episodes: agent.episodes } }, null, 2) + '\n');
  model.dispose();
  return result;
}
