// The checkpoint: ONE format, in two containers, for the CLI and the page alike.
//
// What a checkpoint holds (CheckpointParts): the model config, the tokenizer, every parameter
// under its Hugging Face name, the optimizer state, and the training state (step, the run's
// RNG, the data loader's position, fingerprints of the tokenizer and the data, the run spec,
// the last metrics and the loss history). Everything needed to generate, or to continue
// training bit for bit.
//
// A directory (what `minichat pretrain` writes):
//
//   config.json                 the model config (ours under "minichat", plus Qwen3's keys)
//   model.safetensors           parameters under their Hugging Face names
//   adapters.safetensors        parameters whose role is 'adapter' (LoRA), when there are any
//   optimizer.safetensors       optimizer state (moments, momentum buffers, step counts)
//   tokenizer/tokenizer.tiktoken, tokenizer/tokenizer.json   the tokenizer (see src/tokenizer/files.ts)
//   state.json                  step, RNG and loader state, fingerprints, spec, metrics, history
//
// One file (what the page downloads, and `minichat export --format file` writes): a single
// .safetensors whose tensors are model.safetensors' under the same names, plus
// "adapters/<name>" and "optimizer/<name>", and whose string metadata holds the directory's
// text files under their paths ("config.json", "tokenizer/tokenizer.json", ...) and
// format = "minichat-checkpoint/1". Same names, same JSON, so either form converts to the other
// losslessly, and `loadCheckpoint` accepts both. Tools that read model.safetensors read it too.
//
// Which file a parameter goes to is decided by its role (GPT.namedParams), never its name.
//
// Writing a directory replaces the previous checkpoint atomically: write checkpoint.tmp, move
// checkpoint -> checkpoint.old, move checkpoint.tmp -> checkpoint, delete checkpoint.old. If
// the process dies between the two moves, loading falls back to checkpoint.old.
//
// Browser-safe: the encoders and decoders are pure; the directory functions import Node's fs
// lazily (the page never calls them).
import { type GPTConfig, GPT, validateConfig } from '../model/gpt.ts';
import { adapterState, loadAdapters, type LoraConfig } from '../model/lora.ts';
import type { RngState } from '../tensor/random.ts';
import * as T from '../tensor/index.ts';
import { Tokenizer } from '../tokenizer/bpe.ts';
import { UserError } from '../util/errors.ts';
import { type SafeTensor, decodeSafetensors, encodeSafetensors, fromTensors, toTensors } from './safetensors.ts';
import type { LoaderState } from '../data/loader.ts';

export const CHECKPOINT_FORMAT = 'minichat-checkpoint/1';

/** The loss curve and samples so far (the page redraws its chart from it after a load). */
export interface History {
  train: [number, number][]; // [step, train loss]
  val: [number, number][]; // [step, val loss]
  samples: { step: number; text: string }[];
}

export interface TrainState {
  step: number; // optimizer steps completed
  rng: RngState; // the run's generator (after `step` steps)
  loader: LoaderState | Record<string, unknown>; // the batch source's position (pretraining: the BatchLoader's)
  tokenizerFingerprint: string; // tokenizerFingerprint() of the tokenizer in the checkpoint
  dataFingerprint: string; // what the token stream was (resume checks it)
  metrics: Record<string, number>; // last train/val numbers, for reports
  spec: Record<string, unknown>; // the run spec (src/train/spec.ts) it was trained with
  history?: History; // every step's loss, validations and samples
}

export interface CheckpointParts {
  config: GPTConfig;
  tokenizer: Tokenizer;
  weights: Record<string, SafeTensor>; // every non-adapter parameter, by HF name
  adapters: Record<string, SafeTensor>; // parameters with role 'adapter' (empty without LoRA)
  adapterConfig: LoraConfig | null; // how the adapters attach (adapter_config.json); null without LoRA
  optimizer: Record<string, SafeTensor> | null; // optimizer state dict (null: weights only)
  state: TrainState | null; // null: an inference-only checkpoint
}

