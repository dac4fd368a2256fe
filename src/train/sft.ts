// Supervised fine-tuning: from a base model that continues text to a chat model that answers.
//
//   minichat sft --init runs/base --data builtin --out runs/sft
//
// One run:
//   1. the base checkpoint (model + tokenizer) from --init;
//   2. conversations: the built-in mix (story questions, calculator arithmetic, identity;
//      generated offline from a seed) or JSONL files `FILE.jsonl[:WEIGHT],...`
//      (src/data/conversations.ts); rendered with the chat specials, the loss mask set on
//      the assistant's tokens only (tokenizer/chat.ts); a few held out for validation;
//   3. rows of T+1 tokens packed with whole conversations (data/conversations.ts explains
//      packing vs padding), targets set to −1 wherever the mask is 0, so
//      languageModelLoss trains on assistant tokens only;
//   4. the same Trainer as pretraining (Muon + AdamW over every parameter by default), a
//      progress line, metrics.jsonl, validation loss, checkpoints and exact --resume, a
//      non-finite loss stopping the run with the last good checkpoint kept.
// Simplification: full-parameter SFT (LoRA SFT is a one-line change in the groups, see
// src/model/lora.ts; RL uses it). No chat template variants: one rendering, ours.
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ChatExample, builtinChatMix } from '../data/chat-synthetic.ts';
import { ConversationBatches, type ConversationBatch, formatRenderSummary, loadConversationMix, renderConversations } from '../data/conversations.ts';
import { type TrainState, findCheckpoint, loadCheckpoint, saveCheckpoint, tokenizerFingerprint } from '../io/checkpoint.ts';
import type { Backend } from '../backend/backend.ts';
import { buildParamGroups, groupsStateDict, loadGroupsStateDict } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import type { Message } from '../tokenizer/chat.ts';
import { UserError } from '../util/errors.ts';
import { DivergedError, Trainer, languageModelLoss } from './trainer.ts';

export interface SftOptions {
  init: string; // the base model: a checkpoint or run directory
  data: string; // 'builtin', or JSONL files: FILE.jsonl[:WEIGHT],...
  builtinExamples: number; // conversations in the built-in mix
  out: string; // the run directory
  steps: number; // optimizer steps
  batchSize: number; // B: packed rows per step
  seqLen: number; // T: tokens per row (0 = the model's context)
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
  resume: boolean;
  backend: Backend;
}

export const SFT_DEFAULTS: Omit<SftOptions, 'init' | 'out' | 'backend'> = {
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
  resume: false,
};

export interface SftStepInfo { step: number; steps: number; loss: number; lr: number; tokensPerSecond: number; etaSeconds: number }

export interface SftResult {
  steps: number;
  conversations: number; // used for training
  truncated: number;
  skipped: number;
  train_loss: number;
  val_loss: number;
  tokens_per_second: number; // trained (unmasked) tokens per second
  seconds: number;
  run_dir: string;
  losses: number[];
}

