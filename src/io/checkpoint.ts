// Checkpoints: one directory per save, written whole under a temporary name and then
// renamed, so a crash never leaves a half-written checkpoint as the latest one.
//
//   <run>/checkpoint/
//     config.json           the model config (ours, plus Qwen3's keys where they exist)
//     model.safetensors     parameters under their Hugging Face names
//     optimizer.safetensors optimizer state (moments, momentum buffers, step counts)
//     tokenizer/            the tokenizer the ids mean something in
//     state.json            step, RNG and data-loader state, tokenizer fingerprint, metrics
//
// Replacing the previous checkpoint: write checkpoint.tmp, move checkpoint -> checkpoint.old,
// move checkpoint.tmp -> checkpoint, delete checkpoint.old. If the process dies between the
// two moves, loading falls back to checkpoint.old.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type GPTConfig, GPT, validateConfig } from '../model/gpt.ts';
import { adapterState, loadAdapters, type LoraConfig } from '../model/lora.ts';
import type { RngState } from '../tensor/random.ts';
import * as T from '../tensor/index.ts';
import { Tokenizer } from '../tokenizer/index.ts';
import { UserError } from '../util/errors.ts';
import { encodeSafetensors, fromTensors, readSafetensorsFile } from './safetensors.ts';
import type { LoaderState } from '../data/loader.ts';

