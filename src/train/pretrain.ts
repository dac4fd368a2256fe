// Pretraining: next-token prediction on a stream of documents.
//
//   minichat pretrain --preset tiny --data synthetic --out runs/tiny
//
// One run, start to finish:
//   1. documents: the built-in synthetic corpus, or a .txt/.jsonl/.parquet file or directory;
//   2. tokenizer: loaded with --tokenizer, or trained on the documents and kept in the run;
//   3. tokens: one BOS per document; whole documents held out for validation;
//   4. model from a preset, optimizer (Muon + AdamW, or AdamW alone), LR schedule;
//   5. the loop: gradient accumulation, optional clipping, a progress line, metrics.jsonl,
//      validation loss and bits per byte, samples, checkpoints; --resume continues exactly;
//      a NaN/inf loss stops the run and keeps the last good checkpoint.
//
// Simplifications, on purpose: the whole token stream is held in memory (fine up to a few
// hundred million tokens); batches are random windows that may cross document boundaries
// (the BOS token marks them, as in GPT-2 and nanochat); no dropout.
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { generateSyntheticCorpus } from '../data/synthetic.ts';
import { type Backend } from '../backend/backend.ts';
import { generate } from '../model/engine.ts';
import { GPT, countParams, presetConfig } from '../model/gpt.ts';
import { buildParamGroups, groupsStateDict, loadGroupsStateDict } from '../optim/index.ts';
import { evaluate, tokenByteLengths, unigramLoss } from '../eval/loss.ts';
import * as T from '../tensor/index.ts';
import { Tokenizer, trainTokenizer } from '../tokenizer/index.ts';
import { UserError } from '../util/errors.ts';
import { type TrainState, findCheckpoint, loadCheckpoint, saveCheckpoint, tokenizerFingerprint } from '../io/checkpoint.ts';
import { readAllDocuments } from '../data/documents.ts';
import { BatchLoader, type TokenArray } from '../data/loader.ts';
import { DivergedError, Trainer, languageModelLoss } from './trainer.ts';
import { tokenizeDocuments } from '../data/shards.ts';

export interface PretrainOptions {
  preset: string; // model preset (see PRESETS in model/gpt.ts)
  data: string; // 'synthetic' or a file/directory of .txt/.jsonl/.parquet
  textField: string; // JSONL/parquet field holding the text
  maxChars: number; // read at most this many characters of data (0 = all)
  syntheticStories: number; // size of the built-in corpus
  out: string; // the run directory
  tokenizer?: string; // an existing tokenizer directory; else one is trained
  vocabSize: number; // vocabulary for a trained tokenizer (0 = the preset's)
  steps: number; // optimizer steps in total (a resumed run counts from its checkpoint)
  batchSize: number; // B: sequences per micro-batch
  seqLen: number; // T: tokens per sequence
  gradAccum: number; // micro-batches per optimizer step
  lr: number; // peak learning rate (Muon and AdamW share it: Moonlight scaling)
  optimizer: 'muon' | 'adamw';
  qkNorm?: boolean; // override the preset's QK-norm
  weightDecay: number;
  warmupSteps: number;
  warmdownFraction: number; // last fraction of steps decays linearly to 0
  gradClip: number; // clip the global grad norm to this (0 = off)
  evalEvery: number; // validate every N steps (and at the end)
  evalBatches: number; // batches per validation
  sampleEvery: number; // print a sample every N steps (0 = only at the end)
  sampleTokens: number;
  ckptEvery: number; // checkpoint every N steps (and at the end)
  backend: Backend; // where tensors live
  seed: number;
  resume: boolean;
  valFraction: number;
}

export const PRETRAIN_DEFAULTS: Omit<PretrainOptions, 'out' | 'backend'> = {
  preset: 'tiny',
  data: 'synthetic',
  textField: 'text',
  maxChars: 0,
  syntheticStories: 2500,
  vocabSize: 0,
  steps: 300,
  batchSize: 8,
  seqLen: 128,
  gradAccum: 1,
  lr: 3e-3,
  optimizer: 'muon',
  weightDecay: 0,
  warmupSteps: 10,
  warmdownFraction: 0.3,
  gradClip: 1,
  evalEvery: 100,
  evalBatches: 8,
  sampleEvery: 0,
  sampleTokens: 64,
  ckptEvery: 100,
  seed: 0,
  resume: false,
  valFraction: 0.05,
};

export interface StepInfo {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  etaSeconds: number;
}

export interface PretrainHooks {
  log(line: string): void; // a line for humans
  progress?(s: StepInfo): void; // every step (the CLI draws a progress line)
}

export interface PretrainResult {
  steps: number;
  params: number;
  train_loss: number;
  val_loss: number;
  val_bpb: number;
  unigram_loss: number; // loss of predicting every token by its training frequency
  tokens_per_second: number;
  seconds: number;
  run_dir: string;
  samples: string[];
  losses: number[]; // training loss of every step this invocation ran
}

