// Dual LoRA: one adapter, two rank groups — a policy learned from reward and a world model
// learned from what the environment says — in the service world (envs/service.ts), and the
// arms of the experiment that asks whether the world model helps (issue #19).
//
//   minichat rl --task service-env --mode dual --steps 20
//
// The adapter (model/lora.ts) has total rank r split into a 'policy' group and a 'world' group
// (DUAL_LORA_DEFAULTS: 16 = 8 + 8), one α/r for the whole adapter, both groups active in
// every forward (rollouts, previews, evaluation, inference). Each loss has its own optimizer
// and Trainer and updates only its own group:
//
//   policy group  ← DAPO's clipped policy-gradient loss on the agent's sampled tokens
//   world group   ← L_world = −E log P(o_{t+1} | s_t, a_t) on the observation tokens (world.ts)
//
// Isolation is by separate backward passes with the other group DETACHED: during the policy
// step the world group's requiresGrad is off (autograd records nothing for it, and its
// optimizer does not step), and the other way round. So a policy update leaves the world
// group bit-identical and vice versa (test/rl-dual.test.ts checks both).
//
// One step (every arm samples the same number of episodes: the budget unit is episodes):
//   1. `tasksPerStep` target tasks, G episodes each, through the batched engine with the
//      environment in the loop (envs/hook.ts: observations forced per row, rows end with
//      their episode); the first real call decides each episode;
//   2. reward 1 per successful episode; DAPO advantages per group (zero-variance groups carry
//      no policy signal and are dropped, without resampling: a resample would spend episodes
//      that another arm does not get);
//   3. by arm (DUAL_MODES):
//        policy     reward only: the DAPO step on the policy group (plain DAPO)
//        world      world only: the L_world step on the world group (the policy never
//                   changes; whatever moves the agent must reach it through shared hidden
//                   states — the transfer probe measures exactly that)
//        dual       both, each on its own group (the rank split)
//        shared     both losses on the same ranks (one LoRA, every rank trained by both): is
//                   the split needed?
//        lookahead  dual, plus a preview before acting: the prompt ends inside the reply to a
//                   bare call of the task, the model writes the reply it predicts, and the
//                   warm start's recovery behaviour reads the requirement off it (envs/hook.ts);
//                   only the real call after it is sent. A world model used for planning.
//        shuffled   dual, but the world group learns from failure replies whose requirement
//                   was replaced by a fresh uniform draw (same length, same token
//                   distribution, no information): the control for "any extra gradient helps"
//        memory     reward only, with the target company's past failure replies in the prompt
//                   (as preface pairs): the non-parametric ceiling — the failure message
//                   itself, with no learning of it at all
//        early      Early-Experience style (Zhang et al. 2025, implicit world modelling): for the
//                   first `earlyFraction` of the steps, L_world trains the POLICY group (the
//                   weights that act learn to predict), then plain DAPO on it
// Simplifications: μ = 1 (one optimizer step per batch); no KL term; greedy evaluation with
// one episode per task.
import { Engine, type RowOutput } from '../model/engine.ts';
import type { GPT } from '../model/gpt.ts';
import { adapterParams, attachLora, type Lora, type LoraTarget } from '../model/lora.ts';
import { buildParamGroups, groupsStateDict, loadGroupsStateDict, type ParamGroup } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import type { Tokenizer } from '../tokenizer/bpe.ts';
import { SPECIALS, chatStops } from '../tokenizer/chat.ts';
import { Trainer } from '../train/trainer.ts';
import { UserError } from '../util/errors.ts';
import { groupAdvantages } from './advantages.ts';
import { rowMasks, serviceSession } from './envs/hook.ts';
import { agentPrompt, bareCall } from './envs/render.ts';
import {
  drawRequirement, makeProfile, needReply, parseNeedReply, requirementOf, targetPairs, type EpisodeState, type Field, type ServiceTask, type ServiceWorld, type Step,
} from './envs/service.ts';
import { packBatch, type Group } from './rollout.ts';
import { ALGO_PRESETS, type AlgoOptions, policyLossOf } from './train.ts';
import { packWorldBatch, worldLoss, type WorldBatch } from './world.ts';

export const DUAL_MODES = ['policy', 'world', 'dual', 'shared', 'lookahead', 'shuffled', 'memory', 'early'] as const;
export type DualMode = (typeof DUAL_MODES)[number];

