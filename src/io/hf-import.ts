// Import a Hugging Face checkpoint directory as a minichat checkpoint: the inverse of
// export.ts, for Qwen3ForCausalLM (QK-norm) and LlamaForCausalLM (SmolLM2-style: no QK-norm,
// tied or untied head). A directory holds
//
//   config.json                     the architecture and its sizes (hfModelConfig)
//   model.safetensors               the weights, F32/F16/BF16 (widened to float32), or
//   model.safetensors.index.json    {"weight_map": {name: shard file}} and the shards it names
//   tokenizer.json                  Hugging Face `tokenizers`' JSON: a byte-level BPE (hfTokenizer)
//
// Our parameter names are Hugging Face's (src/model/gpt.ts), so the weights are a copy: every
// tensor the config implies must be there with its shape, and nothing else may be (an extra
// tensor means a layer minichat does not have, e.g. attention biases).
//
// Everything minichat cannot represent exactly is refused with one line that names the key
// and why: another architecture, RoPE scaling, sliding-window attention, biases, experts, a
// key we do not know (it might change the math). Differences that cannot change the logits
// (metadata, dropout, the HF post-processor) are passed over; the two that can change token
// ids on unusual text (an NFC normalizer, non-special added tokens) are reported as notices.
//
// The tokenizer. A Hugging Face BPE lists `merges` (pairs, in priority order) and a `vocab`
// (token → id); tiktoken-style BPE, ours, keeps only ranks and always merges the adjacent
// pair whose merged bytes have the lowest rank. The two agree when the ids grow in merge
// order (so rank order is merge order) and each merge's pair is the one our merge loop finds
// in its token's own bytes with the lower ranks; both are checked for every merge, and a
// tokenizer that fails is refused with the merge named. Byte-level means: tokens are written
// in GPT-2's byte-to-unicode alphabet, and all 256 single bytes are tokens.
//
// minichat's chat and SFT need its special tokens (<|bos|>, <|user_start|>, ... in
// src/tokenizer/chat.ts). Unless told not to, the import appends the missing ones after the
// model's vocabulary and gives them new embedding rows (and LM-head rows) equal to the mean
// row: the logits over the original vocabulary are unchanged. Ids the config's vocab_size
// has but the tokenizer does not use (Qwen3 pads 151,669 tokens to 151,936) become
// `<|reserved_ID|>` specials, so every row of the embedding has a token.
//
// Node-only (reads files).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type GPTConfig, paramSpecs, validateConfig } from '../model/gpt.ts';
import { DEFAULT_SPECIALS } from '../tokenizer/chat.ts';
import { Tokenizer } from '../tokenizer/bpe.ts';
import { PATTERNS } from '../tokenizer/patterns.ts';
import { UserError } from '../util/errors.ts';
import type { CheckpointParts } from './checkpoint.ts';
import { byteToUnicode } from './export.ts';
import { type DecodedTensor, type SafeTensor, readSafetensorsFile } from './safetensors.ts';

export const HF_ARCHITECTURES = ['Qwen3ForCausalLM', 'LlamaForCausalLM'] as const;
export type HfArchitecture = (typeof HF_ARCHITECTURES)[number];

// ---------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------

/** Keys that describe the file, the training or the generation defaults, not the forward pass. */
const METADATA_KEYS = new Set([
  'architectures', 'model_type', '_name_or_path', 'transformers_version', 'torch_dtype', 'dtype',
  'bos_token_id', 'eos_token_id', 'pad_token_id', 'initializer_range', 'use_cache',
  'attention_dropout', // dropout: training only
  'pretraining_tp', // Llama's tensor-parallel slicing of the same matmuls: the same result
  'is_llama_config', 'max_window_layers', // SmolLM2's marker; Qwen's, read only with a sliding window
]);
/** The keys that size the model (read below). */
const SIZE_KEYS = new Set([
  'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads',
  'head_dim', 'hidden_act', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta', 'tie_word_embeddings',
]);

export interface HfConfig {
  architecture: HfArchitecture;
  config: GPTConfig; // the minichat model config (vocabSize = the checkpoint's vocab_size)
}

/**
 * The minichat model config of a Hugging Face config.json (parsed), or a UserError naming the
 * first key minichat cannot represent. `where` names the file in messages.
 */
