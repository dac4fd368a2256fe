// The run core: one setup and one training loop, shared by `minichat pretrain` (Node) and the
// page's worker (browser). Nothing here touches a file system: files go through a RunStore
// (store.ts), documents arrive already read, and the backend is given.
//
//   const run = await setupPretrain(spec, { data, store, backend, log });   // or { resume: true }
//   const result = await runPretrain(run, { store, log, onStep });
//
// setupPretrain, in order:
//   1. resume: the checkpoint (read through the store, or given) supplies the tokenizer, the
//      model config and weights, the optimizer state, the step, the RNG and the loader position;
//   2. tokenizer: the checkpoint's, or the one given, or trained on the documents (and written
//      to the store as tokenizer/);
//   3. tokens: documents → one BOS per document, whole documents held out (data/shards.ts), or
//      the token arrays of a shard directory (checked against the tokenizer);
//   4. model from the preset, parameter groups from roles (Muon + AdamW, or AdamW alone), each
//      with the spec's LR schedule; the batch loader; a Trainer over them.
//
// runLoop is generic over the batch source and the loss (SFT and RL bring their own): each step
// is trainer.trainStep(lossFn), then the progress callback and a metrics record; every
// `evalEvery` steps `evaluate()`, every `sampleEvery` a `sample()`, every `ckptEvery` a `save()`,
// and all three at the end. A non-finite loss stops the run and reports the last good
// checkpoint, which stays as it was. `shouldStop()` is asked between steps (the page's pause):
// the loop then saves and returns with `stopped` set; calling it again continues.
// A stage whose step is more than one trainer.trainStep brings its own `step()` and its own
// step count `at()` (RL: a batch of rollouts, then mu optimizer steps, src/rl/run.ts; the
// dual-LoRA modes: a policy and a world-model trainer, src/rl/run-dual.ts), its own metrics
// line (`record`), and may stop on its own findings (StageDiverged) as on a non-finite loss.
//
// Why resume is exact: everything random is owned by the run and saved — the init generator,
// the loader's generator (its position), the optimizer state, the step (hence the LR); samples
// use their own generators seeded by the step, so sampling never shifts the training stream.
import type { Backend } from '../backend/backend.ts';
import { type Batch, BatchLoader, type LoaderState, type TokenArray } from '../data/loader.ts';
import { generateSyntheticCorpus } from '../data/synthetic.ts';
import { fnv1a } from '../data/split.ts';
import { type ShardMeta, checkShardsMatchTokenizer, tokenizeDocuments } from '../data/shards.ts';
import { evaluate as evalLoss, tokenByteLengths, unigramLoss } from '../eval/loss.ts';
import {
  type CheckpointParts, type History, type TrainState, checkpointParts, modelFromParts, optimizerTensors, tokenizerFingerprint,
} from '../io/checkpoint.ts';
import { generate } from '../model/engine.ts';
import { GPT, countParams, presetConfig } from '../model/gpt.ts';
import { type ParamGroup, buildParamGroups, groupsStateDict, loadGroupsStateDict } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import { Tokenizer } from '../tokenizer/bpe.ts';
import { trainTokenizer } from '../tokenizer/train.ts';
import { UserError } from '../util/errors.ts';
import { type RunSpec, due, flagName, gradAccumOf } from './spec.ts';
import type { RunStore } from './store.ts';
import { DivergedError, type LossFn, type StepResult, Trainer, languageModelLoss } from './trainer.ts';

// ---------------------------------------------------------------------------------------
// setup
// ---------------------------------------------------------------------------------------

/** The run's text, already read: documents (tokenized here) or a shard directory's tokens. */
export type RunData =
  | { kind: 'documents'; docs: string[]; source: string }
  | { kind: 'shards'; train: TokenArray; val: TokenArray; meta: ShardMeta; source: string };

/** The seed of the built-in corpus a run trains on (the page's and the CLI's --data synthetic). */
const CORPUS_SEED = 1234;

