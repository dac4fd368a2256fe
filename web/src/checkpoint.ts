// The demo's checkpoint: ONE .safetensors file that holds everything needed to generate from
// the model or continue training it, so "download" and "load" are a single file each way.
//
//   tensors         the model's parameters under their Hugging Face names
//                   ("model.layers.0.self_attn.q_proj.weight", ...), plus the optimizer's
//                   state under "optimizer/<its own names>" (so training resumes smoothly)
//   __metadata__    strings only (the safetensors rule):
//     format              "minichat-web-checkpoint/1"
//     config              the GPTConfig as JSON (src/model/gpt.ts)
//     tokenizer_ranks     the tokenizer's ranks in tiktoken's text format (base64 bytes, rank)
//     tokenizer_pattern   the pre-split regex (tiktoken dialect)
//     tokenizer_specials  JSON {"<|bos|>": id, ...}
//     step                optimizer steps completed
//     settings            the page's Settings as JSON (preset, lr, optimizer, ...)
//     history             the loss curve and samples so far as JSON (protocol.ts History)
//
// The CLI's checkpoints are a directory (config.json, model.safetensors, ...); this file has
// the same weights under the same names, so `model.safetensors` tools can read it too.
// Pure (no DOM, no Node): the worker encodes and decodes, the page only moves the bytes.
import { decodeSafetensors, encodeSafetensors, type SafeTensor } from '../../src/io/safetensors.ts';
import { validateConfig, type GPTConfig } from '../../src/model/gpt.ts';
import { Tokenizer } from '../../src/tokenizer/bpe.ts';
import { UserError } from '../../src/util/errors.ts';
import type { History, Settings } from './protocol.ts';

export const FORMAT = 'minichat-web-checkpoint/1';
const OPT_PREFIX = 'optimizer/';

export interface WebCheckpoint {
  config: GPTConfig;
  tokenizer: Tokenizer;
  step: number;
  settings: Settings;
  history: History;
  weights: Map<string, SafeTensor>; // parameter name → values
  optimizer: Map<string, SafeTensor>; // optimizer state name → values (may be empty)
}

export function encodeCheckpoint(c: WebCheckpoint): Uint8Array {
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, t] of c.weights) tensors[name] = t;
  for (const [name, t] of c.optimizer) tensors[OPT_PREFIX + name] = t;
  return encodeSafetensors(tensors, {
    format: FORMAT,
    config: JSON.stringify(c.config),
    tokenizer_ranks: c.tokenizer.toTiktokenRanks(),
    tokenizer_pattern: c.tokenizer.pattern,
    tokenizer_specials: JSON.stringify(c.tokenizer.specials),
    step: String(c.step),
    settings: JSON.stringify(c.settings),
    history: JSON.stringify(c.history),
  });
}

/** Parse a checkpoint file; every problem is a UserError that names the file. */
export function decodeCheckpoint(bytes: Uint8Array, source: string): WebCheckpoint {
  const { tensors, metadata } = decodeSafetensors(bytes, source); // checks the container
  const bad = (msg: string) => new UserError(`${source}: ${msg}`);
  if (metadata.format !== FORMAT) {
    throw bad(`not a minichat demo checkpoint (metadata "format" is ${JSON.stringify(metadata.format ?? null)}, expected "${FORMAT}")`);
  }
  const json = (key: string) => {
    try {
      return JSON.parse(metadata[key]);
    } catch {
      throw bad(`metadata "${key}" is missing or not JSON`);
    }
  };
  const config = validateConfig(json('config') as GPTConfig);
  const ranks = new Map<string, number>();
  for (const line of (metadata.tokenizer_ranks ?? '').split('\n')) {
    if (!line.trim()) continue;
    const [b64, rank] = line.split(' ');
    ranks.set(b64, Number(rank));
  }
  if (ranks.size === 0) throw bad('metadata "tokenizer_ranks" is empty');
  const tokenizer = Tokenizer.fromRanks(ranks, metadata.tokenizer_pattern, json('tokenizer_specials'));
  if (tokenizer.vocabSize !== config.vocabSize) {
    throw bad(`the tokenizer has ${tokenizer.vocabSize} tokens but the model config says ${config.vocabSize}`);
  }
  const step = Number(metadata.step);
  if (!Number.isInteger(step) || step < 0) throw bad(`metadata "step" must be a non-negative integer, got ${metadata.step}`);
  const weights = new Map<string, SafeTensor>(), optimizer = new Map<string, SafeTensor>();
  for (const [name, t] of Object.entries(tensors)) {
    if (name.startsWith(OPT_PREFIX)) optimizer.set(name.slice(OPT_PREFIX.length), t);
    else weights.set(name, t);
  }
  const history = (metadata.history ? json('history') : { train: [], val: [], samples: [] }) as History;
  return { config, tokenizer, step, settings: json('settings') as Settings, history, weights, optimizer };
}
