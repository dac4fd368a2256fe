// The SFT stage over the run core: one setup and one loop, shared by `minichat sft` (Node,
// src/train/sft.ts, a run directory) and the page's worker (browser, IndexedDB). Nothing here
// touches a file system: the base model arrives as checkpoint parts, the conversations
// already read, and files go through a RunStore (store.ts).
//
//   const run = await setupSft(spec, { base, baseName, convs, source, store, backend, log });
//   const result = await runSft(run, { store, log, onStep });
//
// setupSft, in order:
//   1. the model: the base checkpoint's weights and tokenizer, or, on resume, the SFT
//      checkpoint's (weights, optimizer state, step, RNG and the loader's position);
//   2. conversations: a seeded shuffle holds a few out for validation; each is rendered with
//      the chat specials and a loss mask on the assistant's tokens only (tokenizer/chat.ts),
//      too-long ones truncated or skipped and counted (data/conversations.ts);
//   3. packed rows of T+1 tokens (ConversationBatches), targets −1 wherever the mask is 0, so
//      languageModelLoss trains on assistant tokens only;
//   4. parameter groups from roles (Muon + AdamW, or AdamW alone; every parameter trains)
//      with the spec's LR schedule, and a Trainer over the batches.
// runSft is runLoop (run.ts) with the conversation batches and languageModelLoss: progress,
// metrics ({step, loss}, {step, val_loss}), validation, checkpoints, the page's pause, and a
// non-finite loss stopping the run with the last good checkpoint kept.
//
// Why resume is exact: the checkpoint carries the weights, the optimizer state, the step (so
// the LR), the run's generator and ConversationBatches' state (epoch, position and the
// generator state its epoch's shuffle was drawn from), so steps 1..3 then 4..6 are steps 1..6.
//
// Simplification: full-parameter SFT (LoRA SFT is a one-line change in the groups, see
// src/model/lora.ts; RL uses it). No chat template variants: one rendering, ours.
//
// Browser-safe: no Node imports.
import type { Backend } from '../backend/backend.ts';
import { builtinChatMix } from '../data/chat-synthetic.ts';
import { ConversationBatches, type ConversationBatch, type ConversationBatchesState, formatRenderSummary, renderConversations } from '../data/conversations.ts';
import { type CheckpointParts, type History, modelFromParts, optimizerTensors } from '../io/checkpoint.ts';
import type { GPT } from '../model/gpt.ts';
import { type ParamGroup, buildParamGroups, groupsStateDict, loadGroupsStateDict } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import type { Message, Rendered } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/bpe.ts';
import { UserError } from '../util/errors.ts';
import { type LoopResult, type StepInfo, runCheckpoint, runLoop, storeLoopParts } from './run.ts';
import type { RunStore } from './store.ts';
import { Trainer, languageModelLoss } from './trainer.ts';

/** Every knob of an SFT run (the CLI's flags and the page's SFT settings are views of it). */
export interface SftSpec {
  data: string; // 'builtin', or JSONL files: FILE.jsonl[:WEIGHT],... (read by the Node side)
  builtinExamples: number; // conversations in the built-in mix
  steps: number; // optimizer steps
  batchSize: number; // B: packed rows per step
  seqLen: number; // T: tokens per row (0 = the model's context - 1)
  lr: number; // peak learning rate (Muon and AdamW share it)
  optimizer: 'muon' | 'adamw';
  weightDecay: number;
  warmupSteps: number;
  warmdownFraction: number; // last fraction of steps decays linearly to 0
  gradClip: number; // clip the global grad norm (0 = off)
  evalEvery: number; // validation loss every N steps (and at the end)
  ckptEvery: number; // checkpoint every N steps (and at the end)
  valFraction: number; // conversations held out for validation
  tooLong: 'truncate' | 'skip'; // what to do with a conversation longer than a row
  seed: number;
}

/** THE SFT defaults: the spec's table. The page starts from it; the CLI's flags show it through
 *  train/sft.ts's SFT_DEFAULTS (this table plus `resume`). */
export const SFT_SPEC_DEFAULTS: SftSpec = {
  data: 'builtin',
  builtinExamples: 3000,
  steps: 200,
  batchSize: 8,
  seqLen: 0,
  lr: 2e-3,
  optimizer: 'muon',
  weightDecay: 0,
  warmupSteps: 10,
  warmdownFraction: 0.5,
  gradClip: 1,
  evalEvery: 50,
  ckptEvery: 100,
  valFraction: 0.05,
  tooLong: 'truncate',
  seed: 0,
};

/** The built-in mix's seed offset from the run's seed (the CLI's and the page's mix agree). */
const MIX_SEED = 17;