/** The built-in synthetic corpus as run data: the same documents in the CLI and the page. */
export function syntheticData(stories: number): RunData {
  return { kind: 'documents', docs: generateSyntheticCorpus({ stories, seed: CORPUS_SEED }), source: `synthetic:${stories}` };
}

export interface SetupDeps {
  data: RunData;
  store: RunStore;
  backend: Backend;
  log: (line: string) => void;
  /** A tokenizer to use instead of training one (the CLI's --tokenizer). */
  tokenizer?: Tokenizer;
  /** Continue a checkpoint: true = the store's own; or parts read elsewhere (a file). */
  resume?: boolean | CheckpointParts;
  /** Called between the long phases (tokenizer training, tokenizing): the page lets messages in. */
  breathe?: () => Promise<void>;
}

export interface PretrainRun {
  spec: RunSpec;
  tokenizer: Tokenizer;
  train: TokenArray;
  val: TokenArray;
  model: GPT;
  groups: ParamGroup[];
  loader: BatchLoader;
  rng: T.Rng; // the run's generator (model init); saved in checkpoints
  trainer: Trainer<Batch>;
  dataFingerprint: string;
  unigram: number; // validation loss of the token-frequency model: the "learned nothing" level
  bytesPerToken: Int32Array;
  history: History;
  resumedAt: number | null; // the step a checkpoint was resumed at, or null for a fresh run
  lastVal: { loss: number; bpb: number };
  lastLoss: number;
}

/** What the token stream is, cheaply: its length and a hash of an even sample of its tokens. */
export function dataFingerprint(train: TokenArray): string {
  return `${train.length}|${fnv1a(train, Math.max(1, Math.floor(train.length / 4096))).toString(16)}`;
}

/** The model config a run spec trains: the preset, its QK-norm override, the vocabulary, and
 *  a context long enough for --seq-len. */
export function configFor(spec: Pick<RunSpec, 'preset' | 'qkNorm' | 'seqLen'>, vocabSize: number) {
  const qk = spec.qkNorm === undefined ? {} : { qkNorm: spec.qkNorm };
  return presetConfig(spec.preset, { ...qk, vocabSize, maxSeqLen: Math.max(spec.seqLen, presetConfig(spec.preset).maxSeqLen) });
}

