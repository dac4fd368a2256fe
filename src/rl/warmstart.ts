// The starting point of the dual-LoRA experiment (issue #19): a tiny model that COPIES.
//
// RL needs an agent that already succeeds on the companies it knows, copies the user's values
// into its call, and — for the look-ahead and memory arms — reads a requirement off a reply
// in its context and acts on it. Without that, no episode succeeds, every DAPO group has zero
// variance, and the experiment cannot tell its arms apart (what the first version showed).
// Three stages, all from scratch, all cached:
//   1. a tokenizer trained on the world's own text with a pre-split that keeps words, numbers
//      and punctuation apart (WORLD_PATTERN), so every company, request, field and two-digit
//      value is ONE token: copying a value is a one-token induction ("card=" … "card=07");
//   2. pretraining of a `tiny`-shaped model on rendered episodes, loss on every token: oracle
//      and random episodes of the known companies, and recovery demonstrations (below) — the
//      world's language, its replies, and in-context copying (which a tiny model picks up
//      suddenly after a few hundred steps, as in the speedrun);
//   3. SFT on oracle episodes of the known companies and on recovery demonstrations, loss on
//      the agent's tokens only.
// Recovery demonstrations: an episode that opens with a preface (render.ts) — a bare call and
// its reply "X: to cancel we need f1, f2" — after which the agent asks for f1 and f2 and calls.
// Mostly at the practice companies, each time with fresh random requirements (so the reply is
// the only way to be right), sometimes with two or three replies for different requests of
// one company in the preface (the memory arm's shape), sometimes at a known company with its
// true reply (what a correct look-ahead preview gives). Target companies appear nowhere here
// but in the tokenizer's corpus, as bare request lines (their names must be single tokens;
// their requirements are never written).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fnv1a } from '../data/split.ts';
import { loadCheckpoint, saveCheckpoint, type TrainState } from '../io/checkpoint.ts';
import { GPT, PRESETS, type GPTConfig } from '../model/gpt.ts';
import { buildParamGroups } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import { trainTokenizer, type Tokenizer } from '../tokenizer/index.ts';
import { SPECIALS, renderConversation } from '../tokenizer/chat.ts';
import { runLoop } from '../train/run.ts';
import { Trainer, languageModelLoss } from '../train/trainer.ts';
import { episodeMessages, renderEpisode, bareCall } from './envs/render.ts';
import {
  companiesOf, drawRequirement, makeProfile, needReply, oraclePolicy, randomPolicy, runEpisode, sampleServiceTask, scriptedPolicy,
  serviceSystemPrompt, serviceUserMessage, type EpisodeState, type ServiceWorld, type Step,
} from './envs/service.ts';

/** Words, numbers, single punctuation marks and runs of spaces, each a separate chunk. */
export const WORLD_PATTERN = '\\p{L}+|\\p{N}+|[^\\s\\p{L}\\p{N}]|\\s+';

export interface WarmStartOptions {
  vocabSize: number; // tokenizer size (bytes + merges + chat specials)
  pretrainSteps: number; // stage 2 steps (loss on every token)
  sftSteps: number; // stage 3 steps (loss on the agent's tokens)
  batchSize: number; // episodes per step
  pretrainLr: number;
  sftLr: number;
  seed: number;
  config?: Partial<GPTConfig>; // overrides of the tiny preset (tests use a smaller model)
}

export const WARM_START_DEFAULTS: WarmStartOptions = { vocabSize: 768, pretrainSteps: 450, sftSteps: 500, batchSize: 12, pretrainLr: 1e-2, sftLr: 3e-3, seed: 0 };

/** Bumped whenever what a warm start is trained on changes (it is part of the cache key). */
const WARM_START_VERSION = 3;

/** Kinds of documents, and their shares in pretraining and in SFT. */
export type DocKind = 'oracle' | 'random' | 'recovery' | 'memory' | 'known-recovery' | 'guess' | 'target-guess';
const PRETRAIN_MIX: [DocKind, number][] = [['oracle', 0.3], ['random', 0.2], ['recovery', 0.2], ['memory', 0.1], ['known-recovery', 0.1], ['guess', 0.05], ['target-guess', 0.05]];
const SFT_MIX: [DocKind, number][] = [['oracle', 0.5], ['recovery', 0.15], ['memory', 0.15], ['known-recovery', 0.1], ['guess', 0.05], ['target-guess', 0.05]];

export interface Document {
  state: EpisodeState;
  preface: Step[];
  /** ends at the last call, before its reply (target-guess: a target's requirement is never written) */
  cut?: boolean;
}