/** A short stable hash of a tokenizer's ranks, pattern and specials (FNV-1a, 64-bit as hex). */
export function tokenizerFingerprint(tok: Tokenizer): string {
  let h1 = 0x811c9dc5, h2 = 0xcbf29ce4;
  const feed = (s: string) => {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
      h2 = Math.imul(h2 ^ c, 0x01000193 ^ 0x5bd1e995) >>> 0;
    }
  };
  feed(tok.pattern);
  feed(JSON.stringify(Object.entries(tok.specials).sort()));
  for (const [bytes, rank] of tok.encoder) feed(`${rank}:${bytes};`);
  return h1.toString(16).padStart(8, '0') + h2.toString(16).padStart(8, '0');
}

/** config.json: our config under `minichat`, plus the Hugging Face Qwen3 keys. */
export function configJson(c: GPTConfig): Record<string, unknown> {
  return {
    ...qwen3Config(c),
    minichat: c,
  };
}

/** The Qwen3ForCausalLM config keys for a model config. */
export function qwen3Config(c: GPTConfig): Record<string, unknown> {
  return {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKVHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: c.tieEmbeddings,
    attention_bias: false,
    attention_dropout: 0.0,
    use_sliding_window: false,
    sliding_window: null,
    max_window_layers: c.numLayers,
    torch_dtype: 'float32',
    use_cache: true,
  };
}

// ---------------------------------------------------------------------------------------
// parts <-> model
// ---------------------------------------------------------------------------------------

/** Read a model (and optimizer state) back to the host as checkpoint parts. */
export async function checkpointParts(
  model: GPT, tokenizer: Tokenizer, optimizerState: Record<string, T.Tensor> | null, state: TrainState | null,
): Promise<CheckpointParts> {
  const weights: Record<string, T.Tensor> = {}, adapters: Record<string, T.Tensor> = {};
  for (const p of model.namedParams()) (p.role === 'adapter' ? adapters : weights)[p.name] = p.param;
  return {
    config: model.config, tokenizer,
    weights: await fromTensors(weights), adapters: await fromTensors(adapters),
    adapterConfig: model.adapter ? adapterState(model).config : null,
    optimizer: optimizerState ? await fromTensors(optimizerState) : null,
    state,
  };
}

/** A model with the checkpoint's weights on `backend`. */
export function modelFromParts(p: CheckpointParts, backend?: T.Tensor['backend'], where = 'checkpoint'): GPT {
  const model = T.noGrad(() => new GPT(p.config, new T.Rng(0), backend));
  model.loadWeights(new Map(Object.entries(p.weights)), where);
  if (Object.keys(p.adapters).length) {
    if (!p.adapterConfig) throw new UserError(`${where}: has adapter tensors but no adapter_config.json`);
    loadAdapters(model, p.adapterConfig, new Map(Object.entries(p.adapters)), where);
  }
  return model;
}

/** The optimizer state as tensors (the caller disposes them once loaded). */
export function optimizerTensors(p: CheckpointParts, backend?: T.Tensor['backend']): Record<string, T.Tensor> | null {
  return p.optimizer && Object.keys(p.optimizer).length ? toTensors(p.optimizer, backend) : null;
}

// ---------------------------------------------------------------------------------------
// the text files and tensor files, shared by both containers
// ---------------------------------------------------------------------------------------

const TOK_RANKS = 'tokenizer/tokenizer.tiktoken', TOK_META = 'tokenizer/tokenizer.json';
/** Tensor files of the directory form; in the one-file form, their tensors carry the prefix. */
const TENSOR_FILES = { model: 'model.safetensors', adapters: 'adapters.safetensors', optimizer: 'optimizer.safetensors' } as const;
const PREFIX = { adapters: 'adapters/', optimizer: 'optimizer/' } as const;

/** The directory's text files: path → contents. */
export function checkpointTextFiles(p: CheckpointParts): Record<string, string> {
  const files: Record<string, string> = {
    'config.json': JSON.stringify(configJson(p.config), null, 2) + '\n',
    [TOK_RANKS]: p.tokenizer.toTiktokenRanks(),
    // the same bytes Tokenizer.save writes (src/tokenizer/files.ts), so the directory is a tokenizer directory
    [TOK_META]: JSON.stringify({ pattern: p.tokenizer.pattern, specials: p.tokenizer.specials }, null, 2) + '\n',
  };
  if (p.state) files['state.json'] = JSON.stringify(p.state, null, 2) + '\n';
  if (p.adapterConfig) files['adapter_config.json'] = JSON.stringify(p.adapterConfig, null, 2) + '\n';
  return files;
}