export async function setupPretrain(spec: RunSpec, deps: SetupDeps): Promise<PretrainRun> {
  const { log, store, data } = deps;
  const breathe = deps.breathe ?? (async () => {});
  const ckpt = deps.resume === true ? await store.readCheckpoint() : deps.resume || null;
  if (deps.resume === true && !ckpt) throw new UserError(`--resume: no checkpoint in ${store.where}`);
  const where = deps.resume === true ? store.where : 'the checkpoint';

  // ---- tokenizer ----
  let tok: Tokenizer;
  if (ckpt) tok = ckpt.tokenizer;
  else if (deps.tokenizer) {
    tok = deps.tokenizer;
    log(`tokenizer: given, ${tok.vocabSize} tokens`);
  } else if (data.kind === 'shards') {
    throw new UserError(`--data ${data.source} holds token shards: pass --tokenizer with the tokenizer they were made with`);
  } else {
    const vocab = spec.vocabSize || presetConfig(spec.preset).vocabSize;
    log(`tokenizer: training ${vocab} tokens on the data…`);
    await breathe();
    const t0 = performance.now();
    tok = await trainTokenizer(data.docs, { vocabSize: vocab });
    log(`tokenizer: trained ${tok.vocabSize} tokens in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    await store.writeFile('tokenizer/tokenizer.tiktoken', tok.toTiktokenRanks());
    await store.writeFile('tokenizer/tokenizer.json', JSON.stringify({ pattern: tok.pattern, specials: tok.specials }, null, 2) + '\n');
  }

  // ---- tokens ----
  await breathe();
  let train: TokenArray, val: TokenArray;
  if (data.kind === 'shards') {
    checkShardsMatchTokenizer(data.meta, tok, tokenizerFingerprint(tok), data.source);
    ({ train, val } = data);
    log(`tokens: ${train.length} train, ${val.length} validation, from the shards in ${data.source}`);
  } else {
    const corpus = tokenizeDocuments(data.docs, tok, { valFraction: spec.valFraction });
    ({ train, val } = corpus);
    log(`tokens: ${train.length} train (${corpus.trainDocuments} docs), ${val.length} validation (${corpus.valDocuments} docs)`);
  }
  const fp = dataFingerprint(train);
  // (checkpoints from before the run core prefixed the fingerprint with the data's source)
  if (ckpt?.state && ckpt.state.dataFingerprint !== fp && !ckpt.state.dataFingerprint.endsWith(`|${fp}`)) {
    throw new UserError(
      `--resume: the data differs from the checkpoint's (${ckpt.state.dataFingerprint} vs ${fp}): ` +
        `resume with the same --data, ${flagName('syntheticStories')}, ${flagName('valFraction')} and tokenizer`,
    );
  }

  // ---- model, parameter groups, loader ----
  const config = configFor(spec, tok.vocabSize);
  // A checkpoint trained from a preset must match it. One without training state (an import
  // from Hugging Face, src/io/hf-import.ts) brings its own config and starts at step 0; its
  // checkpoints say so in their spec (modelConfig: 'checkpoint'), and later resumes keep it.
  const ownConfig = !!ckpt && (!ckpt.state || (ckpt.state.spec as { modelConfig?: string }).modelConfig === 'checkpoint');
  if (ckpt && !ownConfig) {
    const want = configFor(spec, ckpt.config.vocabSize);
    if (JSON.stringify({ ...want, maxSeqLen: 0 }) !== JSON.stringify({ ...ckpt.config, maxSeqLen: 0 })) {
      throw new UserError(
        `--resume: ${where} was made with another model config than ${flagName('preset')} ${spec.preset}` +
          `${spec.qkNorm === false ? ' --no-qk-norm' : ''} (its config: ${JSON.stringify(ckpt.config)})`,
      );
    }
  }
  const modelConfig = ckpt?.config ?? config;
  if (spec.seqLen > modelConfig.maxSeqLen) throw new UserError(`${flagName('seqLen')} ${spec.seqLen} exceeds the model's context of ${modelConfig.maxSeqLen} tokens`);
  const rng = new T.Rng(spec.seed);
  const model = ckpt ? modelFromParts(ckpt, deps.backend, where) : new GPT(config, rng, deps.backend);
  log(
    `model: ${ownConfig ? 'the checkpoint\'s config' : spec.preset}, ${(countParams(modelConfig) / 1e6).toFixed(2)}M parameters (${countParams(modelConfig)}), ` +
      `QK-norm ${modelConfig.qkNorm ? 'on' : 'off'}, ${modelConfig.mlp}, backend ${deps.backend.name}`,
  );
  // the memory-lean options (docs/memory.md): what the backward keeps, never the results
  model.recompute = spec.recompute;
  model.ceChunk = spec.ceChunk;
  const groups = paramGroupsFor(spec, model);
  const loader = new BatchLoader(train, spec.batchSize, spec.seqLen, spec.seed + 1);
  const trainer = new Trainer(model, groups, loader, { gradAccum: gradAccumOf(spec), gradClip: spec.gradClip });
  let history: History = { train: [], val: [], samples: [] };
  if (ckpt) {
    const opt = optimizerTensors(ckpt, deps.backend);
    if (opt) {
      try {
        await loadGroupsStateDict(groups, opt);
      } finally {
        Object.values(opt).forEach((t) => t.dispose());
      }
    }
    if (ckpt.state) {
      trainer.step = ckpt.state.step;
      rng.setState(ckpt.state.rng);
      loader.setState(ckpt.state.loader as LoaderState);
      history = ckpt.state.history ?? history;
    }
    log(`resumed from ${where} at step ${trainer.step}`);
  }
  const size = (n: string) => groups.find((g) => g.name === n)?.params.length ?? 0;
  log(
    `optimizer: ${spec.optimizer === 'muon' ? `Muon on ${size('muon')} matrices + AdamW on ${size('adamw')}` : `AdamW on ${size('adamw')} tensors`}, ` +
      `lr ${spec.lr}, ${spec.steps} steps of ${spec.batchSize}x${spec.seqLen}x${gradAccumOf(spec)} tokens` +
      (spec.recompute || spec.ceChunk ? ` (memory: ${[spec.recompute ? 'recompute' : '', spec.ceChunk ? `ce-chunk ${spec.ceChunk}` : ''].filter(Boolean).join(', ')})` : ''),
  );
  const last = ckpt?.state?.metrics;
  return {
    spec: ownConfig ? ({ ...spec, modelConfig: 'checkpoint' } as RunSpec) : spec, tokenizer: tok, train, val, model, groups, loader, rng, trainer, dataFingerprint: fp,
    unigram: unigramLoss(train, val, tok.vocabSize), bytesPerToken: tokenByteLengths(tok), history,
    resumedAt: ckpt ? trainer.step : null,
    lastVal: { loss: last?.val_loss ?? NaN, bpb: last?.val_bpb ?? NaN }, lastLoss: last?.train_loss ?? NaN,
  };
}