/** One document of a kind (none of them ever names a target company's requirements). */
export function worldDocument(world: ServiceWorld, kind: DocKind, rng: T.Rng): Document {
  if (kind === 'target-guess') {
    // a target company by name, with random asks and a call, cut before the reply: its name
    // is seen (and produced) in training, its requirement never is. Without these, the target
    // names' tokens are never a training target and the model will not copy them.
    const task = sampleServiceTask(world, rng, 'target');
    return { state: runEpisode(world, task, scriptedPolicy(rng.shuffle([...world.fields]).slice(0, world.k))), preface: [], cut: true };
  }
  if (kind === 'oracle' || kind === 'random' || kind === 'known-recovery') {
    const task = sampleServiceTask(world, rng, 'known');
    if (kind === 'random') return { state: runEpisode(world, task, randomPolicy(world, rng)), preface: [] };
    const state = runEpisode(world, task, oraclePolicy(world));
    const requires = world.companies.find((c) => c.name === task.company)!.requires[task.request];
    return { state, preface: kind === 'known-recovery' ? [{ action: bareCall(task), observation: needReply(task.company, task.request, requires) }] : [] };
  }
  // a practice company with fresh requirements for each request in play
  const company = world.practice[rng.int(world.practice.length)];
  const request = world.requests[rng.int(world.requests.length)];
  const profile = makeProfile(rng, world.fields);
  const requires = drawRequirement(rng, world.fields, world.k);
  const task = { company, request, profile, requires };
  const others = kind === 'memory' && world.requests.length > 1 ? rng.shuffle(world.requests.filter((r) => r !== request)).slice(0, 1 + rng.int(Math.min(2, world.requests.length - 1))) : [];
  const preface = rng.shuffle([request, ...others]).map((r) => ({
    action: bareCall({ company, request: r }), observation: needReply(company, r, r === request ? requires : drawRequirement(rng, world.fields, world.k)),
  }));
  // guess: nothing in the context, so the agent asks k distinct fields at random and calls the
  // company BY ITS NAME (a tiny model otherwise falls back to a known company's name)
  if (kind === 'guess') return { state: runEpisode(world, task, scriptedPolicy(rng.shuffle([...world.fields]).slice(0, world.k))), preface: [] };
  return { state: runEpisode(world, task, scriptedPolicy(requires)), preface };
}

function pick(mix: [DocKind, number][], rng: T.Rng): DocKind {
  let u = rng.uniform();
  for (const [k, p] of mix) if ((u -= p) < 0) return k;
  return mix[mix.length - 1][0];
}

/** Every name the model must copy as one token: companies (all sets), requests, fields, values. */
export function singleTokenWords(world: ServiceWorld): string[] {
  const values = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));
  return [...world.companies.map((c) => c.name), ...world.practice, ...world.requests, ...world.fields, ...values];
}

/** The world's tokenizer, trained on rendered documents of every kind and the targets' request lines. */
export async function serviceTokenizer(world: ServiceWorld, vocabSize: number, seed: number): Promise<Tokenizer> {
  const rng = new T.Rng(seed + 11);
  const texts: string[] = [serviceSystemPrompt()];
  for (let i = 0; i < 600; i++) {
    const d = worldDocument(world, pick(PRETRAIN_MIX, rng), rng);
    if (d.cut) continue;
    texts.push([serviceUserMessage(d.state.task), ...[...d.preface, ...d.state.steps].flatMap((s) => [s.action, s.observation])].join('\n'));
  }
  // names must be single tokens: the targets' request lines (no requirement), every value
  for (const c of companiesOf(world, 'target')) for (const r of world.requests) for (let j = 0; j < 30; j++) texts.push(serviceUserMessage({ company: c.name, request: r }));
  for (let j = 0; j < 20; j++) texts.push(singleTokenWords(world).join(' '));
  const tok = await trainTokenizer(texts, { vocabSize, pattern: WORLD_PATTERN });
  const split = singleTokenWords(world).filter((w) => tok.encodeOrdinary(w).length !== 1);
  if (split.length) throw new Error(`internal: the world tokenizer (${vocabSize} tokens) splits ${split.slice(0, 5).join(', ')}: raise vocabSize`);
  return tok;
}

/** A batch of documents as (B, T) next-token windows; `agentOnly`: targets on the agent's tokens only. */
function documentBatch(tok: Tokenizer, docs: Document[], agentOnly: boolean) {
  const callEnd = tok.specialId(SPECIALS.toolCallEnd);
  const eps = docs.map((d) => {
    let e: { ids: number[]; lossMask: number[] };
    if (agentOnly) e = renderEpisode(tok, d.state, d.preface);
    else {
      const { ids } = renderConversation(tok, episodeMessages(d.state, d.preface));
      e = { ids, lossMask: ids.map(() => 1) };
    }
    if (d.cut) {
      const end = e.ids.lastIndexOf(callEnd) + 1;
      e = { ids: e.ids.slice(0, end), lossMask: e.lossMask.slice(0, end) };
    }
    return e;
  });
  const B = eps.length, Tn = Math.max(...eps.map((e) => e.ids.length)) - 1;
  const x = new Int32Array(B * Tn), y = new Int32Array(B * Tn).fill(-1);
  eps.forEach((e, b) => {
    for (let t = 0; t < e.ids.length - 1; t++) {
      x[b * Tn + t] = e.ids[t];
      if (e.lossMask[t + 1]) y[b * Tn + t] = e.ids[t + 1];
    }
  });
  return { x, y, B, T: Tn };
}

