// RL with verifiable rewards: GRPO and DAPO on a model that has been through SFT.
//
//   minichat rl --init runs/speedrun/sft --task arithmetic --algo dapo --steps 40
//
// One step, on a screen (nanochat's chat_rl.py has the same shape):
//   1. sample `promptsPerStep` problems from the task's training split;
//   2. roll out G completions per problem from the batched engine (one prefill, forked), each
//      token's log-probability under the sampling policy recorded (rollout.ts);
//   3. score each completion with the task's pure reward function (+ DAPO's overlong shaping);
//   4. dynamic sampling (DAPO): drop groups whose rewards are all equal (their advantages are
//      all 0: no signal) and sample more problems, for at most `maxGenRounds` extra rounds;
//   5. advantages per group: (r − mean)/(std + ε) (GRPO), or r − mean (Dr. GRPO);
//   6. μ optimizer steps on the clipped policy-gradient loss (losses.ts) over the batch,
//      with the importance ratio π_θ/π_old (1 on the first of the μ steps);
//   7. every `evalEvery` steps: pass@1 (greedy) on held-out problems.
// The policy is a LoRA adapter on the SFT model by default (the base frozen through the
// parameter roles), or the full model with --lora-rank 0.
//
// GRPO and DAPO are presets of the same switches (see ALGO_PRESETS); each DAPO change is its
// own flag so it can be switched off alone:
//   --clip-high          ε_high above ε_low (clip-higher; the values: DAPO_LOSS in losses.ts)
//   --dynamic-sampling   drop zero-variance groups and resample (with --max-gen-rounds)
//   --token-level-loss   every token of the batch weighs the same (instead of per-sequence means)
//   --overlong L,C       reward shaping for over-long responses (0 up to L−C, −1 at L)
// Simplifications: no value network (GRPO's point); the reference policy for the KL term is
// the SFT model itself (the adapter switched off), so it costs one extra forward, no copy.
import type { GPT } from '../model/gpt.ts';
import { Engine, type RowOutput } from '../model/engine.ts';
import { adapterParams, attachLora, type LoraTarget } from '../model/lora.ts';
import { tokenLogprobs } from '../model/logprobs.ts';
import { buildParamGroups, type ParamGroup } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import { chatStops, chatSuppress } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { Trainer } from '../train/trainer.ts';
import { UserError } from '../util/errors.ts';
import { replyParts } from '../eval/suite.ts';
import { replyText } from '../eval/tasks.ts';
import { groupAdvantages } from './advantages.ts';
import { DAPO_LOSS, POLICY_LOSS_DEFAULTS, type PolicyLossStats, overlongPenalty, policyLoss } from './losses.ts';
import { packBatch, rollout, type Group, type RLBatch, type RolloutPrompt } from './rollout.ts';
import { fillBatch, hasSignal } from './sampling.ts';

/** The switches of one RL run's algorithm. GRPO and DAPO are two settings of them. */
export interface AlgoOptions {
  epsLow: number; // lower clip: ratio ≥ 1 − ε_low
  epsHigh: number; // upper clip: ratio ≤ 1 + ε_high (DAPO's clip-higher: DAPO_LOSS.epsHigh)
  dynamicSampling: boolean; // drop zero-variance groups and sample more
  maxGenRounds: number; // extra generation rounds dynamic sampling may spend per step
  tokenLevelLoss: boolean; // token-mean over the batch (DAPO) vs mean of per-sequence means (GRPO)
  overlong: [number, number] | null; // [L_max, L_cache]: DAPO's soft overlong punishment
  beta: number; // KL(π_θ ‖ π_ref) coefficient, k3 estimator (0 = off, as in DAPO and nanochat)
  advantage: 'grpo' | 'dr-grpo'; // (r − mean)/(std + ε), or r − mean (Dr. GRPO)
  mu: number; // optimizer steps per batch of rollouts
}

export const ALGO_PRESETS: Record<'grpo' | 'dapo', AlgoOptions> = {
  grpo: { epsLow: POLICY_LOSS_DEFAULTS.epsLow, epsHigh: POLICY_LOSS_DEFAULTS.epsHigh, dynamicSampling: false, maxGenRounds: 0, tokenLevelLoss: false, overlong: null, beta: 0, advantage: 'grpo', mu: 1 },
  dapo: { epsLow: DAPO_LOSS.epsLow, epsHigh: DAPO_LOSS.epsHigh, dynamicSampling: true, maxGenRounds: 3, tokenLevelLoss: true, overlong: null, beta: 0, advantage: 'grpo', mu: 1 },
};

/** A task as the RL loop sees it: problems to sample, and how to turn one into a rollout prompt. */
export interface RLProblemSource {
  /** `n` problems of a split, drawn with `rng`, as prompts with their reward functions */
  sample(n: number, split: 'train' | 'test', rng: T.Rng): RolloutPrompt[];
}