/** The spec's parameter groups for a model's trainable parameters: the optimizer split by role
 *  (Muon + AdamW, or AdamW alone), weight decay, and the spec's LR schedule for every group. */
export function paramGroupsFor(spec: RunSpec, model: GPT): ParamGroup[] {
  const schedule = { lr: spec.lr, warmupSteps: spec.warmupSteps, totalSteps: spec.steps, warmdownFraction: spec.warmdownFraction, finalFraction: 0 };
  return buildParamGroups(model.trainableParams(), { kind: spec.optimizer, lr: spec.lr, weightDecay: spec.weightDecay, schedule });
}

/** What any stage's checkpoint is made of (SFT and RL pass their own batch source's state). */
export interface RunCheckpointInput {
  model: GPT;
  tokenizer: Tokenizer;
  groups: ParamGroup[];
  step: number;
  rng: T.Rng;
  loaderState: TrainState['loader'];
  dataFingerprint: string;
  metrics: Record<string, number>;
  spec: object;
  history: History;
}

/** A stage's checkpoint as it stands (reads the weights back from the device). */
export async function runCheckpoint(c: RunCheckpointInput): Promise<CheckpointParts> {
  const state: TrainState = {
    step: c.step, rng: c.rng.getState(), loader: c.loaderState, tokenizerFingerprint: tokenizerFingerprint(c.tokenizer),
    dataFingerprint: c.dataFingerprint, metrics: c.metrics, spec: { ...c.spec }, history: c.history,
  };
  return checkpointParts(c.model, c.tokenizer, groupsStateDict(c.groups), state);
}

/** The checkpoint of a pretraining run as it stands. */
export function pretrainCheckpoint(run: PretrainRun): Promise<CheckpointParts> {
  return runCheckpoint({
    model: run.model, tokenizer: run.tokenizer, groups: run.groups, step: run.trainer.step, rng: run.rng, loaderState: run.loader.getState(),
    dataFingerprint: run.dataFingerprint, metrics: { train_loss: run.lastLoss, val_loss: run.lastVal.loss, val_bpb: run.lastVal.bpb },
    spec: run.spec, history: run.history,
  });
}

/** Sample a continuation of `prompt` as text (special tokens other than BOS are never sampled:
 *  a base model has no use for chat tokens). Seeded: the same seed gives the same text. */