/** One line per arm (the experiment's table and `--help` use them). */
export const MODE_NOTES: Record<DualMode, string> = {
  policy: 'reward-only DAPO on the policy ranks',
  world: 'world-model loss only, on the world ranks',
  dual: 'DAPO on the policy ranks + world loss on the world ranks',
  shared: 'both losses on the same ranks (one LoRA)',
  lookahead: 'dual + a predicted reply in the context before acting',
  shuffled: 'dual, world ranks on replies with the requirement shuffled away',
  memory: "reward-only with the company's past failure replies in the prompt",
  early: 'early experience: world loss on the policy ranks first, then DAPO',
};

export interface DualOptions {
  mode: DualMode;
  algo: AlgoOptions; // the DAPO switches (ALGO_PRESETS.dapo by default)
  groupSize: number; // G: episodes per task per step
  tasksPerStep: number; // tasks per step
  maxTokens: number; // tokens per episode (sampled and forced), the row's limit
  temperature: number; // rollout sampling temperature
  policyLr: number; // AdamW learning rate of the policy loss
  worldLr: number; // AdamW learning rate of the world-model loss
  earlyFraction: number; // early mode: share of the steps spent on implicit world modelling
  totalSteps: number; // the run's steps (early mode's switch point is read from it)
  seed: number;
}

export const DUAL_DEFAULTS: Omit<DualOptions, 'mode' | 'totalSteps'> = {
  algo: ALGO_PRESETS.dapo, groupSize: 4, tasksPerStep: 4, maxTokens: 72, temperature: 1, policyLr: 3e-3, worldLr: 1e-2, earlyFraction: 0.25, seed: 0,
};

/** The adapter's shape: total rank, the policy's share (the world gets the rest), α. */
export interface DualLoraOptions {
  rank: number; // total rank r
  policyRank: number; // ranks of the policy group; world = rank − policyRank
  alpha: number; // α; the update of BOTH groups is scaled by α / r
  targets?: LoraTarget[];
}

export const DUAL_LORA_DEFAULTS: DualLoraOptions = { rank: 16, policyRank: 8, alpha: 16 };

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
  previews: [number, number][][]; // per row: spans of generated tokens the model predicted (look-ahead)
}

export interface PlayOptions {
  temperature: number;
  seed: number;
  maxTokens: number;
  lookahead?: boolean; // each prompt ends inside the reply to the task's bare call (a preview)
  prefaces?: Step[][]; // per task: (call, reply) pairs in the context before acting (memory, recovery)
}

/** G episodes of each task through the engine (temperature 0 = greedy). */
export async function playEpisodes(engine: Engine, tok: Tokenizer, world: ServiceWorld, tasks: ServiceTask[], G: number, o: PlayOptions): Promise<EpisodeGroup[]> {
  const session = serviceSession(tok, world, tasks, G, { lookahead: o.lookahead });
  const prompts = tasks.map((t, i) => agentPrompt(tok, t, o.prefaces?.[i] ?? [], o.lookahead ? bareCall(t) : undefined));
  const rows = await engine.generate(prompts, {
    maxTokens: o.maxTokens, temperature: o.temperature, topK: 0, topP: 1, seed: o.seed, samplesPerPrompt: G, afterToken: session.afterToken,
    stop: chatStops(tok), suppress: [tok.bosId],
  });
  return tasks.map((task, p) => {
    const mine = rows.slice(p * G, (p + 1) * G);
    const episodes = mine.map((_, s) => session.episode(p * G + s));
    const previews = mine.map((_, s) => session.previews(p * G + s));
    const masks = mine.map((r, s) => rowMasks(r, previews[s]));
    // preview tokens are not the agent's actions: mark them so packBatch leaves them out
    const policyRows: RowOutput[] = mine.map((r, s) => ({ ...r, forced: masks[s].action.map((a) => a === 0) }));
    return {
      task, episodes, obsMasks: masks.map((m) => m.obs), previews,
      prompt: { ids: prompts[p], reward: () => 0 }, rows: policyRows, rewards: episodes.map((e) => e.reward),
    };
  });
}

export interface DualStepStats {
  step: number;
  episodes: number; // episodes sampled so far (the budget)
  success: number; // fraction of this step's episodes with reward 1
  policyLoss: number | null; // null when the policy did not step (no kept group, or an arm without it)
  worldLoss: number | null; // null when no world-model step ran
  keptGroups: number;
  droppedGroups: number;
  seconds: number;
}

