// Dual LoRA: one adapter, two rank groups — a policy learned from reward and a world model
// learned from what the environment says — in the service world (envs/service.ts).
//
//   minichat rl --init CKPT --task service-env --mode dual --steps 20
//
// The adapter (model/lora.ts) has total rank r (default 64) split into a 'policy' group and a
// 'world' group (default 32/32), one α/r for the whole adapter, both groups active in every
// forward (rollouts, evaluation, inference). Each group has its own optimizer, learning rate
// and Trainer, and each loss updates only its own group:
//
//   policy group  ← DAPO's clipped policy-gradient loss on the agent's sampled tokens
//   world group   ← L_world = −E log P(o_{t+1} | s_t, a_t) on the observation tokens (world.ts)
//
// Isolation is by separate backward passes with the other group DETACHED: during the policy
// step the world group's requiresGrad is off (autograd records nothing for it, and its
// optimizer does not step), and the other way round. So a policy update leaves the world
// group bit-identical and vice versa (test/rl-dual.test.ts checks both).
//
// One step (every mode samples the same episodes: the budget unit is episodes):
//   1. `tasksPerStep` training tasks, G episodes each, through the batched engine with the
//      environment in the loop (envs/hook.ts: observations forced per row, rows end with
//      their episode);
//   2. reward 1 per successful episode; DAPO advantages per group (zero-variance groups carry
//      no policy signal and are dropped, without resampling: a resample would spend episodes
//      that another mode does not get);
//   3. by mode:
//        policy     the DAPO step on the policy group (plain DAPO)
//        world      the L_world step on the world group (the policy never changes)
//        dual       both, each on its own group
//        early      Early-Experience style (Zhang et al. 2025, "Agent Learning via Early
//                   Experience", implicit world modelling): for the first `earlyFraction` of
//                   the steps, L_world on the agent's own sampled episodes — its alternative
//                   actions from the same start — trains the POLICY group (the weights that
//                   act learn to predict); then plain DAPO on the policy group
//        lookahead  dual, plus Dyna-style previews: before a call runs, the model samples the
//                   world's reply into the context and the agent acts again (envs/hook.ts)
// Simplifications: μ = 1 (one optimizer step per batch: the ratio is 1 and the clip only
// matters for the statistics); no KL term; greedy evaluation with one episode per task.
import { Engine, type RowOutput } from '../model/engine.ts';
import type { GPT } from '../model/gpt.ts';
import { adapterParams, attachLora, type Lora, type LoraTarget } from '../model/lora.ts';
import { tokenLogprobs } from '../model/logprobs.ts';
import { buildParamGroups, type ParamGroup } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import type { Tokenizer } from '../tokenizer/bpe.ts';
import { SPECIALS, renderForCompletion } from '../tokenizer/chat.ts';
import { Trainer } from '../train/trainer.ts';
import { UserError } from '../util/errors.ts';
import { groupAdvantages } from './advantages.ts';
import { rowMasks, serviceSession } from './envs/hook.ts';
import { servicePrompt } from './envs/render.ts';
import { runEpisode, oraclePolicy, sampleServiceTask, type EpisodeState, type ServiceTask, type ServiceWorld } from './envs/service.ts';
import { policyLoss } from './losses.ts';
import { packBatch, type Group } from './rollout.ts';
import { ALGO_PRESETS, type AlgoOptions } from './train.ts';
import { observationAccuracy, observationProbes, packWorldBatch, worldLoss, type ObservationProbe, type WorldBatch } from './world.ts';

export const DUAL_MODES = ['policy', 'world', 'dual', 'early', 'lookahead'] as const;
export type DualMode = (typeof DUAL_MODES)[number];

export interface DualOptions {
  mode: DualMode;
  algo: AlgoOptions; // the DAPO switches (ALGO_PRESETS.dapo by default)
  groupSize: number; // G: episodes per task per step
  tasksPerStep: number; // tasks per step
  maxTokens: number; // tokens per episode (sampled and forced), the row's limit
  temperature: number; // rollout sampling temperature
  policyLr: number; // AdamW learning rate of the policy group
  worldLr: number; // AdamW learning rate of the world group
  earlyFraction: number; // early mode: share of the steps spent on implicit world modelling
  totalSteps: number; // the run's steps (early mode's switch point is read from it)
  seed: number;
}

export const DUAL_DEFAULTS: Omit<DualOptions, 'mode' | 'totalSteps'> = {
  algo: ALGO_PRESETS.dapo, groupSize: 4, tasksPerStep: 4, maxTokens: 96, temperature: 1, policyLr: 3e-3, worldLr: 3e-3, earlyFraction: 0.25, seed: 0,
};

/** The adapter's shape: total rank, the policy's share (the world gets the rest), α. */
export interface DualLoraOptions {
  rank: number; // total rank r (default 64)
  policyRank: number; // ranks of the policy group (default 32); world = rank − policyRank
  alpha: number; // α; the update of BOTH groups is scaled by α / r
  targets?: LoraTarget[];
}