export async function sampleText(model: GPT, tok: Tokenizer, prompt: number[], o: { maxTokens: number; temperature: number; seed: number }): Promise<string> {
  const ids = await generate(model, prompt, {
    maxTokens: o.maxTokens, temperature: o.temperature, topK: 40, rng: new T.Rng(o.seed), stopAt: [tok.bosId],
    suppress: Object.values(tok.specials).filter((id) => id !== tok.bosId),
  });
  return tok.decode(ids);
}

export function disposeRun(run: PretrainRun): void {
  for (const t of Object.values(groupsStateDict(run.groups))) t.dispose();
  run.model.dispose();
}

// ---------------------------------------------------------------------------------------
// the loop (generic: any batch source and loss)
// ---------------------------------------------------------------------------------------

export interface StepInfo {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  etaSeconds: number;
}

/** What one step of the loop reports: the Trainer's StepResult, or a stage's own step (RL). */
export interface LoopStep {
  step: number; // the stage's steps completed, this one included
  loss: number;
  lr: number;
  seconds: number; // time spent in the step (tokens/s and the ETA are computed from it)
}

/**
 * A stage's own finding that its numbers stopped being finite, other than the loss (RL: the
 * logits of the policy; the dual-LoRA modes: the adapter's weights after a step). Thrown from
 * `step()` or `save()`, it stops the run through `diverged` as a non-finite loss does.
 */
export class StageDiverged extends Error {
  constructor(readonly what: string) {
    super(what);
    this.name = 'StageDiverged';
  }
}

export interface LoopOptions<B, S extends LoopStep = StepResult> {
  trainer?: Trainer<B>; // with lossFn: the step (unless `step` is given)
  lossFn?: LossFn<B>;
  /** One step of a stage that is more than trainer.trainStep(lossFn) (RL: rollouts, then mu
   *  optimizer steps). Throws DivergedError or StageDiverged to stop the run. */
  step?: () => Promise<S>;
  /** The stage's step count, read before each step (default: trainer.step). */
  at?: () => number;
  steps: number; // run until at() reaches this
  /** Asked before each step: true ends the run (the step before it counts as the last: it was
   *  evaluated, sampled and saved). The grpo-vs-dapo experiment's budget of completions. */
  done?: () => boolean;
  tokensPerStep: number; // for tokens/s
  evalEvery: number; // 0 = only at the end
  evaluate?: (step: number) => Promise<Record<string, number>>;
  sampleEvery: number; // 0 = only at the end
  sample?: (step: number) => Promise<string>;
  ckptEvery: number; // 0 = only at the end (and when stopped)
  save?: (step: number) => Promise<void>;
  metrics?: (rec: Record<string, unknown>) => Promise<void>; // store.appendMetrics
  /** A step's metrics record (default: step, loss, lr, tokens_per_second, seconds since the start). */
  record?: (result: S, info: StepInfo) => Record<string, unknown>;
  /** Evaluate once before the first step when the run starts at step 0 (RL's "before" number). */
  evalAtStart?: boolean;
  /** Write a step's evaluation record before its step record (RL's metrics.jsonl order). */
  evalBeforeRecord?: boolean;
  onStep?: (s: StepInfo, result: S) => void;
  /** Asked between steps; true stops the loop after saving (the page's pause). */
  shouldStop?: () => boolean;
  /** Wraps each model operation (the page runs them one at a time with its prompts). */
  exclusive?: <R>(fn: () => Promise<R>) => Promise<R>;
  /** Awaited between steps (the page lets queued messages in). */
  between?: () => Promise<void>;
  /** The error to throw when the loss (or a stage's own check) stops being finite, given the
   *  last step this call saved and the step it happened at. */
  diverged?: (e: DivergedError | StageDiverged, lastSavedStep: number | null, step: number) => Error;
}

export interface LoopResult {
  step: number;
  stopped: boolean; // shouldStop() ended it before `steps`
  losses: number[]; // every step's training loss, this call
  evals: Record<string, number>[]; // every evaluation's numbers, this call
  samples: string[];
  trainSeconds: number; // time inside trainStep only
  tokensPerSecond: number;
}