/** Rebuild the parts from text files and tensors; every problem names `where`. */
function partsFrom(
  text: (path: string) => string | undefined,
  tensors: { model: Record<string, SafeTensor>; adapters: Record<string, SafeTensor>; optimizer: Record<string, SafeTensor> | null },
  where: string,
): CheckpointParts {
  const json = (path: string, required: boolean) => {
    const t = text(path);
    if (t === undefined) {
      if (required) throw new UserError(`${where}: no ${path} (is this a minichat checkpoint?)`);
      return undefined;
    }
    try {
      return JSON.parse(t);
    } catch (e) {
      throw new UserError(`${where}: ${path} is not valid JSON (${(e as Error).message})`);
    }
  };
  const cfg = json('config.json', true);
  if (!cfg.minichat) throw new UserError(`${where}: config.json is not a minichat config (no "minichat" section)`);
  const config = validateConfig(cfg.minichat as GPTConfig);
  const ranksText = text(TOK_RANKS);
  if (ranksText === undefined) throw new UserError(`${where}: no ${TOK_RANKS} (the checkpoint has no tokenizer)`);
  const ranks = new Map<string, number>();
  for (const line of ranksText.split('\n')) {
    if (!line.trim()) continue;
    const [b64, rank] = line.split(' ');
    ranks.set(b64, Number(rank));
  }
  const meta = (json(TOK_META, false) ?? {}) as { pattern?: string; specials?: Record<string, number> };
  const tokenizer = Tokenizer.fromRanks(ranks, meta.pattern, meta.specials ?? {});
  const raw = json('state.json', false) as (TrainState & { options?: Record<string, unknown> }) | undefined;
  // checkpoints written before the run spec existed call it "options"
  const state = raw ? { ...raw, spec: raw.spec ?? raw.options ?? {} } : null;
  if (state) delete (state as { options?: unknown }).options;
  const adapterConfig = (json('adapter_config.json', false) as LoraConfig | undefined) ?? null;
  return { config, tokenizer, weights: tensors.model, adapters: tensors.adapters, adapterConfig, optimizer: tensors.optimizer, state };
}

// ---------------------------------------------------------------------------------------
// the one-file container
// ---------------------------------------------------------------------------------------

/** `extra`: more string metadata, such as made_by (a file's made-by mark, src/io/run-dir.ts). */
export function encodeCheckpointFile(p: CheckpointParts, extra: Record<string, string> = {}): Uint8Array {
  const tensors: Record<string, SafeTensor> = { ...p.weights };
  for (const [k, t] of Object.entries(p.adapters)) tensors[PREFIX.adapters + k] = t;
  for (const [k, t] of Object.entries(p.optimizer ?? {})) tensors[PREFIX.optimizer + k] = t;
  return encodeSafetensors(tensors, { ...extra, format: CHECKPOINT_FORMAT, ...checkpointTextFiles(p) });
}

/** Parse a one-file checkpoint; every problem is a UserError that names `where`. */
export function decodeCheckpointFile(bytes: Uint8Array, where: string): CheckpointParts {
  const { tensors, metadata } = decodeSafetensors(bytes, where); // checks the container
  if (metadata.format !== CHECKPOINT_FORMAT) {
    throw new UserError(`${where}: not a minichat checkpoint file (metadata "format" is ${JSON.stringify(metadata.format ?? null)}, expected "${CHECKPOINT_FORMAT}")`);
  }
  const model: Record<string, SafeTensor> = {}, adapters: Record<string, SafeTensor> = {}, optimizer: Record<string, SafeTensor> = {};
  let hasOptimizer = false;
  for (const [name, t] of Object.entries(tensors)) {
    const plain: SafeTensor = { dtype: t.dtype, shape: t.shape, data: t.data };
    if (name.startsWith(PREFIX.optimizer)) (optimizer[name.slice(PREFIX.optimizer.length)] = plain), (hasOptimizer = true);
    else if (name.startsWith(PREFIX.adapters)) adapters[name.slice(PREFIX.adapters.length)] = plain;
    else model[name] = plain;
  }
  return partsFrom((path) => metadata[path], { model, adapters, optimizer: hasOptimizer ? optimizer : null }, where);
}