/** The trainers an arm uses, by what they train. */
type TrainerName = 'policy' | 'world' | 'earlyWorld' | 'sharedPolicy' | 'sharedWorld';

export class DualAgent {
  readonly engine: Engine;
  readonly trainers = new Map<TrainerName, Trainer<null>>();
  /** memory arm: per company, its distinct failure replies that state a requirement, first seen first */
  memory = new Map<string, string[]>();
  step = 0;
  episodes = 0;

  constructor(readonly model: GPT, readonly tok: Tokenizer, readonly world: ServiceWorld, readonly o: DualOptions) {
    if (!model.adapter || adapterParams(model, 'policy').length === 0 || adapterParams(model, 'world').length === 0) {
      throw new Error('internal: DualAgent needs a model with the dual adapter (attachDualLora)');
    }
    this.engine = new Engine(model, { maxRows: Math.max(64, o.groupSize) });
    const groups = (name: string, params: ReturnType<typeof adapterParams>, lr: number): ParamGroup[] => {
      const gs = buildParamGroups(params, { kind: 'adamw', lr, weightDecay: 0, schedule: { lr, warmupSteps: 0, totalSteps: 1, warmdownFraction: 0, finalFraction: 1 } });
      for (const g of gs) g.name = `${name}-${g.name}`;
      return gs;
    };
    const none = { next: () => null };
    const opts = { gradAccum: 1, gradClip: 1 };
    const P = adapterParams(model, 'policy'), W = adapterParams(model, 'world');
    const add = (n: TrainerName, params: typeof P, lr: number) => this.trainers.set(n, new Trainer(model, groups(n, params, lr), none, opts));
    const m = o.mode;
    if (m === 'policy' || m === 'dual' || m === 'lookahead' || m === 'shuffled' || m === 'memory' || m === 'early') add('policy', P, o.policyLr);
    if (m === 'world' || m === 'dual' || m === 'lookahead' || m === 'shuffled') add('world', W, o.worldLr);
    if (m === 'early') add('earlyWorld', P, o.worldLr);
    if (m === 'shared') {
      add('sharedWorld', [...P, ...W], o.worldLr);
      add('sharedPolicy', [...P, ...W], o.policyLr);
    }
  }

  /** The preface of a task's prompt in this arm: its company's remembered failure replies (memory arm). */
  preface(task: ServiceTask): Step[] {
    if (this.o.mode !== 'memory') return [];
    return (this.memory.get(task.company) ?? []).map((reply) => ({ action: bareCall({ company: task.company, request: parseNeedReply(reply)!.request }), observation: reply }));
  }

  /** G episodes for each task in this arm (look-ahead previews, memory prefaces); temperature 0 = greedy. */
  rollouts(tasks: ServiceTask[], G: number, temperature: number, seed: number): Promise<EpisodeGroup[]> {
    return playEpisodes(this.engine, this.tok, this.world, tasks, G, {
      temperature, seed, maxTokens: this.o.maxTokens, lookahead: this.o.mode === 'lookahead', prefaces: tasks.map((t) => this.preface(t)),
    });
  }

  /** The world-model batch of some episode groups: every row, observations masked in (shuffled arm: requirements redrawn). */
  worldBatch(groups: EpisodeGroup[]): WorldBatch | null {
    const rng = new T.Rng(this.o.seed * 7919 + this.step * 104729 + 17);
    const seqs = groups.flatMap((g) =>
      g.rows.map((r, s) => {
        const tokens = this.o.mode === 'shuffled' ? shuffleReplies(this.tok, this.world, r.tokens, g.obsMasks[s], rng) : r.tokens;
        return { ids: [...g.prompt.ids, ...tokens], obsMask: [...new Array(g.prompt.ids.length).fill(0), ...g.obsMasks[s]] };
      }),
    );
    return seqs.some((s) => s.obsMask.some(Boolean)) ? packWorldBatch(seqs) : null;
  }

  /** Sample this step's episodes on the target pairs and learn from them. */
  async trainStep(rng: T.Rng): Promise<DualStepStats> {
    const t0 = performance.now();
    const tasks = Array.from({ length: this.o.tasksPerStep }, () => sampleTargetTask(this.world, rng));
    const groups = await this.rollouts(tasks, this.o.groupSize, this.o.temperature, this.o.seed * 1_000_003 + this.step * 101);
    return this.learn(groups, t0);
  }