export const DUAL_LORA_DEFAULTS: DualLoraOptions = { rank: 64, policyRank: 32, alpha: 64 };

/** Attach the split adapter: groups 'policy' and 'world' of one LoRA. */
export function attachDualLora(model: GPT, o: DualLoraOptions, rng: T.Rng): Lora {
  if (!(Number.isInteger(o.policyRank) && o.policyRank >= 1 && o.policyRank < o.rank)) {
    throw new UserError(`--policy-rank must be an integer in [1, ${o.rank - 1}] (the world group gets the rest of --lora-rank ${o.rank}), got ${o.policyRank}`);
  }
  return attachLora(model, { rank: o.rank, alpha: o.alpha, targets: o.targets, groups: [{ name: 'policy', rank: o.policyRank }, { name: 'world', rank: o.rank - o.policyRank }] }, rng);
}

/** Run `fn` with only `group`'s adapters recording gradients (the other group detached). */
export async function withGroup<R>(model: GPT, group: 'policy' | 'world', fn: () => Promise<R>): Promise<R> {
  const other = adapterParams(model, group === 'policy' ? 'world' : 'policy');
  for (const p of other) p.param.requiresGrad = false;
  try {
    return await fn();
  } finally {
    for (const p of other) p.param.requiresGrad = true;
  }
}

/** One task's G episodes from the engine, with everything the two losses need. */
export interface EpisodeGroup extends Group {
  task: ServiceTask;
  episodes: EpisodeState[];
  obsMasks: number[][]; // per row, parallel to rows[s].tokens: 1 on forced observation tokens
}

export interface DualStepStats {
  step: number;
  episodes: number; // episodes sampled so far (the budget)
  success: number; // fraction of this step's episodes with reward 1
  policyLoss: number; // NaN when the policy did not step
  worldLoss: number; // NaN when no world-model step ran
  keptGroups: number;
  droppedGroups: number;
  seconds: number;
}

export class DualAgent {
  readonly engine: Engine;
  readonly policy: Trainer<null>;
  readonly worldModel: Trainer<null>;
  /** early mode: the policy group trained by L_world during the first phase */
  private readonly earlyWorld: Trainer<null>;
  step = 0;
  episodes = 0;

  constructor(readonly model: GPT, readonly tok: Tokenizer, readonly world: ServiceWorld, readonly o: DualOptions) {
    if (!model.adapter || adapterParams(model, 'policy').length === 0 || adapterParams(model, 'world').length === 0) {
      throw new Error('internal: DualAgent needs a model with the dual adapter (attachDualLora)');
    }
    this.engine = new Engine(model, { maxRows: Math.max(64, o.groupSize) });
    const groups = (name: 'policy' | 'world', lr: number): ParamGroup[] => {
      const gs = buildParamGroups(adapterParams(model, name), { kind: 'adamw', lr, weightDecay: 0, schedule: { lr, warmupSteps: 0, totalSteps: 1, warmdownFraction: 0, finalFraction: 1 } });
      for (const g of gs) g.name = `${name}-${g.name}`;
      return gs;
    };
    const none = { next: () => null };
    const opts = { gradAccum: 1, gradClip: 1 };
    this.policy = new Trainer(model, groups('policy', o.policyLr), none, opts);
    this.worldModel = new Trainer(model, groups('world', o.worldLr), none, opts);
    this.earlyWorld = new Trainer(model, groups('policy', o.worldLr), none, opts);
  }

  private stops(): number[] {
    return [this.tok.specialId(SPECIALS.assistantEnd), this.tok.bosId];
  }

  /** G episodes for each task through the engine; temperature 0 = greedy (evaluation). */
  async rollouts(tasks: ServiceTask[], G: number, temperature: number, seed: number): Promise<EpisodeGroup[]> {
    const lookahead = this.o.mode === 'lookahead';
    const session = serviceSession(this.tok, this.world, tasks, G, { lookahead });
    const prompts = tasks.map((t) => renderForCompletion(this.tok, servicePrompt(t)));
    const rows = await this.engine.generate(prompts, {
      maxTokens: this.o.maxTokens, temperature, topK: 0, topP: 1, seed, stop: this.stops(), samplesPerPrompt: G, afterToken: session.afterToken,
      suppress: [this.tok.bosId],
    });
    return tasks.map((task, p) => {
      const mine = rows.slice(p * G, (p + 1) * G);
      const episodes = mine.map((_, s) => session.episode(p * G + s));
      const masks = mine.map((r, s) => rowMasks(r, session.previews(p * G + s)));
      // preview tokens are not the agent's actions: mark them so packBatch leaves them out
      const policyRows: RowOutput[] = mine.map((r, s) => ({ ...r, forced: masks[s].action.map((a) => a === 0) }));
      return {
        task, episodes, obsMasks: masks.map((m) => m.obs),
        prompt: { ids: prompts[p], reward: () => 0 }, rows: policyRows, rewards: episodes.map((e) => e.reward),
      };
    });
  }