/** Documents for a run: the built-in corpus or a file/directory (shared with experiment.ts). */
export async function loadDocuments(
  o: Pick<PretrainOptions, 'data' | 'syntheticStories' | 'textField' | 'maxChars'>,
): Promise<{ docs: string[]; source: string }> {
  if (o.data === 'synthetic') {
    return { docs: generateSyntheticCorpus({ stories: o.syntheticStories, seed: 1234 }), source: `synthetic:${o.syntheticStories}` };
  }
  if (!existsSync(o.data)) throw new UserError(`--data ${o.data}: no such file or directory (or use --data synthetic)`);
  const docs = await readAllDocuments(o.data, { textField: o.textField, maxChars: o.maxChars || undefined });
  return { docs, source: o.data };
}

function dataFingerprint(source: string, train: TokenArray): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < train.length; i += Math.max(1, Math.floor(train.length / 4096))) h = Math.imul(h ^ train[i], 0x01000193) >>> 0;
  return `${source}|${train.length}|${h.toString(16)}`;
}

export async function pretrain(o: PretrainOptions, hooks: PretrainHooks): Promise<PretrainResult> {
  const t0 = performance.now();
  const log = hooks.log;
  await mkdir(o.out, { recursive: true });
  const ckptDir = join(o.out, 'checkpoint');
  const resumeFrom = o.resume ? findCheckpoint(ckptDir) : null;
  if (o.resume && !resumeFrom) throw new UserError(`--resume: no checkpoint in ${o.out} (expected ${ckptDir})`);
  if (!o.resume && findCheckpoint(ckptDir)) {
    throw new UserError(`${o.out} already holds a checkpoint: pass --resume to continue it, or choose another --out`);
  }

  // ---- model config, tokenizer, and (on resume) the saved state ----
  const qk = o.qkNorm === undefined ? {} : { qkNorm: o.qkNorm };
  let loaded = resumeFrom ? await loadCheckpoint(resumeFrom, { backend: o.backend, withOptimizer: true }) : null;
  let tok: Tokenizer;
  const { docs, source } = await loadDocuments(o);
  log(`data: ${docs.length} documents from ${source}`);
  if (loaded) {
    tok = loaded.tokenizer;
    const want = presetConfig(o.preset, { ...qk, vocabSize: loaded.config.vocabSize, maxSeqLen: loaded.config.maxSeqLen });
    if (JSON.stringify(want) !== JSON.stringify(loaded.config)) {
      throw new UserError(`--resume: the checkpoint in ${resumeFrom} was made with another model config than --preset ${o.preset}${o.qkNorm === false ? ' --no-qk-norm' : ''}`);
    }
  } else if (o.tokenizer) {
    tok = await Tokenizer.load(o.tokenizer);
    log(`tokenizer: ${o.tokenizer} (${tok.vocabSize} tokens)`);
  } else {
    const vocab = o.vocabSize || presetConfig(o.preset).vocabSize;
    const tt = performance.now();
    tok = await trainTokenizer(docs, { vocabSize: vocab });
    await tok.save(join(o.out, 'tokenizer'));
    log(`tokenizer: trained ${tok.vocabSize} tokens on the data in ${((performance.now() - tt) / 1000).toFixed(1)}s -> ${join(o.out, 'tokenizer')}`);
  }

  const corpus = tokenizeDocuments(docs, tok, { valFraction: o.valFraction });
  const fp = dataFingerprint(source, corpus.train);
  if (loaded?.state && loaded.state.dataFingerprint !== fp) {
    throw new UserError(`--resume: the data differs from the checkpoint's (${loaded.state.dataFingerprint} vs ${fp}); resume with the same --data and options`);
  }
  log(`tokens: ${corpus.train.length} train (${corpus.trainDocuments} docs), ${corpus.val.length} validation (${corpus.valDocuments} docs)`);

  const config = loaded?.config ?? presetConfig(o.preset, { ...qk, vocabSize: tok.vocabSize, maxSeqLen: Math.max(o.seqLen, presetConfig(o.preset).maxSeqLen) });
  if (o.seqLen > config.maxSeqLen) throw new UserError(`--seq-len ${o.seqLen} exceeds the model's context of ${config.maxSeqLen} tokens`);
  const rng = new T.Rng(o.seed);
  const model = loaded?.model ?? new GPT(config, rng, o.backend);
  const nParams = model.numParams();
  log(`model: ${o.preset}, ${(nParams / 1e6).toFixed(2)}M parameters (${countParams(config)}), QK-norm ${config.qkNorm ? 'on' : 'off'}, ${config.mlp}, backend ${o.backend.name}`);

  const schedule = { lr: o.lr, warmupSteps: o.warmupSteps, totalSteps: o.steps, warmdownFraction: o.warmdownFraction, finalFraction: 0 };
  const groups = buildParamGroups(model.trainableParams(), { kind: o.optimizer, lr: o.lr, weightDecay: o.weightDecay, schedule });
  const groupSize = (n: string) => groups.find((g) => g.name === n)?.params.length ?? 0;
  const loader = new BatchLoader(corpus.train, o.batchSize, o.seqLen, o.seed + 1);
  let step = 0;
  if (loaded) {
    if (loaded.optimizerState) {
      await loadGroupsStateDict(groups, loaded.optimizerState);
      Object.values(loaded.optimizerState).forEach((t) => t.dispose());
    }
    if (loaded.state) {
      step = loaded.state.step;
      rng.setState(loaded.state.rng);
      loader.setState(loaded.state.loader);
    }
    log(`resumed from ${resumeFrom} at step ${step}`);
  }
  loaded = null;
  log(`optimizer: ${o.optimizer === 'muon' ? `Muon on ${groupSize('muon')} matrices + AdamW on ${groupSize('adamw')}` : `AdamW on ${groupSize('adamw')} tensors`}, lr ${o.lr}, ${o.steps} steps of ${o.batchSize}x${o.seqLen}x${o.gradAccum} tokens`);

  const bytesPerToken = tokenByteLengths(tok);
  const unigram = unigramLoss(corpus.train, corpus.val, tok.vocabSize);
  const metricsPath = join(o.out, 'metrics.jsonl');
  const metric = (m: Record<string, unknown>) => appendFile(metricsPath, JSON.stringify(m) + '\n');
  await writeFile(join(o.out, 'options.json'), JSON.stringify({ ...o, backend: o.backend.name }, null, 2) + '\n');

  let lastLoss = NaN, lastVal = { loss: NaN, bpb: NaN, tokens: 0 };
  let lastGoodStep = step; // the step of the newest checkpoint on disk
  const samples: string[] = [];
  const losses: number[] = [];
  const tokensPerStep = o.batchSize * o.seqLen * o.gradAccum;
  let trainSeconds = 0, trainedSteps = 0;

  const save = async () => {
    await saveCheckpoint(ckptDir, {
      model,
      optimizerState: groupsStateDict(groups),
      tokenizer: tok,
      state: {
        step, rng: rng.getState(), loader: loader.getState(), tokenizerFingerprint: tokenizerFingerprint(tok),
        dataFingerprint: fp, metrics: { train_loss: lastLoss, val_loss: lastVal.loss, val_bpb: lastVal.bpb },
        options: { ...o, backend: o.backend.name },
      } satisfies TrainState,
    });
    lastGoodStep = step;
  };
  const sample = async () => {
    const ids = await generate(model, [tok.bosId], {
      maxTokens: o.sampleTokens, temperature: 0.8, topK: 40, rng: new T.Rng(o.seed * 1000 + step), stopAt: [tok.bosId],
      suppress: Object.values(tok.specials).filter((id) => id !== tok.bosId),
    });
    const text = tok.decode(ids);
    samples.push(text);
    log(`sample @ step ${step}: ${JSON.stringify(text)}`);
    await metric({ step, sample: text });
  };
  const validate = async () => {
    lastVal = await evaluate(model, corpus.val, o.batchSize, o.seqLen, o.evalBatches, bytesPerToken);
    log(`step ${step}: val loss ${lastVal.loss.toFixed(4)} (unigram ${unigram.toFixed(3)}), val bpb ${lastVal.bpb.toFixed(4)}`);
    await metric({ step, val_loss: lastVal.loss, val_bpb: lastVal.bpb });
  };

  const trainer = new Trainer(model, groups, loader, { gradAccum: o.gradAccum, gradClip: o.gradClip });
  trainer.step = step;
  while (step < o.steps) {
    let r;
    try {
      r = await trainer.trainStep(languageModelLoss);
    } catch (e) {
      if (!(e instanceof DivergedError)) throw e;
      const kept = findCheckpoint(ckptDir);
      throw new UserError(
        `${e.message}. ` +
          (kept ? `The last good checkpoint (step ${lastGoodStep}) is kept in ${kept}. ` : 'No checkpoint was written yet. ') +
          `Try a lower --lr (now ${o.lr}) or --grad-clip.`,
      );
    }
    const { loss, lr } = r;
    step = r.step;
    lastLoss = loss;
    losses.push(loss);
    trainSeconds += r.seconds;
    trainedSteps++;
    const tps = (trainedSteps * tokensPerStep) / trainSeconds;
    hooks.progress?.({ step, steps: o.steps, loss, lr, tokensPerSecond: tps, etaSeconds: ((o.steps - step) * trainSeconds) / trainedSteps });
    await metric({ step, loss, lr, tokens_per_second: Math.round(tps), seconds: (performance.now() - t0) / 1000 });
    const last = step === o.steps;
    if (step % o.evalEvery === 0 || last) await validate();
    if ((o.sampleEvery > 0 && step % o.sampleEvery === 0) || last) await sample();
    if (step % o.ckptEvery === 0 || last) await save();
  }
  if (Number.isNaN(lastVal.loss)) await validate(); // resumed at the end: still report

  const result: PretrainResult = {
    steps: step,
    params: nParams,
    train_loss: lastLoss,
    val_loss: lastVal.loss,
    val_bpb: lastVal.bpb,
    unigram_loss: unigram,
    tokens_per_second: trainedSteps ? (trainedSteps * tokensPerStep) / trainSeconds : 0,
    seconds: (performance.now() - t0) / 1000,
    run_dir: o.out,
    samples,
    losses,
  };
  model.dispose();
  return result;
}