// ---------------------------------------------------------------------------------------
// the directory container (Node; fs imported lazily)
// ---------------------------------------------------------------------------------------

/** The directory's files as bytes: path → contents (what DirStore writes). */
export function checkpointDirFiles(p: CheckpointParts): Record<string, Uint8Array | string> {
  const files: Record<string, Uint8Array | string> = { ...checkpointTextFiles(p) };
  files[TENSOR_FILES.model] = encodeSafetensors(p.weights, { format: 'pt' });
  if (Object.keys(p.adapters).length) files[TENSOR_FILES.adapters] = encodeSafetensors(p.adapters, { format: 'pt' });
  if (p.optimizer) files[TENSOR_FILES.optimizer] = encodeSafetensors(p.optimizer, {});
  return files;
}

/** Write a checkpoint directory atomically (see the header). */
export async function writeCheckpointDir(dir: string, p: CheckpointParts): Promise<void> {
  const { mkdir, rename, rm, writeFile } = await import('node:fs/promises');
  const { dirname, join } = await import('node:path');
  const { existsSync } = await import('node:fs');
  const tmp = dir + '.tmp', old = dir + '.old';
  await rm(tmp, { recursive: true, force: true });
  for (const [path, data] of Object.entries(checkpointDirFiles(p))) {
    await mkdir(dirname(join(tmp, path)), { recursive: true });
    await writeFile(join(tmp, path), data);
  }
  if (existsSync(dir)) {
    await rm(old, { recursive: true, force: true });
    await rename(dir, old);
  }
  await rename(tmp, dir);
  await rm(old, { recursive: true, force: true });
}

/** The directory holding the newest complete checkpoint at `dir` (or its .old twin), or null. */
export async function findCheckpoint(dir: string): Promise<string | null> {
  const { existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  for (const d of [dir, dir + '.old']) if (existsSync(join(d, 'config.json')) && existsSync(join(d, TENSOR_FILES.model))) return d;
  return null;
}

/** Read a checkpoint directory's parts. */
export async function readCheckpointDir(dir: string): Promise<CheckpointParts> {
  const { existsSync, readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const text = (path: string) => (existsSync(join(dir, path)) ? readFileSync(join(dir, path), 'utf8') : undefined);
  const tensorFile = (name: string): Record<string, SafeTensor> | null => {
    const path = join(dir, name);
    if (!existsSync(path)) return null;
    const { tensors } = decodeSafetensors(readFileSync(path), path);
    return Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, data: t.data }]));
  };
  return partsFrom(
    text,
    { model: tensorFile(TENSOR_FILES.model) ?? {}, adapters: tensorFile(TENSOR_FILES.adapters) ?? {}, optimizer: tensorFile(TENSOR_FILES.optimizer) },
    dir,
  );
}

/** Where notices about how a checkpoint path was resolved go (the CLI sets it to stderr; silent by default). */
export const checkpointNotices: { log: (line: string) => void } = { log: () => {} };

/**
 * The checkpoint directory a path names: a checkpoint directory, a run directory holding
 * checkpoint/, or a pipeline's root (a directory with pipeline.json, such as runs/speedrun),
 * which stands for its last stage that holds a checkpoint. Null if none.
 */