export interface RLStepStats {
  step: number;
  reward: number; // mean reward of all sampled completions, kept or not (shaping included)
  success: number; // fraction of all sampled completions with task reward 1
  // fraction of sampled groups whose rewards were all equal: their advantages are 0, they
  // carry no signal (optional only because the service-env loop, run-dual.ts, does not fill it)
  zeroAdvantage?: number;
  responseLength: number; // mean sampled tokens per completion
  entropy: number; // mean −log π_old(token) of sampled tokens: an estimate of the policy's entropy
  clipFraction: number; // fraction of trained tokens whose ratio was clipped
  kl: number; // mean k3 KL to the reference (0 when beta = 0)
  keptGroups: number;
  droppedGroups: number; // zero-variance groups dropped by dynamic sampling
  genRounds: number; // generation rounds this step used
  completions: number; // completions sampled this step (the budget unit of the experiments)
  loss: number;
  seconds: number;
}

export interface RLRunOptions {
  algo: AlgoOptions;
  groupSize: number; // G: completions per prompt
  promptsPerStep: number; // groups per optimizer batch
  maxTokens: number; // response length limit
  temperature: number; // sampling temperature of rollouts (1 = on-policy log-probs)
  lr: number;
  seed: number;
}

/** Text of a completion that the reward reads: the assistant's own text parts (tool calls
 *  and the results the engine forced in are left out, so a tool result alone never scores). */
export function completionText(tok: Tokenizer, row: RowOutput): string {
  return replyText(replyParts(tok, row.tokens));
}

/**
 * One RL policy on one model: owns the engine, the optimizer groups and the trainer. The CLI
 * (and the experiments) call `step()` in a loop, `evaluate()` now and then.
 */
export class RLPolicy {
  readonly engine: Engine;
  readonly trainer: Trainer<RLBatch>;
  private batch: RLBatch | null = null;
  private refLogp: Float32Array | null = null;
  private lastStats = { clipFraction: 0, kl: 0 };
  step = 0;

  constructor(
    readonly model: GPT,
    readonly tok: Tokenizer,
    readonly o: RLRunOptions,
    readonly afterToken?: (row: number, generated: number[]) => number[] | undefined,
    groups?: ParamGroup[],
  ) {
    this.engine = new Engine(model, { maxRows: Math.max(64, o.groupSize) });
    const g = groups ?? buildParamGroups(model.trainableParams(), { kind: 'adamw', lr: o.lr, weightDecay: 0, schedule: { lr: o.lr, warmupSteps: 0, totalSteps: 1, warmdownFraction: 0, finalFraction: 1 } });
    this.trainer = new Trainer(model, g, { next: () => this.batch! }, { gradAccum: 1, gradClip: 1 });
  }

  private async sampleGroups(prompts: RolloutPrompt[], round: number): Promise<Group[]> {
    const { o } = this;
    return rollout(this.engine, prompts, o.groupSize, {
      maxTokens: o.maxTokens, temperature: o.temperature, topK: 0, topP: 1, stop: chatStops(this.tok), suppress: chatSuppress(this.tok),
      seed: o.seed * 1_000_003 + this.step * 101 + round, afterToken: this.afterToken,
    });
  }