/** The built-in chat data (story QA, calculator arithmetic, identity) as conversations. */
export function builtinConversations(spec: Pick<SftSpec, 'builtinExamples' | 'seed'>): { convs: Message[][]; source: string } {
  return { convs: builtinChatMix(spec.builtinExamples, spec.seed + MIX_SEED).map((e) => e.messages), source: `builtin:${spec.builtinExamples}` };
}

export interface SftDeps {
  base: CheckpointParts; // the model to fine-tune (ignored for its weights on resume)
  baseName: string; // where the base came from, for messages and the checkpoint's spec
  convs: Message[][]; // every conversation (validation is held out here)
  source: string; // where they came from ('builtin:3000', the --data spec)
  store: RunStore;
  backend: Backend;
  log: (line: string) => void;
  resume?: CheckpointParts | null; // continue this SFT checkpoint exactly
  baseSpec?: Record<string, unknown>; // the base's pretraining spec (default: the base checkpoint's)
}

export interface SftRun {
  spec: SftSpec;
  T: number; // tokens per row (inputs)
  model: GPT;
  tokenizer: Tokenizer;
  groups: ParamGroup[];
  batches: ConversationBatches;
  val: Rendered[]; // held-out conversations, rendered
  rng: T.Rng; // the run's generator; saved in checkpoints
  trainer: Trainer<ConversationBatch>;
  dataFingerprint: string;
  conversations: number; // rendered training conversations
  truncated: number; // train + validation
  skipped: number;
  history: History;
  resumedAt: number | null;
  baseName: string;
  baseSpec: Record<string, unknown> | null; // kept in the checkpoint: the page shows the model's preset from it
  lastLoss: number;
  lastVal: number;
  trainedTokens: number; // targets that were not masked, this session (for tokens/s)
}

export async function setupSft(spec: SftSpec, deps: SftDeps): Promise<SftRun> {
  const { log, base } = deps;
  if (!(spec.valFraction >= 0 && spec.valFraction < 1)) throw new UserError(`--val-fraction must be in [0, 1), got ${spec.valFraction}`);
  const ckpt = deps.resume ?? null;
  const from = ckpt ?? base;

  // ---- model: the base (or, on resume, our own checkpoint) ----
  const model = modelFromParts(from, deps.backend, ckpt ? deps.store.where : deps.baseName);
  const tok = from.tokenizer;
  log(`model: ${(model.numParams() / 1e6).toFixed(2)}M parameters from ${ckpt ? deps.store.where : deps.baseName}, context ${model.config.maxSeqLen}`);
  const T_ = spec.seqLen || model.config.maxSeqLen - 1;
  if (T_ + 1 > model.config.maxSeqLen) throw new UserError(`--seq-len ${spec.seqLen} leaves no room: rows hold T+1 tokens and the model's context is ${model.config.maxSeqLen}`);

  // ---- conversations: hold out the first of a seeded shuffle for validation ----
  const { convs, source } = deps;
  const order = new T.Rng(spec.seed + 23).shuffle(convs.map((_, i) => i));
  const nVal = Math.min(Math.floor(convs.length * spec.valFraction), 200);
  const valConvs = order.slice(0, nVal).map((i) => convs[i]);
  const trainConvs = order.slice(nVal).map((i) => convs[i]);
  const train = renderConversations(tok, trainConvs, { maxTokens: T_ + 1, overLong: spec.tooLong });
  const val = renderConversations(tok, valConvs, { maxTokens: T_ + 1, overLong: spec.tooLong });
  if (train.rendered.length === 0) throw new UserError(`${source}: no conversation fits in a row of ${T_ + 1} tokens (all were skipped)`);
  log(`conversations from ${source}: train ${formatRenderSummary(train.summary)}; validation ${formatRenderSummary(val.summary)} (rows of ${T_ + 1} tokens, --too-long ${spec.tooLong})`);
  const dataFingerprint = `${source}|${train.rendered.length}`;

  // ---- parameter groups, batches, trainer ----
  const batches = new ConversationBatches(train.rendered, spec.batchSize, T_, spec.seed + 1);
  const schedule = { lr: spec.lr, warmupSteps: spec.warmupSteps, totalSteps: spec.steps, warmdownFraction: spec.warmdownFraction, finalFraction: 0 };
  model.setTrainable(() => true);
  const groups = buildParamGroups(model.trainableParams(), { kind: spec.optimizer, lr: spec.lr, weightDecay: spec.weightDecay, schedule });
  const trainer = new Trainer(model, groups, batches, { gradAccum: 1, gradClip: spec.gradClip });
  const rng = new T.Rng(spec.seed);
  let history: History = { train: [], val: [], samples: [] };
  if (ckpt) {
    if (ckpt.state && ckpt.state.dataFingerprint !== dataFingerprint) {
      throw new UserError(`--resume: the conversations differ from the checkpoint's (${ckpt.state.dataFingerprint} vs ${dataFingerprint}): resume with the same --data, --builtin-examples, --seq-len and --val-fraction`);
    }
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
      batches.setState(ckpt.state.loader as unknown as ConversationBatchesState);
      history = ckpt.state.history ?? history;
    }
    log(`resumed from ${deps.store.where} at step ${trainer.step}`);
  }
  const last = ckpt?.state?.metrics;
  return {
    spec, T: T_, model, tokenizer: tok, groups, batches, val: val.rendered, rng, trainer, dataFingerprint,
    conversations: train.rendered.length, truncated: train.summary.truncated + val.summary.truncated, skipped: train.summary.skipped + val.summary.skipped,
    history, resumedAt: ckpt ? trainer.step : null, baseName: deps.baseName,
    baseSpec: deps.baseSpec ?? ((ckpt?.state?.spec.pretrain ?? base.state?.spec ?? null) as Record<string, unknown> | null),
    lastLoss: last?.train_loss ?? NaN, lastVal: last?.val_loss ?? NaN, trainedTokens: 0,
  };
}