export function hfModelConfig(cfg: Record<string, unknown>, where = 'config.json', o: { maxSeqLen?: number } = {}): HfConfig {
  const bad = (msg: string) => new UserError(`${where}: ${msg}`);
  const archs = cfg.architectures;
  if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== 'string') {
    throw bad(`"architectures" must list one architecture, got ${JSON.stringify(archs ?? null)} (minichat imports ${HF_ARCHITECTURES.join(' and ')})`);
  }
  const architecture = archs[0] as HfArchitecture;
  if (!HF_ARCHITECTURES.includes(architecture)) throw bad(`architecture ${archs[0]} is not supported (minichat imports ${HF_ARCHITECTURES.join(' and ')})`);
  const qwen = architecture === 'Qwen3ForCausalLM';

  // keys that switch on something minichat's GPT does not have: one line each, saying what
  const off = (v: unknown) => v === undefined || v === null || v === false || v === 0;
  const refuse: [string, (v: unknown) => boolean, string][] = [
    ['rope_scaling', (v) => off(v) || (v as { rope_type?: string; type?: string }).rope_type === 'default' || (v as { type?: string }).type === 'default', 'RoPE scaling (minichat applies plain RoPE with rope_theta)'],
    ['rope_parameters', (v) => off(v) || ((v as { rope_type?: string }).rope_type ?? 'default') === 'default', 'RoPE scaling (minichat applies plain RoPE with rope_theta)'],
    ['rope_interleaved', off, 'interleaved RoPE (minichat rotates halves, as Llama and Qwen3 do)'],
    ['use_sliding_window', off, 'sliding-window attention (minichat attends to the whole context)'],
    ['sliding_window', (v) => off(v) || (qwen && off(cfg.use_sliding_window)), 'sliding-window attention (minichat attends to the whole context)'],
    ['layer_types', (v) => off(v) || (Array.isArray(v) && v.every((t) => t === 'full_attention')), 'layers other than full attention (minichat attends to the whole context in every layer)'],
    ['attention_bias', off, 'biases on the attention projections (minichat has no biases)'],
    ['mlp_bias', off, 'biases on the MLP projections (minichat has no biases)'],
    ['num_experts', off, 'a mixture of experts (minichat has one dense MLP per layer)'],
    ['num_local_experts', off, 'a mixture of experts (minichat has one dense MLP per layer)'],
    ['num_experts_per_tok', off, 'a mixture of experts (minichat has one dense MLP per layer)'],
    ['moe_intermediate_size', off, 'a mixture of experts (minichat has one dense MLP per layer)'],
    ['decoder_sparse_step', off, 'a mixture of experts (minichat has one dense MLP per layer)'],
    ['quantization_config', off, 'quantized weights (minichat reads F32, F16 and BF16)'],
    ['auto_map', off, 'custom modelling code (minichat imports only the standard layouts)'],
  ];
  for (const [key, ok, what] of refuse) {
    if (key in cfg && !ok(cfg[key])) throw bad(`"${key}": ${JSON.stringify(cfg[key])} means ${what}: this model cannot be imported`);
  }
  const known = new Set([...METADATA_KEYS, ...SIZE_KEYS, ...refuse.map((r) => r[0])]);
  for (const key of Object.keys(cfg)) {
    if (!known.has(key)) throw bad(`unknown key "${key}" for ${architecture}: it may change the model, and minichat does not guess (supported: ${[...SIZE_KEYS].join(', ')})`);
  }
  if ((cfg.hidden_act ?? 'silu') !== 'silu') throw bad(`"hidden_act": ${JSON.stringify(cfg.hidden_act)} is not supported (minichat's SwiGLU uses silu)`);

  const int = (key: string, fallback?: number): number => {
    const v = cfg[key] ?? fallback;
    if (!Number.isInteger(v) || (v as number) <= 0) throw bad(`"${key}" must be a positive integer, got ${JSON.stringify(cfg[key] ?? null)}`);
    return v as number;
  };
  const pos = (key: string, fallback: number): number => {
    const v = cfg[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0)) throw bad(`"${key}" must be a positive number, got ${JSON.stringify(cfg[key])}`);
    return v;
  };
  const hidden = int('hidden_size'), heads = int('num_attention_heads');
  if (!('head_dim' in cfg) && hidden % heads !== 0) throw bad(`hidden_size ${hidden} is not a multiple of num_attention_heads ${heads} (and no head_dim is given)`);
  const tie = cfg.tie_word_embeddings ?? false; // the default of both LlamaConfig and Qwen3Config
  if (typeof tie !== 'boolean') throw bad(`"tie_word_embeddings" must be true or false, got ${JSON.stringify(tie)}`);
  const ropeTheta = pos('rope_theta', (cfg.rope_parameters as { rope_theta?: number } | undefined)?.rope_theta ?? 10000);
  const context = int('max_position_embeddings', qwen ? 32768 : 2048);
  if (o.maxSeqLen !== undefined && !(Number.isInteger(o.maxSeqLen) && o.maxSeqLen > 0)) throw new UserError(`--max-seq-len must be a positive integer, got ${o.maxSeqLen}`);
  const config: GPTConfig = {
    vocabSize: int('vocab_size'),
    hiddenSize: hidden,
    numLayers: int('num_hidden_layers'),
    numHeads: heads,
    numKVHeads: int('num_key_value_heads', heads),
    headDim: int('head_dim', hidden / heads),
    intermediateSize: int('intermediate_size'),
    maxSeqLen: o.maxSeqLen ? Math.min(o.maxSeqLen, context) : context,
    ropeTheta,
    rmsNormEps: pos('rms_norm_eps', 1e-6),
    tieEmbeddings: tie,
    qkNorm: qwen, // Qwen3 normalises q and k per head; Llama does not
    mlp: 'swiglu',
    logitSoftcap: 0,
  };
  try {
    validateConfig(config);
  } catch (e) {
    throw bad((e as Error).message);
  }
  return { architecture, config };
}

