// The starting point of the dual-LoRA experiment: a tiny model that knows the tool-call format.
//
// RL needs an agent that already writes well-formed calls now and then, or every episode
// scores 0 and no group has a signal. A tiny model is taught the format here, from scratch:
//   1. a byte-level BPE tokenizer trained on rendered oracle episodes (the service world's
//      whole vocabulary: the tools, fields, company names, values' characters);
//   2. a freshly initialised model (the `tiny` preset's shape with that tokenizer's vocab);
//   3. full-parameter SFT on oracle episodes of SOME training companies (`sftCompanies`),
//      loss on the agent's tokens only (renderEpisode's lossMask), packed one episode per row.
// Why not the pretrained tiny model of `minichat pretrain`: the synthetic story corpus knows
// nothing of this world's language, and pretraining it inside a 15-minute CPU budget would
// cost more than the SFT that teaches the format directly. The companies left out of SFT are
// where the policy has something to learn (their requirements are unknown to it).
import { GPT, PRESETS, type GPTConfig } from '../model/gpt.ts';
import { buildParamGroups } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import { trainTokenizer, type Tokenizer } from '../tokenizer/index.ts';
import { Trainer, languageModelLoss } from '../train/trainer.ts';
import { renderEpisode } from './envs/render.ts';
import { oraclePolicy, randomPolicy, runEpisode, sampleServiceTask, serviceSystemPrompt, serviceUserMessage, type ServiceTask, type ServiceWorld } from './envs/service.ts';

export interface WarmStartOptions {
  vocabSize: number; // tokenizer size (bytes + merges + chat specials)
  sftSteps: number; // optimizer steps of the format SFT
  batchSize: number; // episodes per SFT step
  lr: number; // AdamW learning rate of the SFT
  sftCompanies: number; // how many training companies the SFT episodes come from
  seed: number;
  config?: Partial<GPTConfig>; // overrides of the tiny preset (tests use a smaller model)
}

export const WARM_START_DEFAULTS: WarmStartOptions = { vocabSize: 1024, sftSteps: 300, batchSize: 8, lr: 1e-2, sftCompanies: 4, seed: 0 };

/** A tokenizer for the service world, trained on rendered oracle and random episodes. */
export async function serviceTokenizer(world: ServiceWorld, vocabSize: number, seed: number): Promise<Tokenizer> {
  const rng = new T.Rng(seed + 11);
  const texts: string[] = [serviceSystemPrompt()];
  for (let i = 0; i < 200; i++) {
    const task = sampleServiceTask(world, rng, i % 3 === 0 ? 'test' : 'train');
    const ep = runEpisode(world, task, i % 2 ? oraclePolicy(world) : randomPolicy(rng));
    texts.push([serviceUserMessage(task), ...ep.steps.flatMap((s) => [s.action, s.observation])].join('\n'));
  }
  return trainTokenizer(texts, { vocabSize });
}

/** Oracle episodes of the first `companies` training companies, for the format SFT. */
export function sftTask(world: ServiceWorld, companies: number, rng: T.Rng): ServiceTask {
  const names = world.companies.filter((c) => c.split === 'train').slice(0, companies).map((c) => c.name);
  for (;;) {
    const t = sampleServiceTask(world, rng, 'train');
    if (names.includes(t.company)) return t;
  }
}

/** A fresh model taught the format by SFT on oracle episodes. Returns it and its SFT loss curve. */
export async function warmStart(world: ServiceWorld, tok: Tokenizer, o: WarmStartOptions, backend?: T.Tensor['backend']): Promise<{ model: GPT; losses: number[] }> {
  const config: GPTConfig = { ...PRESETS.tiny, vocabSize: tok.vocabSize, ...o.config };
  const model = T.noGrad(() => new GPT(config, new T.Rng(o.seed + 1), backend));
  const rng = new T.Rng(o.seed + 2);
  const oracle = oraclePolicy(world);
  const next = () => {
    const eps = Array.from({ length: o.batchSize }, () => renderEpisode(tok, runEpisode(world, sftTask(world, o.sftCompanies, rng), oracle)));
    const Tn = Math.max(...eps.map((e) => e.ids.length)) - 1;
    const x = new Int32Array(o.batchSize * Tn), y = new Int32Array(o.batchSize * Tn).fill(-1);
    eps.forEach((e, b) => {
      for (let t = 0; t < e.ids.length - 1; t++) {
        x[b * Tn + t] = e.ids[t];
        if (e.lossMask[t + 1]) y[b * Tn + t] = e.ids[t + 1]; // loss on the agent's tokens only
      }
    });
    return { x, y, B: o.batchSize, T: Tn };
  };
  const sched = { lr: o.lr, warmupSteps: 10, totalSteps: o.sftSteps, warmdownFraction: 0.3, finalFraction: 0.1 };
  const trainer = new Trainer(model, buildParamGroups(model.trainableParams(), { kind: 'adamw', lr: o.lr, weightDecay: 0, schedule: sched }), { next }, { gradAccum: 1, gradClip: 1 });
  const losses: number[] = [];
  for (let i = 0; i < o.sftSteps; i++) losses.push((await trainer.trainStep(languageModelLoss)).loss);
  return { model, losses };
}