export interface TrainState {
  step: number; // optimizer steps completed
  rng: RngState; // the run's generator (after `step` steps)
  loader: LoaderState; // the training batch loader
  tokenizerFingerprint: string; // tokenizerFingerprint() of the tokenizer below
  dataFingerprint: string; // what the token stream was made from (resume checks it)
  metrics: Record<string, number>; // last train/val numbers, for reports
  options: Record<string, unknown>; // the run's options, for the record
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

async function tensorsToSafetensors(named: [string, T.Tensor][], metadata: Record<string, string>): Promise<Uint8Array> {
  return encodeSafetensors(await fromTensors(Object.fromEntries(named)), metadata);
}

export interface SaveInput {
  model: GPT;
  optimizerState: Record<string, T.Tensor> | null;
  tokenizer: Tokenizer;
  state: TrainState;
}

/** Write a checkpoint to `dir` atomically (see the header). */
export async function saveCheckpoint(dir: string, s: SaveInput): Promise<void> {
  const tmp = dir + '.tmp', old = dir + '.old';
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await writeFile(join(tmp, 'config.json'), JSON.stringify(configJson(s.model.config), null, 2) + '\n');
  // The layout reads roles: the model's own weights in model.safetensors (the Hugging Face
  // names), LoRA adapters alone in adapters.safetensors with their config beside them.
  const named = s.model.namedParams();
  await writeFile(join(tmp, 'model.safetensors'), await tensorsToSafetensors(named.filter((p) => p.role !== 'adapter').map((p) => [p.name, p.param]), { format: 'pt' }));
  const adapters = named.filter((p) => p.role === 'adapter');
  if (adapters.length) {
    await writeFile(join(tmp, 'adapters.safetensors'), await tensorsToSafetensors(adapters.map((p) => [p.name, p.param]), {}));
    await writeFile(join(tmp, 'adapter_config.json'), JSON.stringify(adapterState(s.model).config, null, 2) + '\n');
  }
  if (s.optimizerState) {
    await writeFile(join(tmp, 'optimizer.safetensors'), await tensorsToSafetensors(Object.entries(s.optimizerState), {}));
  }
  await s.tokenizer.save(join(tmp, 'tokenizer'));
  await writeFile(join(tmp, 'state.json'), JSON.stringify(s.state, null, 2) + '\n');
  if (existsSync(dir)) {
    await rm(old, { recursive: true, force: true });
    await rename(dir, old);
  }
  await rename(tmp, dir);
  await rm(old, { recursive: true, force: true });
}

/** The directory holding the newest complete checkpoint under `dir`, or null. */
export function findCheckpoint(dir: string): string | null {
  for (const d of [dir, dir + '.old']) if (existsSync(join(d, 'state.json')) || existsSync(join(d, 'model.safetensors'))) return d;
  return null;
}

async function readJson(path: string): Promise<any> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new UserError(`${path}: not found (is this a minichat checkpoint directory?)`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

export async function readSafetensorsTensors(path: string): Promise<Map<string, { shape: number[]; data: Float32Array | Int32Array }>> {
  const { tensors } = await readSafetensorsFile(path);
  return new Map(Object.entries(tensors).map(([k, v]) => [k, { shape: v.shape, data: v.data as Float32Array | Int32Array }]));
}

export interface LoadedCheckpoint {
  dir: string;
  config: GPTConfig;
  model: GPT;
  tokenizer: Tokenizer;
  state: TrainState | null;
  /** optimizer state tensors (caller disposes after loading them into an optimizer) */
  optimizerState: Record<string, T.Tensor> | null;
}

/**
 * Load a checkpoint directory (or a run directory holding checkpoint/). With `tokenizerDir`,
 * that tokenizer is used instead of the checkpoint's own, and must match the model's vocab.
 */
export async function loadCheckpoint(
  path: string,
  opts: { backend?: T.Tensor['backend']; tokenizerDir?: string; withOptimizer?: boolean } = {},
): Promise<LoadedCheckpoint> {
  const dir = findCheckpoint(join(path, 'checkpoint')) ?? findCheckpoint(path);
  if (!dir) throw new UserError(`${path}: no checkpoint found (expected config.json and model.safetensors, or a run directory with checkpoint/)`);
  const cfgJson = await readJson(join(dir, 'config.json'));
  if (!cfgJson.minichat) throw new UserError(`${join(dir, 'config.json')}: not a minichat config (no "minichat" section)`);
  const config = validateConfig(cfgJson.minichat as GPTConfig);
  const tokenizer = await Tokenizer.load(opts.tokenizerDir ?? join(dir, 'tokenizer')).catch((e) => {
    throw e instanceof UserError ? e : new UserError(`${opts.tokenizerDir ?? join(dir, 'tokenizer')}: cannot load the tokenizer (${(e as Error).message})`);
  });
  if (tokenizer.vocabSize !== config.vocabSize) {
    throw new UserError(
      `the tokenizer ${opts.tokenizerDir ? `at ${opts.tokenizerDir} ` : ''}has ${tokenizer.vocabSize} tokens but the checkpoint ${dir} ` +
        `was trained with vocab ${config.vocabSize}: use the tokenizer saved in the checkpoint (omit --tokenizer)`,
    );
  }
  const state = existsSync(join(dir, 'state.json')) ? ((await readJson(join(dir, 'state.json'))) as TrainState) : null;
  const model = T.noGrad(() => new GPT(config, new T.Rng(0), opts.backend));
  model.loadWeights(await readSafetensorsTensors(join(dir, 'model.safetensors')), join(dir, 'model.safetensors'));
  if (existsSync(join(dir, 'adapters.safetensors'))) {
    const cfg = (await readJson(join(dir, 'adapter_config.json'))) as Partial<LoraConfig>;
    loadAdapters(model, cfg, await readSafetensorsTensors(join(dir, 'adapters.safetensors')), join(dir, 'adapters.safetensors'));
  }
  let optimizerState: Record<string, T.Tensor> | null = null;
  if (opts.withOptimizer && existsSync(join(dir, 'optimizer.safetensors'))) {
    const raw = await readSafetensorsTensors(join(dir, 'optimizer.safetensors'));
    optimizerState = {};
    for (const [k, v] of raw) {
      optimizerState[k] = T.tensor(v.data, v.shape, { dtype: v.data instanceof Int32Array ? 'int32' : 'float32', backend: opts.backend });
    }
  }
  return { dir, config, model, tokenizer, state, optimizerState };
}