// ---------------------------------------------------------------------------------------
// tokenizer.json
// ---------------------------------------------------------------------------------------

interface HfAddedToken {
  id: number;
  content: string;
  special?: boolean;
}

export interface HfTokenizer {
  ranks: Map<string, number>; // token bytes (binary string) → id
  specials: Record<string, number>; // added tokens → id
  pattern: string; // the pre-split regex, tiktoken dialect
  notices: string[]; // what the import does not reproduce exactly (see the header)
}

/** GPT-2's pattern with Digits(individual_digits) in front: each digit a chunk of its own (SmolLM2). */
const GPT2_DIGITS = "\\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?![^\\s\\p{N}])|\\s+";

/**
 * The one pre-split regex equivalent to a tokenizer.json pre_tokenizer, or a reason why there
 * is none. Accepted: Split(Regex, Isolated) + ByteLevel(use_regex: false) (Qwen3, and what
 * export.ts writes); ByteLevel(use_regex: true) alone (GPT-2's regex); Digits(individual) +
 * ByteLevel(use_regex: true) (SmolLM2). For the last one, why the pattern changes: GPT-2's
 * regex runs on the pieces between digits, so a run of spaces before a digit is one chunk
 * (its `\s+(?!\S)` sees the piece end, not the digit); in one regex over the whole text, a
 * digit must count as "not there" in that lookahead, hence `(?![^\s\p{N}])`.
 */
function preTokenizerPattern(pre: unknown): string | { why: string } {
  const steps = (pre && typeof pre === 'object' && (pre as { type?: string }).type === 'Sequence' ? (pre as { pretokenizers?: unknown[] }).pretokenizers : [pre]) ?? [];
  const types = steps.map((s) => (s as { type?: string } | null)?.type ?? 'null').join(' + ');
  type Step = { type?: string; add_prefix_space?: boolean; use_regex?: boolean; pattern?: { Regex?: string; String?: string }; behavior?: string; invert?: boolean; individual_digits?: boolean };
  const s = steps as Step[];
  const byteLevel = s.at(-1);
  if (!byteLevel || byteLevel.type !== 'ByteLevel') return { why: `the pre-tokenizer is ${types}, not byte-level (a ByteLevel step last): minichat's tokenizer is a byte-level BPE` };
  if (byteLevel.add_prefix_space) return { why: 'ByteLevel has add_prefix_space: true (a space is added before the text), which minichat does not do' };
  const useRegex = byteLevel.use_regex ?? true;
  if (s.length === 1 && useRegex) return PATTERNS.gpt2;
  if (s.length === 2 && s[0].type === 'Split' && !useRegex) {
    const split = s[0];
    if (typeof split.pattern?.Regex !== 'string') return { why: 'the Split pre-tokenizer has no Regex pattern (a String pattern is not supported)' };
    if (split.behavior !== 'Isolated' || split.invert) return { why: `the Split pre-tokenizer has behavior ${split.behavior}${split.invert ? ', invert' : ''} (minichat keeps each match as a chunk: Isolated, not inverted)` };
    return split.pattern.Regex;
  }
  if (s.length === 2 && s[0].type === 'Digits' && s[0].individual_digits && useRegex) return GPT2_DIGITS;
  return { why: `the pre-tokenizer ${types}${useRegex ? ' (ByteLevel with use_regex)' : ''} has no single-regex equivalent that minichat knows` };
}