/** Mean loss per trained (assistant) token over every held-out conversation once. */
export async function validateSft(run: SftRun): Promise<number> {
  if (run.val.length === 0) return NaN;
  // one pass: batches until every held-out conversation was packed once (each row holds ≥ 1)
  const vb = new ConversationBatches(run.val, run.spec.batchSize, run.T, 0);
  let sum = 0, count = 0, seen = 0;
  while (seen < run.val.length) {
    const b = vb.next();
    seen += vb.lastBatchConversations;
    if (b.tokens === 0) continue;
    const l = await T.noGrad(() => T.tidy(() => languageModelLoss(run.model, b).item()));
    sum += l * b.tokens;
    count += b.tokens;
  }
  return sum / count;
}

/** The record of an SFT run's settings kept in its checkpoint (state.json "spec"). */
export function sftSpecRecord(run: SftRun): Record<string, unknown> {
  return { ...run.spec, stage: 'sft', init: run.baseName, ...(run.baseSpec ? { pretrain: run.baseSpec } : {}) };
}

/** The checkpoint of an SFT run as it stands. */
export function sftCheckpoint(run: SftRun): Promise<CheckpointParts> {
  return runCheckpoint({
    model: run.model, tokenizer: run.tokenizer, groups: run.groups, step: run.trainer.step, rng: run.rng,
    loaderState: run.batches.getState() as unknown as Record<string, unknown>, dataFingerprint: run.dataFingerprint,
    metrics: { train_loss: run.lastLoss, val_loss: run.lastVal }, spec: sftSpecRecord(run), history: run.history,
  });
}

export function disposeSft(run: SftRun): void {
  for (const t of Object.values(groupsStateDict(run.groups))) t.dispose();
  run.model.dispose();
}

export interface SftHooks {
  store: RunStore;
  log: (line: string) => void;
  onStep?: (s: StepInfo) => void;
  onEval?: (step: number, valLoss: number) => void;
  onSave?: (step: number) => void;
  shouldStop?: () => boolean;
  exclusive?: <R>(fn: () => Promise<R>) => Promise<R>;
  between?: () => Promise<void>;
}

/** Train a set-up SFT run to spec.steps (or until hooks.shouldStop()), through runLoop. */
export async function runSft(run: SftRun, h: SftHooks): Promise<LoopResult> {
  const s = run.spec;
  const result = await runLoop({
    trainer: run.trainer,
    // count the trained tokens: a packed row's masked share varies, so tokens/s of the loop
    // (B*T per step) would overstate what SFT learns from
    lossFn: (m, b) => {
      run.trainedTokens += b.tokens;
      return languageModelLoss(m, b);
    },
    steps: s.steps,
    tokensPerStep: s.batchSize * run.T,
    evalEvery: s.evalEvery,
    evaluate: async (step) => {
      run.lastVal = await validateSft(run);
      run.history.val.push([step, run.lastVal]);
      h.log(`step ${step}: val loss ${run.lastVal.toFixed(4)} (assistant tokens of ${run.val.length} held-out conversations)`);
      h.onEval?.(step, run.lastVal);
      return { val_loss: run.lastVal };
    },
    sampleEvery: 0,
    ckptEvery: s.ckptEvery,
    ...storeLoopParts(run, h, () => sftCheckpoint(run), `Try a lower --lr (now ${s.lr}).`),
  });
  if (Number.isNaN(run.lastVal)) run.lastVal = await (h.exclusive ?? ((fn) => fn()))(() => validateSft(run));
  return result;
}