export async function runLoop<B, S extends LoopStep = StepResult>(o: LoopOptions<B, S>): Promise<LoopResult> {
  const t0 = performance.now();
  const ex = o.exclusive ?? (<R>(fn: () => Promise<R>) => fn());
  if (!o.step && !(o.trainer && o.lossFn)) throw new Error('internal: runLoop needs a trainer and a loss, or a step()');
  const at = o.at ?? (() => o.trainer!.step);
  // (without `step`, S is the Trainer's StepResult: the default of the type parameter)
  const stepOnce = o.step ?? (() => o.trainer!.trainStep(o.lossFn!) as unknown as Promise<S>);
  const r: LoopResult = { step: at(), stopped: false, losses: [], evals: [], samples: [], trainSeconds: 0, tokensPerSecond: 0 };
  let savedStep: number | null = null; // the newest checkpoint this call wrote
  let lastSaved = at(); // nothing to save when stopped right away
  /** A divergence as the stage words it (or as it is, when the stage has no words for it). */
  const stop = (e: unknown, step: number) => ((e instanceof DivergedError || e instanceof StageDiverged) && o.diverged ? o.diverged(e, savedStep, step) : e);
  const save = async (step: number) => {
    if (!o.save) return;
    try {
      await ex(() => o.save!(step));
    } catch (e) {
      throw stop(e, step);
    }
    savedStep = lastSaved = step;
  };
  const evaluate = async (step: number) => {
    const ev = await ex(() => o.evaluate!(step));
    r.evals.push(ev);
    await o.metrics?.({ step, ...ev });
  };
  if (o.evalAtStart && o.evaluate && at() === 0) await evaluate(0);
  let trained = 0;
  while (at() < o.steps && !o.done?.()) {
    if (o.shouldStop?.()) {
      r.stopped = true;
      break;
    }
    const next = at() + 1;
    let res: S;
    try {
      res = await ex(stepOnce);
    } catch (e) {
      throw stop(e, next);
    }
    const step = (r.step = res.step);
    r.losses.push(res.loss);
    r.trainSeconds += res.seconds;
    trained++;
    const tps = (trained * o.tokensPerStep) / r.trainSeconds;
    const info: StepInfo = { step, steps: o.steps, loss: res.loss, lr: res.lr, tokensPerSecond: tps, etaSeconds: ((o.steps - step) * r.trainSeconds) / trained };
    o.onStep?.(info, res);
    const record = o.record?.(res, info) ?? { step, loss: res.loss, lr: res.lr, tokens_per_second: Math.round(tps), seconds: (performance.now() - t0) / 1000 };
    if (!o.evalBeforeRecord) await o.metrics?.(record);
    const last = step === o.steps || !!o.done?.();
    if (o.evaluate && (due(o.evalEvery, step) || last)) await evaluate(step);
    if (o.evalBeforeRecord) await o.metrics?.(record);
    if (o.sample && (due(o.sampleEvery, step) || last)) {
      const text = await ex(() => o.sample!(step));
      r.samples.push(text);
      await o.metrics?.({ step, sample: text });
    }
    if (due(o.ckptEvery, step) || last) await save(step);
    await o.between?.();
  }
  if (r.stopped && lastSaved !== at()) await save(at());
  r.tokensPerSecond = trained ? (trained * o.tokensPerStep) / r.trainSeconds : 0;
  return r;
}

// ---------------------------------------------------------------------------------------
// pretraining over the loop
// ---------------------------------------------------------------------------------------

export interface PretrainHooks {
  store: RunStore;
  log: (line: string) => void;
  onStep?: (s: StepInfo) => void;
  onEval?: (step: number, v: { loss: number; bpb: number }) => void;
  onSample?: (step: number, text: string) => void;
  onSave?: (step: number) => void;
  shouldStop?: () => boolean;
  exclusive?: <R>(fn: () => Promise<R>) => Promise<R>;
  between?: () => Promise<void>;
}