/**
 * Read a tokenizer.json (parsed) into ranks, specials and a pattern, or a UserError saying
 * why minichat cannot represent it (see the header).
 */
export function hfTokenizer(json: Record<string, unknown>, where = 'tokenizer.json'): HfTokenizer {
  const refuse = (why: string) => new UserError(`${where}: cannot import this tokenizer: ${why}`);
  const notices: string[] = [];
  const model = json.model as { type?: string; vocab?: Record<string, number>; merges?: unknown[]; byte_fallback?: boolean; continuing_subword_prefix?: string | null; end_of_word_suffix?: string | null; dropout?: number | null } | undefined;
  if (!model || model.type !== 'BPE') return fail(`the model is ${model?.type ?? 'missing'}, not BPE`);
  if (model.byte_fallback) return fail('byte_fallback is on (a SentencePiece-style BPE, not a byte-level one)');
  if (model.continuing_subword_prefix || model.end_of_word_suffix) return fail('it uses a subword prefix or word suffix');
  if (model.dropout) return fail(`BPE dropout is ${model.dropout}`);
  const norm = json.normalizer as { type?: string } | null | undefined;
  if (norm && norm.type === 'NFC') notices.push('the tokenizer normalizes text to NFC first; minichat does not, so text that is not already NFC may get other ids');
  else if (norm) return fail(`the normalizer ${norm.type} is not supported`);
  const pattern = preTokenizerPattern(json.pre_tokenizer);
  if (typeof pattern !== 'string') return fail(pattern.why);
  if (json.post_processor && (json.post_processor as { type?: string }).type !== 'ByteLevel') {
    notices.push(`the post-processor (${(json.post_processor as { type?: string }).type}) is not applied: minichat adds its own BOS where a format needs one`);
  }

  // byte-level alphabet: GPT-2's table, inverted
  const u2b = new Map(byteToUnicode().map((ch, b) => [ch, b]));
  const toBinary = (token: string): string | null => {
    let out = '';
    for (const ch of token) {
      const b = u2b.get(ch);
      if (b === undefined) return null;
      out += String.fromCharCode(b);
    }
    return out;
  };
  const vocab = model.vocab ?? {};
  const added = (Array.isArray(json.added_tokens) ? json.added_tokens : []) as HfAddedToken[];
  const specials: Record<string, number> = {};
  const addedIds = new Set<number>();
  const nonSpecial: string[] = [];
  for (const t of added) {
    if (typeof t?.content !== 'string' || !Number.isInteger(t.id)) return fail(`an added token is malformed: ${JSON.stringify(t)}`);
    specials[t.content] = t.id;
    addedIds.add(t.id);
    if (!t.special) nonSpecial.push(t.content);
  }
  if (nonSpecial.length) notices.push(`${nonSpecial.length} added token(s) that Hugging Face matches in any text (${nonSpecial.slice(0, 3).join(' ')}${nonSpecial.length > 3 ? ' ...' : ''}) are special tokens in minichat: recognised only where a format puts them`);

  const ranks = new Map<string, number>();
  for (const [token, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || id < 0) return fail(`token ${JSON.stringify(token)} has id ${id}`);
    if (addedIds.has(id)) continue; // an added token that is also in the vocab: a special, never reached by merges
    const bin = toBinary(token);
    if (bin === null) return fail(`token ${JSON.stringify(token)} (id ${id}) is not written in ByteLevel's byte alphabet`);
    ranks.set(bin, id);
  }
  for (let b = 0; b < 256; b++) if (!ranks.has(String.fromCharCode(b))) return fail(`byte 0x${b.toString(16).padStart(2, '0')} has no token (a byte-level BPE needs all 256)`);

  // merges: "a b" strings (older files) or [a, b] pairs (tokenizers >= 0.20)
  const merges = model.merges ?? [];
  const produced = new Set<string>();
  let lastId = -1;
  for (let i = 0; i < merges.length; i++) {
    const m = merges[i];
    const pair = typeof m === 'string' ? m.split(' ') : m;
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') return fail(`merge ${i} is malformed: ${JSON.stringify(m)}`);
    const a = toBinary(pair[0]), b = toBinary(pair[1]);
    const id = a !== null && b !== null ? ranks.get(a + b) : undefined;
    if (a === null || b === null || id === undefined) return fail(`merge ${i} (${pair.join(' ')}) makes a token that is not in the vocab`);
    if (id <= lastId) return fail(`merge ${i} (${pair.join(' ')}) makes token id ${id}, below the id ${lastId} of an earlier merge: minichat's ranks need ids in merge order`);
    lastId = id;
    const split = replaySplit(ranks, a + b, id);
    if (split.length !== 2 || split[0] !== a) return fail(`merge ${i} (${pair.join(' ')}): rank-order BPE splits its token differently, so the two algorithms would disagree`);
    produced.add(a + b);
  }
  for (const [bin, id] of ranks) {
    if (bin.length > 1 && !produced.has(bin)) return fail(`token id ${id} is in the vocab but no merge makes it (rank-order BPE could produce it where Hugging Face never does)`);
  }
  return { ranks, specials, pattern, notices };

  function fail(why: string): never {
    throw refuse(why);
  }
}