export async function sft(o: SftOptions, hooks: { log(line: string): void; progress?(s: SftStepInfo): void }): Promise<SftResult> {
  const t0 = performance.now();
  const log = hooks.log;
  if (!(o.valFraction >= 0 && o.valFraction < 1)) throw new UserError(`--val-fraction must be in [0, 1), got ${o.valFraction}`);
  await mkdir(o.out, { recursive: true });
  const ckptDir = join(o.out, 'checkpoint');
  const resumeFrom = o.resume ? await findCheckpoint(ckptDir) : null;
  if (o.resume && !resumeFrom) throw new UserError(`--resume: no checkpoint in ${o.out} (expected ${ckptDir})`);
  if (!o.resume && (await findCheckpoint(ckptDir))) throw new UserError(`${o.out} already holds a checkpoint: pass --resume to continue it, or choose another --out`);

  // ---- model: the base (or, on resume, our own checkpoint) ----
  const loaded = await loadCheckpoint(resumeFrom ?? o.init, { backend: o.backend, withOptimizer: !!resumeFrom });
  const { model, tokenizer: tok } = loaded;
  log(`model: ${(model.numParams() / 1e6).toFixed(2)}M parameters from ${resumeFrom ?? o.init}, context ${model.config.maxSeqLen}`);
  const T_ = o.seqLen || model.config.maxSeqLen - 1;
  if (T_ + 1 > model.config.maxSeqLen) throw new UserError(`--seq-len ${o.seqLen} leaves no room: rows hold T+1 tokens and the model's context is ${model.config.maxSeqLen}`);

  // ---- conversations ----
  let convs: Message[][];
  let source: string;
  if (o.data === 'builtin') {
    convs = builtinChatMix(o.builtinExamples, o.seed + 17).map((e: ChatExample) => e.messages);
    source = `builtin:${o.builtinExamples}`;
  } else {
    convs = await loadConversationMix(o.data, o.seed + 17);
    source = o.data;
  }
  // hold out the last conversations of a seeded shuffle for validation
  const order = new T.Rng(o.seed + 23).shuffle(convs.map((_, i) => i));
  const nVal = Math.min(Math.floor(convs.length * o.valFraction), 200);
  const valConvs = order.slice(0, nVal).map((i) => convs[i]);
  const trainConvs = order.slice(nVal).map((i) => convs[i]);
  const train = renderConversations(tok, trainConvs, { maxTokens: T_ + 1, overLong: o.tooLong });
  const val = renderConversations(tok, valConvs, { maxTokens: T_ + 1, overLong: o.tooLong });
  if (train.rendered.length === 0) throw new UserError(`${source}: no conversation fits in a row of ${T_ + 1} tokens (all were skipped)`);
  log(`conversations from ${source}: train ${formatRenderSummary(train.summary)}; validation ${formatRenderSummary(val.summary)} (rows of ${T_ + 1} tokens, --too-long ${o.tooLong})`);

  const batches = new ConversationBatches(train.rendered, o.batchSize, T_, o.seed + 1);
  const schedule = { lr: o.lr, warmupSteps: o.warmupSteps, totalSteps: o.steps, warmdownFraction: o.warmdownFraction, finalFraction: 0 };
  model.setTrainable(() => true);
  const groups = buildParamGroups(model.trainableParams(), { kind: o.optimizer, lr: o.lr, weightDecay: o.weightDecay, schedule });
  const rng = new T.Rng(o.seed);
  let step = 0;
  if (resumeFrom) {
    if (loaded.optimizerState) {
      await loadGroupsStateDict(groups, loaded.optimizerState);
      Object.values(loaded.optimizerState).forEach((t) => t.dispose());
    }
    if (loaded.state) {
      step = loaded.state.step;
      rng.setState(loaded.state.rng);
      batches.setState(loaded.state.loader as never);
    }
    log(`resumed from ${resumeFrom} at step ${step}`);
  }

  const metricsPath = join(o.out, 'metrics.jsonl');
  const metric = (m: Record<string, unknown>) => appendFile(metricsPath, JSON.stringify(m) + '\n');
  const optionsRecord = { ...o, backend: o.backend.name, stage: 'sft' };
  await writeFile(join(o.out, 'options.json'), JSON.stringify(optionsRecord, null, 2) + '\n');

  // validation: every held-out conversation once, packed the same way, mean loss per trained token
  const validate = async (): Promise<number> => {
    if (val.rendered.length === 0) return NaN;
    // one pass: enough batches to hold every held-out conversation once (each row holds ≥ 1)
    const vb = new ConversationBatches(val.rendered, o.batchSize, T_, 0);
    let sum = 0, count = 0, seen = 0;
    while (seen < val.rendered.length) {
      const b = vb.next();
      seen += vb.lastBatchConversations;
      const n = b.tokens;
      if (n === 0) continue;
      const l = await T.noGrad(() => T.tidy(() => languageModelLoss(model, b).item()));
      sum += l * n;
      count += n;
    }
    return sum / count;
  };

  let lastLoss = NaN, lastVal = NaN, lastGoodStep = step;
  const losses: number[] = [];
  const save = async () => {
    await saveCheckpoint(ckptDir, {
      model, optimizerState: groupsStateDict(groups), tokenizer: tok,
      state: {
        step, rng: rng.getState(), loader: batches.getState() as never, tokenizerFingerprint: tokenizerFingerprint(tok),
        dataFingerprint: `${source}|${train.rendered.length}`, metrics: { train_loss: lastLoss, val_loss: lastVal }, spec: optionsRecord,
      } satisfies TrainState,
    });
    lastGoodStep = step;
  };

  const trainer = new Trainer(model, groups, batches, { gradAccum: 1, gradClip: o.gradClip });
  trainer.step = step;
  let trainSeconds = 0, trainedSteps = 0, trainedTokens = 0;
  while (step < o.steps) {
    let r;
    try {
      r = await trainer.trainStep((m, b) => {
        trainedTokens += b.tokens;
        return languageModelLoss(m, b);
      });
    } catch (e) {
      if (!(e instanceof DivergedError)) throw e;
      throw new UserError(`${e.message}. ${(await findCheckpoint(ckptDir)) ? `The last good checkpoint (step ${lastGoodStep}) is kept in ${ckptDir}. ` : 'No checkpoint was written yet. '}Try a lower --lr (now ${o.lr}).`);
    }
    step = r.step;
    lastLoss = r.loss;
    losses.push(r.loss);
    trainSeconds += r.seconds;
    trainedSteps++;
    const tps = trainedTokens / trainSeconds;
    hooks.progress?.({ step, steps: o.steps, loss: r.loss, lr: r.lr, tokensPerSecond: tps, etaSeconds: ((o.steps - step) * trainSeconds) / trainedSteps });
    await metric({ step, loss: r.loss, lr: r.lr, trained_tokens_per_second: Math.round(tps), seconds: (performance.now() - t0) / 1000 });
    const last = step === o.steps;
    if (step % o.evalEvery === 0 || last) {
      lastVal = await validate();
      log(`step ${step}: val loss ${lastVal.toFixed(4)} (assistant tokens of ${val.rendered.length} held-out conversations)`);
      await metric({ step, val_loss: lastVal });
    }
    if (step % o.ckptEvery === 0 || last) await save();
  }
  if (Number.isNaN(lastVal)) lastVal = await validate();
  const result: SftResult = {
    steps: step, conversations: train.rendered.length, truncated: train.summary.truncated + val.summary.truncated, skipped: train.summary.skipped + val.summary.skipped,
    train_loss: lastLoss, val_loss: lastVal, tokens_per_second: trainedSteps ? trainedTokens / trainSeconds : 0,
    seconds: (performance.now() - t0) / 1000, run_dir: o.out, losses,
  };
  await writeFile(join(o.out, 'summary.json'), JSON.stringify({ stage: 'sft', seconds: result.seconds, metrics: { steps: step, train_loss: lastLoss, val_loss: lastVal, conversations: result.conversations } }, null, 2) + '\n');
  model.dispose();
  return result;
}