export interface WarmStart {
  model: GPT;
  tok: Tokenizer;
  pretrainLosses: number[];
  sftLosses: number[];
  seconds: number; // how long it took to build (0 when it came from the cache)
  cached: boolean;
  dir: string | null;
}

/** Stages 1–3 (no cache). `log` gets a line every 50 steps. */
export async function buildWarmStart(world: ServiceWorld, o: WarmStartOptions, backend?: T.Tensor['backend'], log: (s: string) => void = () => {}): Promise<Omit<WarmStart, 'cached' | 'dir'>> {
  const t0 = performance.now();
  const tok = await serviceTokenizer(world, o.vocabSize, o.seed);
  const config: GPTConfig = { ...PRESETS.tiny, vocabSize: tok.vocabSize, ...o.config };
  const model = T.noGrad(() => new GPT(config, new T.Rng(o.seed + 1), backend));
  const rng = new T.Rng(o.seed + 2);
  const stage = async (name: string, steps: number, lr: number, mix: [DocKind, number][], agentOnly: boolean) => {
    const next = () => documentBatch(tok, Array.from({ length: o.batchSize }, () => worldDocument(world, pick(mix, rng), rng)), agentOnly);
    const sched = { lr, warmupSteps: Math.min(20, steps), totalSteps: Math.max(1, steps), warmdownFraction: 0.3, finalFraction: 0.1 };
    const trainer = new Trainer(model, buildParamGroups(model.trainableParams(), { kind: 'adamw', lr, weightDecay: 0, schedule: sched }), { next }, { gradAccum: 1, gradClip: 1 });
    // the run core's loop (src/train/run.ts), with nothing to evaluate or save: the cache keeps the result
    const r = await runLoop({
      trainer, lossFn: languageModelLoss, steps, tokensPerStep: 0, evalEvery: 0, sampleEvery: 0, ckptEvery: 0,
      onStep: (s) => {
        if (s.step % 25 === 0 || s.step === steps) log(`warm start ${name} ${s.step}/${steps}: loss ${s.loss.toFixed(4)} (${((performance.now() - t0) / 1000).toFixed(0)}s)`);
      },
    });
    return r.losses;
  };
  const pretrainLosses = await stage('pretrain', o.pretrainSteps, o.pretrainLr, PRETRAIN_MIX, false);
  const sftLosses = await stage('sft', o.sftSteps, o.sftLr, SFT_MIX, true);
  return { model, tok, pretrainLosses, sftLosses, seconds: (performance.now() - t0) / 1000 };
}

/** FNV-1a of a string (data/split.ts), as 8 hex digits: the cache key. */
const fnv = (s: string): string => fnv1a(s).toString(16).padStart(8, '0');

/** Where the warm start of (world, options) is cached: runs/warmstart/w<seed>-<hash of everything it depends on>. */
export function warmStartDir(root: string, world: ServiceWorld, o: WarmStartOptions): string {
  return join(root, `w${world.options.seed}-${fnv(JSON.stringify({ v: WARM_START_VERSION, world: world.options, o }))}`);
}

/** The cached warm start of (world, options) under `root`, built (and cached) if there is none. */
export async function cachedWarmStart(root: string, world: ServiceWorld, o: WarmStartOptions, backend?: T.Tensor['backend'], log: (s: string) => void = () => {}): Promise<WarmStart> {
  const dir = warmStartDir(root, world, o);
  const meta = await readFile(join(dir, 'warmstart.json'), 'utf8').then((t) => JSON.parse(t), () => null);
  if (meta) {
    const { model, tokenizer } = await loadCheckpoint(join(dir, 'checkpoint'), { backend });
    log(`warm start: cached in ${dir} (built in ${meta.seconds.toFixed(0)}s)`);
    return { model, tok: tokenizer, pretrainLosses: meta.pretrainLosses, sftLosses: meta.sftLosses, seconds: 0, cached: true, dir };
  }
  log(`warm start: building ${dir} (pretrain ${o.pretrainSteps} + SFT ${o.sftSteps} steps; long, once per world and options)`);
  const w = await buildWarmStart(world, o, backend, log);
  await mkdir(dir, { recursive: true });
  await saveCheckpoint(join(dir, 'checkpoint'), { model: w.model, tokenizer: w.tok, optimizerState: null, state: null as unknown as TrainState });
  // written last: a directory without it is an interrupted build, built again next time
  await writeFile(join(dir, 'warmstart.json'), JSON.stringify({ world: world.options, options: o, seconds: w.seconds, pretrainLosses: w.pretrainLosses, sftLosses: w.sftLosses }) + '\n');
  return { ...w, cached: false, dir };
}