/** Our merge loop on one token's bytes, with only the ranks below its own: the two parts left. */
function replaySplit(ranks: Map<string, number>, bytes: string, below: number): string[] {
  let parts = [...bytes];
  while (parts.length > 2) {
    let best = -1, bestRank = Infinity;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = ranks.get(parts[i] + parts[i + 1]);
      if (r !== undefined && r < below && r < bestRank) (best = i), (bestRank = r);
    }
    if (best < 0) break;
    parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
  }
  return parts;
}

// ---------------------------------------------------------------------------------------
// weights
// ---------------------------------------------------------------------------------------

/** Every tensor of a Hugging Face directory: model.safetensors, or the shards its index names. */
export async function readHfWeights(dir: string): Promise<Record<string, DecodedTensor>> {
  const index = join(dir, 'model.safetensors.index.json'), single = join(dir, 'model.safetensors');
  if (existsSync(index)) {
    const map = (readJson(index) as { weight_map?: Record<string, string> }).weight_map;
    if (!map || typeof map !== 'object') throw new UserError(`${index}: no "weight_map" object`);
    const out: Record<string, DecodedTensor> = {};
    for (const file of new Set(Object.values(map))) {
      if (typeof file !== 'string' || file.includes('/') || file.includes('\\')) throw new UserError(`${index}: shard ${JSON.stringify(file)} is not a file name in ${dir}`);
      const { tensors } = await readSafetensorsFile(join(dir, file));
      for (const [name, t] of Object.entries(tensors)) {
        if (map[name] !== file) throw new UserError(`${join(dir, file)}: holds ${name}, which the index puts in ${map[name] ?? 'no shard'}`);
        out[name] = t;
      }
    }
    for (const [name, file] of Object.entries(map)) if (!out[name]) throw new UserError(`${join(dir, file)}: has no tensor ${name} (the index says it does)`);
    return out;
  }
  if (existsSync(single)) return (await readSafetensorsFile(single)).tensors;
  const bin = existsSync(join(dir, 'pytorch_model.bin')) ? ' (pytorch_model.bin is a pickle, which minichat does not read: convert it to safetensors)' : '';
  throw new UserError(`${dir}: no model.safetensors or model.safetensors.index.json${bin}`);
}

function readJson(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v;
  } catch (e) {
    throw new UserError(`${path}: not a JSON object (${(e as Error).message})`);
  }
}

// ---------------------------------------------------------------------------------------
// the whole directory
// ---------------------------------------------------------------------------------------

export interface ImportOptions {
  /** Append minichat's chat special tokens that the tokenizer lacks (default true). */
  chatTokens?: boolean;
  /** Cap the context (max_position_embeddings) the RoPE tables are built for. */
  maxSeqLen?: number;
}

export interface HfImport {
  architecture: HfArchitecture;
  parts: CheckpointParts; // an inference-only checkpoint (no optimizer state, no train state)
  hfVocabSize: number; // the checkpoint's vocab_size; ids at and above it are added chat tokens
  addedTokens: string[]; // the chat specials appended
  sourceDtypes: string[]; // the dtypes the weights were stored in
  notices: string[];
}