  /** Steps 1–6 of the header: one batch of rollouts, μ optimizer steps. */
  async trainStep(source: RLProblemSource, rng: T.Rng): Promise<RLStepStats> {
    const t0 = performance.now();
    const { o } = this, a = o.algo;
    let completions = 0, successes = 0, rewardSum = 0, sampledTokens = 0, logpSum = 0, round = 0, groupsSampled = 0, groupsFlat = 0;
    // one round: `need` fresh problems, G completions each, scored (and shaped) — with the
    // sampling statistics of every completion, kept or not
    const generateRound = async (need: number): Promise<Group[]> => {
      const groups = await this.sampleGroups(source.sample(need, 'train', rng), round++);
      for (const g of groups) {
        completions += g.rows.length;
        successes += g.rewards.filter((r) => r >= 1).length;
        for (const r of g.rows) {
          r.tokens.forEach((_, j) => {
            if (!r.forced[j]) {
              sampledTokens++;
              logpSum += r.rawLogprobs[j];
            }
          });
        }
        // DAPO's overlong shaping is added to the task reward before advantages
        if (a.overlong) g.rewards = g.rewards.map((r, s) => r + overlongPenalty(g.rows[s].tokens.length, a.overlong![0], a.overlong![1]));
        // the step's reward and its zero-advantage fraction describe every sampled group, so a
        // batch where all completions succeeded reads "reward 1, zero-adv 100%", not "reward 0"
        rewardSum += g.rewards.reduce((x, y) => x + y, 0);
        groupsSampled++;
        if (!hasSignal(g)) groupsFlat++;
      }
      return groups;
    };
    // DAPO's dynamic sampling keeps only groups with some spread, generating more rounds
    // (at most maxGenRounds extra) until the batch is full (sampling.ts); GRPO keeps everything.
    let kept: Group[], dropped = 0;
    if (a.dynamicSampling) {
      const f = await fillBatch(() => generateRound(o.promptsPerStep), o.promptsPerStep, a.maxGenRounds);
      kept = f.kept;
      dropped = f.dropped;
    } else kept = await generateRound(o.promptsPerStep);
    const rounds = round;
    const stats: RLStepStats = {
      step: this.step + 1, reward: rewardSum / Math.max(1, completions), success: successes / Math.max(1, completions), zeroAdvantage: groupsFlat / Math.max(1, groupsSampled), responseLength: sampledTokens / Math.max(1, completions),
      entropy: sampledTokens ? -logpSum / sampledTokens : 0, clipFraction: 0, kl: 0, keptGroups: kept.length, droppedGroups: dropped,
      genRounds: rounds, completions, loss: 0, seconds: 0,
    };
    this.step++;
    if (!kept.some(hasSignal)) {
      // every group had equal rewards: all advantages are 0, nothing to learn from this step
      stats.seconds = (performance.now() - t0) / 1000;
      return stats;
    }
    const advantages = groupAdvantages(kept.map((g) => g.rewards), { kind: a.advantage });
    this.batch = packBatch(kept, advantages);
    this.refLogp = a.beta > 0 ? await this.referenceLogprobs(this.batch) : null;
    let loss = 0;
    for (let i = 0; i < a.mu; i++) loss = (await this.trainer.trainStep((m, b) => this.lossOf(m, b))).loss;
    stats.loss = loss;
    stats.clipFraction = this.lastStats.clipFraction;
    stats.kl = this.lastStats.kl;
    this.batch = null;
    stats.seconds = (performance.now() - t0) / 1000;
    return stats;
  }

  /** The policy loss of one packed batch (policyLossOf), with its host statistics kept for logging. */
  private async lossOf(model: GPT, b: RLBatch): Promise<T.Tensor> {
    const r = await policyLossOf(model, b, this.o.algo, this.refLogp ?? undefined);
    this.lastStats = { clipFraction: r.stats.clipFraction, kl: r.stats.approxKL };
    return r.loss;
  }

  /** log π_ref of the batch's tokens: the model with its adapter switched off (the SFT model). */
  private async referenceLogprobs(b: RLBatch): Promise<Float32Array> {
    const adapter = this.model.adapter;
    if (!adapter) throw new UserError('--beta > 0 needs a LoRA policy (the reference is the model without its adapter); use --lora-rank > 0 or --beta 0');
    this.model.adapter = null;
    try {
      return await T.noGrad(() => T.tidy(async () => Float32Array.from(await tokenLogprobs(this.model, b.ids, b.N, b.L, { only: b.mask }).data())));
    } finally {
      this.model.adapter = adapter;
    }
  }
}

/**
 * The loss step every policy-gradient learner shares (RLPolicy here, DualAgent's policy group in
 * dual.ts): the model's log-probabilities of the batch's sampled tokens, then the clipped
 * policy-gradient loss of losses.ts with the algorithm's clip range, aggregation and KL weight
 * (`refLogp`: log π_ref of the same tokens, needed when algo.beta > 0).
 */
export async function policyLossOf(
  model: GPT, b: RLBatch, algo: Pick<AlgoOptions, 'epsLow' | 'epsHigh' | 'tokenLevelLoss' | 'beta'>, refLogp?: Float32Array,
): Promise<{ loss: T.Tensor; stats: PolicyLossStats }> {
  const logp = tokenLogprobs(model, b.ids, b.N, b.L, { only: b.mask }); // (N, L-1), 0 off the sampled tokens
  // the loss's statistics are computed on the host: a GPU backend needs an explicit read
  const logpHost = model.backend.readSync ? undefined : await logp.data();
  return policyLoss(
    { logp, oldLogp: b.oldLogp, advantages: b.advantages, mask: b.mask, refLogp, logpHost },
    { epsLow: algo.epsLow, epsHigh: algo.epsHigh, aggregation: algo.tokenLevelLoss ? 'token-mean' : 'sequence-mean', beta: algo.beta },
  );
}

/** Make `model` an RL policy: a fresh LoRA adapter (rank > 0) or the full model (rank 0). */
export function preparePolicy(model: GPT, o: { loraRank: number; loraAlpha: number; loraTargets: LoraTarget[] }, rng: T.Rng): { trainable: number } {
  if (o.loraRank > 0) {
    attachLora(model, { rank: o.loraRank, alpha: o.loraAlpha, targets: o.loraTargets }, rng);
    return { trainable: adapterParams(model).reduce((s, p) => s + p.param.size, 0) };
  }
  model.setTrainable(() => true);
  return { trainable: model.numParams() };
}