  /** Learn from episodes already sampled. */
  async learn(groups: EpisodeGroup[], t0 = performance.now()): Promise<DualStepStats> {
    const { o } = this;
    const n = groups.reduce((s, g) => s + g.rows.length, 0);
    this.episodes += n;
    const early = o.mode === 'early' && this.step < Math.round(o.earlyFraction * o.totalSteps);
    const stats: DualStepStats = {
      step: this.step + 1, episodes: this.episodes, success: groups.reduce((s, g) => s + g.rewards.filter((r) => r >= 1).length, 0) / Math.max(1, n),
      policyLoss: null, worldLoss: null, keptGroups: 0, droppedGroups: 0, seconds: 0,
    };
    // the world-model step: its own group, the policy's (early), or every rank (shared)
    const worldTrainer = early ? this.trainers.get('earlyWorld') : o.mode === 'early' ? undefined : (this.trainers.get('world') ?? this.trainers.get('sharedWorld'));
    if (worldTrainer) {
      const wb = this.worldBatch(groups);
      if (wb) {
        const run = () => worldTrainer.trainStep((m) => worldLoss(m, wb));
        const r = o.mode === 'shared' ? await run() : await withGroup(this.model, early ? 'policy' : 'world', run);
        stats.worldLoss = r.loss;
      }
    }
    const policyTrainer = early ? undefined : (this.trainers.get('policy') ?? this.trainers.get('sharedPolicy'));
    if (policyTrainer) {
      const kept = o.algo.dynamicSampling ? groups.filter((g) => !g.rewards.every((r) => r === g.rewards[0])) : groups;
      stats.keptGroups = kept.length;
      stats.droppedGroups = groups.length - kept.length;
      if (kept.length > 0) {
        const batch = packBatch(kept, groupAdvantages(kept.map((g) => g.rewards), { kind: o.algo.advantage }));
        // RLPolicy's loss step (train.ts policyLossOf), without a KL term
        const run = () => policyTrainer.trainStep(async (m) => (await policyLossOf(m, batch, { ...o.algo, beta: 0 })).loss);
        stats.policyLoss = (o.mode === 'shared' ? await run() : await withGroup(this.model, 'policy', run)).loss;
      }
    }
    if (o.mode === 'memory') this.remember(groups);
    this.step++;
    stats.seconds = (performance.now() - t0) / 1000;
    return stats;
  }

  /** memory arm: keep every new failure reply that states a requirement, per company. */
  remember(groups: EpisodeGroup[]): void {
    for (const g of groups) {
      for (const e of g.episodes) {
        for (const s of e.steps) {
          const need = parseNeedReply(s.observation);
          if (!need) continue;
          const list = this.memory.get(need.company) ?? [];
          if (!list.includes(s.observation)) this.memory.set(need.company, [...list, s.observation]);
        }
      }
    }
  }

  /** Greedy first-call success: one episode per task. */
  async success(tasks: ServiceTask[]): Promise<number> {
    const groups = await this.rollouts(tasks, 1, 0, 0);
    return groups.reduce((s, g) => s + g.rewards[0], 0) / Math.max(1, tasks.length);
  }

  /** Everything a checkpoint needs to continue exactly: optimizer states (by trainer) and counters. */
  optimizerState(): Record<string, T.Tensor> {
    const out: Record<string, T.Tensor> = {};
    for (const [name, t] of this.trainers) for (const [k, v] of Object.entries(groupsStateDict(t.groups))) out[`${name}/${k}`] = v;
    return out;
  }

  async loadOptimizerState(state: Record<string, T.Tensor>): Promise<void> {
    for (const [name, t] of this.trainers) {
      const mine = Object.fromEntries(Object.entries(state).filter(([k]) => k.startsWith(`${name}/`)).map(([k, v]) => [k.slice(name.length + 1), v]));
      await loadGroupsStateDict(t.groups, mine);
    }
  }

  /** Counters and memory, for the checkpoint's state (JSON). */
  progress(): { step: number; episodes: number; trainerSteps: Record<string, number>; memory: [string, string[]][] } {
    return { step: this.step, episodes: this.episodes, trainerSteps: Object.fromEntries([...this.trainers].map(([n, t]) => [n, t.step])), memory: [...this.memory] };
  }