/** The hooks every stage wires the same way: what a stage's run state and hooks must offer. */
export interface StageRunState {
  lastLoss: number;
  history: History;
  resumedAt: number | null;
}
export interface StageHooks {
  store: RunStore;
  onStep?: (s: StepInfo) => void;
  onSave?: (step: number) => void;
  shouldStop?: () => boolean;
  exclusive?: <R>(fn: () => Promise<R>) => Promise<R>;
  between?: () => Promise<void>;
}

/**
 * The parts of runLoop's options that pretraining and SFT share: checkpoints and metrics
 * through the store, the loss history, the page's pause/exclusive hooks, and the error that
 * names the last good checkpoint when the loss stops being finite (`advice` ends it).
 */
export function storeLoopParts(run: StageRunState, h: StageHooks, checkpoint: () => Promise<CheckpointParts>, advice: string) {
  return {
    save: async (step: number) => {
      await h.store.writeCheckpoint(await checkpoint());
      h.onSave?.(step);
    },
    metrics: (rec: Record<string, unknown>) => h.store.appendMetrics(rec),
    onStep: (info: StepInfo) => {
      run.lastLoss = info.loss;
      run.history.train.push([info.step, info.loss]);
      h.onStep?.(info);
    },
    shouldStop: h.shouldStop,
    exclusive: h.exclusive,
    between: h.between,
    diverged: (e: Error, saved: number | null) =>
      new UserError(
        `${e.message}. ` +
          (saved !== null || run.resumedAt !== null
            ? `The last good checkpoint (step ${saved ?? run.resumedAt}) is kept in ${h.store.where}. `
            : 'No checkpoint was written yet. ') +
          advice,
      ),
  };
}

/** Validation loss and bits per byte of the run's model on its held-out tokens. */
export async function validate(run: PretrainRun): Promise<{ loss: number; bpb: number }> {
  const s = run.spec;
  const v = await evalLoss(run.model, run.val, s.batchSize, s.seqLen, s.evalBatches, run.bytesPerToken);
  return { loss: v.loss, bpb: v.bpb };
}

/** Train a set-up run to spec.steps (or until hooks.shouldStop()), through runLoop. */
export async function runPretrain(run: PretrainRun, h: PretrainHooks): Promise<LoopResult> {
  const s = run.spec;
  const result = await runLoop({
    trainer: run.trainer,
    lossFn: languageModelLoss,
    steps: s.steps,
    tokensPerStep: s.batchSize * s.seqLen * gradAccumOf(s),
    evalEvery: s.evalEvery,
    evaluate: async (step) => {
      run.lastVal = await validate(run);
      run.history.val.push([step, run.lastVal.loss]);
      h.log(`step ${step}: val loss ${run.lastVal.loss.toFixed(4)} (unigram ${run.unigram.toFixed(3)}), val bpb ${run.lastVal.bpb.toFixed(4)}`);
      h.onEval?.(step, run.lastVal);
      return { val_loss: run.lastVal.loss, val_bpb: run.lastVal.bpb };
    },
    sampleEvery: s.sampleEvery,
    sample: async (step) => {
      const text = await sampleText(run.model, run.tokenizer, [run.tokenizer.bosId], { maxTokens: s.sampleTokens, temperature: 0.8, seed: s.seed * 1000 + step });
      run.history.samples.push({ step, text });
      h.log(`sample @ step ${step}: ${JSON.stringify(text)}`);
      h.onSample?.(step, text);
      return text;
    },
    ckptEvery: s.ckptEvery,
    ...storeLoopParts(run, h, () => pretrainCheckpoint(run), `Try a lower ${flagName('lr')} (now ${s.lr}) or ${flagName('gradClip')}.`),
  });
  // resumed at the end: still report the validation numbers
  if (Number.isNaN(run.lastVal.loss)) run.lastVal = await (h.exclusive ?? ((fn) => fn()))(() => validate(run));
  return result;
}