  /** The world-model batch of some episode groups: every row, observations masked in. */
  worldBatch(groups: EpisodeGroup[]): WorldBatch | null {
    const seqs = groups.flatMap((g) => g.rows.map((r, s) => ({ ids: [...g.prompt.ids, ...r.tokens], obsMask: [...new Array(g.prompt.ids.length).fill(0), ...g.obsMasks[s]] })));
    return seqs.some((s) => s.obsMask.some(Boolean)) ? packWorldBatch(seqs) : null;
  }

  /** Steps 1–3 of the header. */
  async trainStep(rng: T.Rng): Promise<DualStepStats> {
    const t0 = performance.now();
    const { o } = this;
    const tasks = Array.from({ length: o.tasksPerStep }, () => sampleServiceTask(this.world, rng, 'train'));
    const groups = await this.rollouts(tasks, o.groupSize, o.temperature, o.seed * 1_000_003 + this.step * 101);
    return this.learn(groups, t0);
  }

  /** Learn from episodes already sampled (a training step, or the one-exposure step). */
  async learn(groups: EpisodeGroup[], t0 = performance.now()): Promise<DualStepStats> {
    const { o } = this;
    const n = groups.reduce((s, g) => s + g.rows.length, 0);
    this.episodes += n;
    const early = o.mode === 'early' && this.step < Math.round(o.earlyFraction * o.totalSteps);
    const trainPolicy = o.mode === 'policy' || o.mode === 'dual' || o.mode === 'lookahead' || (o.mode === 'early' && !early);
    const trainWorld = o.mode === 'world' || o.mode === 'dual' || o.mode === 'lookahead';
    const stats: DualStepStats = {
      step: this.step + 1, episodes: this.episodes, success: groups.reduce((s, g) => s + g.rewards.filter((r) => r >= 1).length, 0) / Math.max(1, n),
      policyLoss: NaN, worldLoss: NaN, keptGroups: 0, droppedGroups: 0, seconds: 0,
    };
    if (trainWorld || early) {
      const wb = this.worldBatch(groups);
      if (wb) {
        // early: the weights that act (policy group) learn to predict; else the world group does
        const [trainer, group] = early ? [this.earlyWorld, 'policy' as const] : [this.worldModel, 'world' as const];
        stats.worldLoss = (await withGroup(this.model, group, () => trainer.trainStep((m) => worldLoss(m, wb)))).loss;
      }
    }
    if (trainPolicy) {
      const kept = o.algo.dynamicSampling ? groups.filter((g) => !g.rewards.every((r) => r === g.rewards[0])) : groups;
      stats.keptGroups = kept.length;
      stats.droppedGroups = groups.length - kept.length;
      if (kept.length > 0) {
        const batch = packBatch(kept, groupAdvantages(kept.map((g) => g.rewards), { kind: o.algo.advantage }));
        const a = o.algo;
        const r = await withGroup(this.model, 'policy', () =>
          this.policy.trainStep(async (m) => {
            const logp = tokenLogprobs(m, batch.ids, batch.N, batch.L, { only: batch.mask }); // (N, L-1)
            const logpHost = m.backend.readSync ? undefined : await logp.data();
            return policyLoss(
              { logp, oldLogp: batch.oldLogp, advantages: batch.advantages, mask: batch.mask, logpHost },
              { epsLow: a.epsLow, epsHigh: a.epsHigh, aggregation: a.tokenLevelLoss ? 'token-mean' : 'sequence-mean', beta: 0 },
            ).loss;
          }),
        );
        stats.policyLoss = r.loss;
      }
    }
    this.step++;
    stats.seconds = (performance.now() - t0) / 1000;
    return stats;
  }

  /** Greedy success rate: one episode per task. */
  async success(tasks: ServiceTask[]): Promise<number> {
    const groups = await this.rollouts(tasks, 1, 0, 0);
    return groups.reduce((s, g) => s + g.rewards[0], 0) / Math.max(1, tasks.length);
  }

  /** Next-observation accuracy (greedy, exact match) on probes. */
  observationAccuracy(probes: ObservationProbe[]): Promise<number> {
    return observationAccuracy(this.engine, this.tok, probes);
  }
}

/** A fixed evaluation set of tasks of one split: the same for every mode and every call. */
export function evalTasks(world: ServiceWorld, split: 'train' | 'test', n: number, seed = 424242): ServiceTask[] {
  const rng = new T.Rng(seed);
  return Array.from({ length: n }, () => sampleServiceTask(world, rng, split));
}

/**
 * World-model probes for tasks: per task, a call with no fields (the company answers what it
 * needs — the requirement itself) and the oracle's successful call after its questions.
 */
export function probesFor(tok: Tokenizer, world: ServiceWorld, tasks: ServiceTask[]): ObservationProbe[] {
  const episodes: EpisodeState[] = tasks.flatMap((t) => {
    const bare = runEpisode(world, t, () => `call(${t.company}, ${t.request})`);
    return [bare, runEpisode(world, t, oraclePolicy(world))];
  });
  return observationProbes(tok, episodes);
}