  restore(p: ReturnType<DualAgent['progress']>): void {
    this.step = p.step;
    this.episodes = p.episodes;
    for (const [n, t] of this.trainers) t.step = p.trainerSteps[n] ?? 0;
    this.memory = new Map(p.memory);
  }
}

/**
 * The shuffled control's world data: in every forced failure reply that states a requirement
 * ("X: to cancel we need a, b"), the k fields are replaced by a fresh uniform draw of k
 * fields — the distribution the world draws requirements from, so the replies keep their
 * length (every field is one token) and their token statistics, and lose what they say about
 * the pair. Other tokens are untouched.
 */
export function shuffleReplies(tok: Tokenizer, world: ServiceWorld, tokens: number[], obsMask: number[], rng: T.Rng): number[] {
  const start = tok.specialId(SPECIALS.toolResultStart), end = tok.specialId(SPECIALS.toolResultEnd);
  const out = [...tokens];
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] !== start || !obsMask[i]) continue;
    let j = i + 1;
    while (j < tokens.length && tokens[j] !== end) j++;
    const need = parseNeedReply(tok.decode(tokens.slice(i + 1, j)));
    if (need) {
      const fake = tok.encodeOrdinary(needReply(need.company, need.request, drawRequirement(rng, world.fields, world.k)));
      if (fake.length !== j - i - 1) throw new Error('internal: a shuffled reply changed length (a field that is not one token?)');
      out.splice(i + 1, fake.length, ...fake);
    }
    i = j;
  }
  return out;
}

/** A random target task: a target pair and a fresh user. */
export function sampleTargetTask(world: ServiceWorld, rng: T.Rng): ServiceTask {
  const pairs = targetPairs(world);
  const p = pairs[rng.int(pairs.length)];
  return { ...p, profile: makeProfile(rng, world.fields) };
}

/** A fixed set of tasks: every pair of `pairs` `each` times with fresh users (the same for every arm and call). */
export function fixedTasks(world: ServiceWorld, pairs: { company: string; request: string }[], each: number, seed = 424242): ServiceTask[] {
  const rng = new T.Rng(seed);
  return pairs.flatMap((p) => Array.from({ length: each }, () => ({ ...p, profile: makeProfile(rng, world.fields) })));
}

/**
 * The transfer probe: on each task, the log-probability of its required fields (mean over
 * them) and of the other fields at the position right after `<|tool_call_start|>ask_user(` —
 * the agent's first choice of what to ask. Measured before and after world-only updates, its
 * change says whether what the world ranks learned reaches the policy's choice through the
 * shared hidden states. (Computed with the arm's prompt: plain, no preface.)
 */
export async function transferProbe(model: GPT, tok: Tokenizer, world: ServiceWorld, tasks: ServiceTask[]): Promise<{ required: number; other: number }> {
  const ctx = (t: ServiceTask) => [...agentPrompt(tok, t), tok.specialId(SPECIALS.toolCallStart), ...tok.encodeOrdinary('ask_user(')];
  const fieldIds = world.fields.map((f) => tok.encodeOrdinary(f));
  if (fieldIds.some((x) => x.length !== 1)) throw new Error('internal: the transfer probe needs single-token fields');
  const seqs = tasks.map(ctx);
  const L = Math.max(...seqs.map((s) => s.length)) + 1;
  // one row per task; the field is scored at the row's last context position
  const N = tasks.length;
  const ids = new Int32Array(N * L);
  seqs.forEach((s, n) => ids.set(s, n * L));
  const logits = await T.noGrad(() => T.tidy(async () => model.forward(T.tensor(ids, [N, L], { dtype: 'int32', backend: model.backend })).data()));
  const V = model.config.vocabSize;
  let req = 0, oth = 0, nReq = 0, nOth = 0;
  tasks.forEach((t, n) => {
    const row = logits.subarray((n * L + seqs[n].length - 1) * V, (n * L + seqs[n].length) * V);
    let mx = -Infinity;
    for (const x of row) mx = Math.max(mx, x);
    let z = 0;
    for (const x of row) z += Math.exp(x - mx);
    const lse = mx + Math.log(z);
    const required: Field[] = requirementOf(world, t);
    world.fields.forEach((f, i) => {
      const lp = row[fieldIds[i][0]] - lse;
      if (required.includes(f)) (req += lp), nReq++;
      else (oth += lp), nOth++;
    });
  });
  return { required: req / Math.max(1, nReq), other: oth / Math.max(1, nOth) };
}