export async function findCheckpointIn(path: string): Promise<string | null> {
  const { existsSync, readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const here = (await findCheckpoint(join(path, 'checkpoint'))) ?? (await findCheckpoint(path));
  if (here || !existsSync(join(path, 'pipeline.json'))) return here;
  let stages: unknown;
  try {
    stages = JSON.parse(readFileSync(join(path, 'pipeline.json'), 'utf8')).stages;
  } catch {
    return null;
  }
  if (!Array.isArray(stages)) return null;
  for (let i = stages.length - 1; i >= 0; i--) {
    const dir = await findCheckpoint(join(path, String(stages[i]), 'checkpoint'));
    if (!dir) continue;
    const which = i === stages.length - 1 ? 'last stage' : `last stage with a checkpoint: ${stages.slice(i + 1).join(', ')} has none`;
    checkpointNotices.log(`${path} → ${join(path, String(stages[i]))} (the pipeline's ${which})`);
    return dir;
  }
  return null;
}

/**
 * Read a checkpoint in either form: a one-file checkpoint, or a directory findCheckpointIn
 * resolves. Returns the parts and the path they came from.
 */
export async function readCheckpoint(path: string): Promise<{ parts: CheckpointParts; where: string }> {
  const { existsSync, statSync, readFileSync } = await import('node:fs');
  if (existsSync(path) && statSync(path).isFile()) return { parts: decodeCheckpointFile(readFileSync(path), path), where: path };
  const dir = await findCheckpointIn(path);
  if (!dir) {
    throw new UserError(
      `${path}: no checkpoint found (expected a checkpoint .safetensors file, a directory with config.json and model.safetensors, a run directory with checkpoint/, or a pipeline such as runs/speedrun)`,
    );
  }
  return { parts: await readCheckpointDir(dir), where: dir };
}

/** The tensors of one .safetensors file by name (tests and tools). Node-only. */
export async function readSafetensorsTensors(path: string): Promise<Map<string, { shape: number[]; data: Float32Array | Int32Array }>> {
  const { readFileSync } = await import('node:fs');
  const { tensors } = decodeSafetensors(readFileSync(path), path);
  return new Map(Object.entries(tensors).map(([k, v]) => [k, { shape: v.shape, data: v.data }]));
}

export interface LoadedCheckpoint {
  dir: string; // where it was read from (a directory or a file)
  config: GPTConfig;
  model: GPT;
  tokenizer: Tokenizer;
  state: TrainState | null;
  /** optimizer state tensors (caller disposes after loading them into an optimizer) */
  optimizerState: Record<string, T.Tensor> | null;
}

/**
 * Load a checkpoint (either form; see readCheckpoint). With `tokenizerDir`, that tokenizer is
 * used instead of the checkpoint's own, and must match the model's vocabulary.
 */
export async function loadCheckpoint(
  path: string,
  opts: { backend?: T.Tensor['backend']; tokenizerDir?: string; withOptimizer?: boolean } = {},
): Promise<LoadedCheckpoint> {
  const { parts, where } = await readCheckpoint(path);
  let tokenizer = parts.tokenizer;
  if (opts.tokenizerDir) {
    tokenizer = await Tokenizer.load(opts.tokenizerDir).catch((e) => {
      throw e instanceof UserError ? e : new UserError(`${opts.tokenizerDir}: cannot load the tokenizer (${(e as Error).message})`);
    });
  }
  if (tokenizer.vocabSize !== parts.config.vocabSize) {
    throw new UserError(
      `the tokenizer ${opts.tokenizerDir ? `at ${opts.tokenizerDir} ` : ''}has ${tokenizer.vocabSize} tokens but the checkpoint ${where} ` +
        `was trained with vocab ${parts.config.vocabSize}: use the tokenizer saved in the checkpoint (omit --tokenizer)`,
    );
  }
  const model = modelFromParts(parts, opts.backend, where);
  const optimizerState = opts.withOptimizer ? optimizerTensors(parts, opts.backend) : null;
  return { dir: where, config: parts.config, model, tokenizer, state: parts.state, optimizerState };
}

export interface SaveInput {
  model: GPT;
  optimizerState: Record<string, T.Tensor> | null;
  tokenizer: Tokenizer;
  state: TrainState | null;
}

/** Write a checkpoint directory atomically from a live model (see the header). */
export async function saveCheckpoint(dir: string, s: SaveInput): Promise<void> {
  await writeCheckpointDir(dir, await checkpointParts(s.model, s.tokenizer, s.optimizerState, s.state));
}