/** Read a Hugging Face directory into checkpoint parts (see the header). */
export async function importHF(dir: string, o: ImportOptions = {}): Promise<HfImport> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`--hf ${dir}: no such directory`);
  for (const f of ['config.json', 'tokenizer.json']) if (!existsSync(join(dir, f))) throw new UserError(`${dir}: no ${f} (a Hugging Face model directory has config.json, tokenizer.json and model.safetensors)`);
  const { architecture, config: hfConfig } = hfModelConfig(readJson(join(dir, 'config.json')), join(dir, 'config.json'), { maxSeqLen: o.maxSeqLen });
  const tokPath = join(dir, 'tokenizer.json');
  const tok = hfTokenizer(readJson(tokPath), tokPath);
  const V0 = hfConfig.vocabSize;

  // every id below vocab_size gets a token; then the missing chat specials
  const used = new Set<number>([...tok.ranks.values(), ...Object.values(tok.specials)]);
  let maxUsed = -1;
  for (const id of used) maxUsed = Math.max(maxUsed, id); // (not Math.max(...used): 150k arguments overflow the stack)
  if (maxUsed >= V0) throw new UserError(`${tokPath}: token id ${maxUsed} does not fit the model's vocab_size ${V0}`);
  const specials = { ...tok.specials };
  for (let id = 0; id < V0; id++) if (!used.has(id)) specials[`<|reserved_${id}|>`] = id;
  const addedTokens = o.chatTokens === false ? [] : DEFAULT_SPECIALS.filter((s) => !(s in specials));
  addedTokens.forEach((s, i) => (specials[s] = V0 + i));
  const full = tokenizerFrom(tok.ranks, tok.pattern, specials);
  const config = validateConfig({ ...hfConfig, vocabSize: V0 + addedTokens.length });

  // weights: exactly the tensors the config implies, shapes checked
  const source = await readHfWeights(dir);
  const where = `${dir} (${architecture})`;
  const weights: Record<string, SafeTensor> = {};
  const dtypes = new Set<string>();
  const expected = new Map(paramSpecs(hfConfig).map((s) => [s.name, s.shape]));
  for (const [name, t] of Object.entries(source)) {
    if (/\.rotary_emb\.inv_freq$/.test(name)) continue; // a RoPE table some old exports saved; we compute ours
    if (name === 'lm_head.weight' && hfConfig.tieEmbeddings) continue; // tied: the head is the embedding
    const shape = expected.get(name);
    if (!shape) throw new UserError(`${where}: unexpected tensor ${name} [${t.shape}]: minichat's ${architecture} has no such parameter`);
    if (shape.join() !== t.shape.join()) throw new UserError(`${where}: ${name} has shape [${t.shape}] but config.json implies [${shape}]`);
    if (t.dtype !== 'F32') throw new UserError(`${where}: ${name} is ${t.sourceDtype}, not a floating-point tensor`);
    weights[name] = { dtype: 'F32', shape: t.shape, data: t.data };
    dtypes.add(t.sourceDtype);
  }
  for (const name of expected.keys()) if (!weights[name]) throw new UserError(`${where}: missing tensor ${name}`);
  if (addedTokens.length) {
    for (const name of ['model.embed_tokens.weight', ...(hfConfig.tieEmbeddings ? [] : ['lm_head.weight'])]) weights[name] = withMeanRows(weights[name], addedTokens.length);
  }

  const parts: CheckpointParts = { config, tokenizer: full, weights, adapters: {}, adapterConfig: null, optimizer: null, state: null };
  const notices = [...tok.notices];
  return { architecture, parts, hfVocabSize: V0, addedTokens, sourceDtypes: [...dtypes].sort(), notices };
}

/** Tokenizer.fromRanks takes base64 keys (or a dense list; ours has holes where specials sit). */
function tokenizerFrom(ranks: Map<string, number>, pattern: string, specials: Record<string, number>): Tokenizer {
  const b64 = new Map<string, number>();
  for (const [bin, id] of ranks) b64.set(btoa(bin), id);
  return Tokenizer.fromRanks(b64, pattern, specials);
}

/** A (V, C) matrix with `n` more rows, each the mean of the existing rows. */
function withMeanRows(t: SafeTensor, n: number): SafeTensor {
  const [V, C] = t.shape;
  const data = new Float32Array((V + n) * C);
  data.set(t.data);
  const mean = new Float64Array(C);
  for (let v = 0; v < V; v++) for (let c = 0; c < C; c++) mean[c] += t.data[v * C + c];
  for (let i = 0; i < n; i++) for (let c = 0; c < C; c++) data[(V + i) * C + c] = mean[c] / V;
  return { dtype: 'F32', shape: [V + n, C], data };
}
