// Export a checkpoint as one GGUF file, the format llama.cpp, Ollama and LM Studio load.
//
// A GGUF file (version 3, little-endian throughout) is four parts, one after another:
//   header        "GGUF", version (u32), tensor count (u64), metadata count (u64)
//   metadata      key (string) + type (u32) + value, for every key; a string is a u64 byte
//                 length and UTF-8 bytes; an array is an element type, a u64 count, the elements
//   tensor infos  name, rank (u32), dims (u64 each, FASTEST-varying first), ggml type (u32),
//                 offset (u64) of its data from the start of the data section
//   data          starts at the next multiple of `general.alignment` (32) after the infos;
//                 every tensor's data also starts on a multiple of 32
// ggml counts dimensions the other way round from us: our row-major (out, in) matrix has
// ne = [in, out]. The bytes are the same; only the dims are written reversed.
//
// What llama.cpp needs to run our model, and where each choice comes from:
//   - architecture `qwen3` for QK-norm models (its graph: RMSNorm on each head's q and k, then
//     NeoX-style RoPE, i.e. rotate-half, exactly our gpt.ts); `llama` for the no-QK-norm
//     ablation. llama.cpp's `llama` graph applies RoPE to interleaved pairs (x0,x1), (x2,x3)...
//     while we rotate halves (x_i, x_{i+HS/2}), so the rows of q_proj and k_proj are permuted
//     within each head: new row 2i = old row i, new row 2i+1 = old row i + HS/2. The dot
//     products q·k are unchanged by a permutation applied to both, and the permuted pairs are
//     exactly the pairs we rotate together, so attention computes the same numbers.
//   - tensor names: llama.cpp's own (token_embd, blk.N.attn_q, ..., output_norm, output);
//     a tied head has no `output` tensor and llama.cpp reuses token_embd.
//   - the tokenizer: `gpt2` (byte-level BPE) with tokens written through GPT-2's byte-to-unicode
//     table (as in tokenizer.json), merges in rank order, and the pre-tokenizer NAME whose regex
//     llama.cpp hard-codes for that name (it does not read a regex from the file): see
//     preTokenizerName.
//   - f16 and q8_0 apply to the matrices; the 1-D norm weights stay f32, as llama.cpp's own
//     converter does (they are tiny, and its kernels expect f32 there).
//
// Options GGUF's qwen3/llama graphs cannot express are refused: the ReLU² MLP and logit
// soft-capping.
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Tokenizer } from '../tokenizer/index.ts';
import { SPECIALS } from '../tokenizer/chat.ts';
import { PATTERNS } from '../tokenizer/patterns.ts';
import { hfTokenizerJson } from './export.ts';
import { UserError } from '../util/errors.ts';
import type { GPT, GPTConfig } from '../model/gpt.ts';

export type GGUFDtype = 'f32' | 'f16' | 'q8_0';
export const GGUF_DTYPES: GGUFDtype[] = ['f32', 'f16', 'q8_0'];

// ---------------------------------------------------------------------------------------
// the container: values, tensors, encoding
// ---------------------------------------------------------------------------------------

/** gguf_type: how a metadata value is stored. */
export const GGUF_TYPE = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;
/** ggml_type of tensor data (the ones we write). */
export const GGML_TYPE = { f32: 0, f16: 1, q8_0: 8 } as const;
/** general.file_type: what most of the tensors are (llama_ftype). */
const FILE_TYPE: Record<GGUFDtype, number> = { f32: 0, f16: 1, q8_0: 7 };

export const GGUF_ALIGNMENT = 32;
const Q8_BLOCK = 32; // q8_0: 32 values share one f16 scale: 2 + 32 bytes

/** A metadata value with its type. Arrays hold one element type. */
export type GGUFValue =
  | { type: 'u32' | 'i32' | 'f32' | 'u64'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: 'string'; value: string[] }
  | { type: 'array'; of: 'i32' | 'f32'; value: number[] };

export interface GGUFTensor {
  name: string;
  shape: number[]; // row-major, as in our tensors: (out, in) for a matrix
  dtype: GGUFDtype;
  data: Float32Array; // the float32 values; converted to dtype when encoded
}

const utf8 = new TextEncoder();

/** Bytes of one tensor's data in its ggml type. */
function tensorBytes(t: GGUFTensor): Uint8Array {
  const n = t.data.length;
  if (t.dtype === 'f32') return new Uint8Array(t.data.buffer, t.data.byteOffset, n * 4).slice();
  if (t.dtype === 'f16') {
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = f32ToF16(t.data[i]);
    return new Uint8Array(out.buffer);
  }
  return quantizeQ8_0(t.data);
}

/** Size in bytes of a tensor's data. */
function tensorByteLength(t: GGUFTensor): number {
  const n = t.data.length;
  return t.dtype === 'f32' ? n * 4 : t.dtype === 'f16' ? n * 2 : (n / Q8_BLOCK) * (2 + Q8_BLOCK);
}

/**
 * The GGUF file for these metadata entries and tensors (in the order given). Pure: the
 * writer the tests parse back byte by byte.
 */
export function encodeGGUF(metadata: [string, GGUFValue][], tensors: GGUFTensor[]): Uint8Array {
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`internal: tensor ${t.name} has ${t.data.length} values for shape [${t.shape}]`);
    if (t.dtype === 'q8_0' && t.shape[t.shape.length - 1] % Q8_BLOCK !== 0) throw new Error(`internal: q8_0 tensor ${t.name} has rows of ${t.shape.at(-1)}, not a multiple of ${Q8_BLOCK}`);
  }
  const parts: Uint8Array[] = [];
  let size = 0;
  const push = (b: Uint8Array) => {
    parts.push(b);
    size += b.length;
  };
  const scalar = (bytes: number, set: (v: DataView) => void) => {
    const b = new Uint8Array(bytes);
    set(new DataView(b.buffer));
    push(b);
  };
  const u32 = (v: number) => scalar(4, (d) => d.setUint32(0, v, true));
  const u64 = (v: number) => scalar(8, (d) => d.setBigUint64(0, BigInt(v), true));
  const str = (s: string) => {
    const b = utf8.encode(s);
    u64(b.length);
    push(b);
  };
  const item = (type: 'u32' | 'i32' | 'f32' | 'u64' | 'bool' | 'string', v: number | boolean | string) => {
    if (type === 'u32') u32(v as number);
    else if (type === 'i32') scalar(4, (d) => d.setInt32(0, v as number, true));
    else if (type === 'f32') scalar(4, (d) => d.setFloat32(0, v as number, true));
    else if (type === 'u64') u64(v as number);
    else if (type === 'bool') push(Uint8Array.of(v ? 1 : 0));
    else str(v as string);
  };

  push(utf8.encode('GGUF'));
  u32(3); // version
  u64(tensors.length);
  u64(metadata.length);
  for (const [key, v] of metadata) {
    str(key);
    u32(GGUF_TYPE[v.type]);
    if (v.type === 'array') {
      u32(GGUF_TYPE[v.of]);
      u64(v.value.length);
      for (const x of v.value) item(v.of, x);
    } else item(v.type, v.value);
  }
  // tensor infos: offsets are known before any data is written, each rounded up to the alignment
  const align = (n: number) => Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  let offset = 0;
  for (const t of tensors) {
    str(t.name);
    u32(t.shape.length);
    for (const d of [...t.shape].reverse()) u64(d); // ggml: fastest-varying dimension first
    u32(GGML_TYPE[t.dtype]);
    u64(offset);
    offset = align(offset + tensorByteLength(t));
  }
  push(new Uint8Array(align(size) - size)); // zero padding up to the data section
  for (const t of tensors) {
    const b = tensorBytes(t);
    push(b);
    push(new Uint8Array(align(b.length) - b.length));
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// number formats: f16 and q8_0
// ---------------------------------------------------------------------------------------

const f32Buf = new Float32Array(1);
const u32Buf = new Uint32Array(f32Buf.buffer);

/**
 * The IEEE half-precision bits of x, rounded to nearest, ties to even (what a hardware
 * conversion does). Half keeps 10 mantissa bits and exponents -14..15; smaller magnitudes
 * become subnormal (steps of 2^-24), larger ones infinity.
 */
export function f32ToF16(x: number): number {
  f32Buf[0] = x;
  const bits = u32Buf[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // infinity, or a quiet NaN
  const e = exp - 127 + 15; // the exponent re-biased for half
  if (e >= 0x1f) return sign | 0x7c00; // too large: infinity
  // keep the top bits of the 24-bit significand (implicit 1 included), round the rest
  const full = mant | 0x800000;
  const shift = e > 0 ? 13 : 14 - e; // subnormal halves drop more bits
  if (shift > 24) return sign; // below half the smallest subnormal: zero
  let half = e > 0 ? (e << 10) | (mant >>> 13) : full >>> shift;
  const rest = full & ((1 << shift) - 1), mid = 1 << (shift - 1);
  if (rest > mid || (rest === mid && half & 1)) half++; // a carry into the exponent is right
  return sign | half;
}

/** The float value of half-precision bits (for tests and the reader). */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f, mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * ggml's q8_0: each run of 32 values becomes a scale d = max|x| / 127 (as f16) and 32
 * signed bytes round(x / d). The value back is d * q, so the error is at most d / 2 per
 * value, and a block's largest value is exact up to the f16 rounding of d.
 */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const blocks = x.length / Q8_BLOCK;
  const out = new Uint8Array(blocks * (2 + Q8_BLOCK));
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < Q8_BLOCK; i++) amax = Math.max(amax, Math.abs(x[b * Q8_BLOCK + i]));
    const d = amax / 127, inv = d ? 1 / d : 0;
    const at = b * (2 + Q8_BLOCK);
    view.setUint16(at, f32ToF16(d), true);
    for (let i = 0; i < Q8_BLOCK; i++) {
      const v = x[b * Q8_BLOCK + i] * inv;
      view.setInt8(at + 2 + i, Math.sign(v) * Math.round(Math.abs(v))); // round half away from zero, as C's roundf
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// our model and tokenizer as GGUF metadata and tensors
// ---------------------------------------------------------------------------------------

/** Why a config cannot be a GGUF qwen3/llama model, or null if it can. */
export function ggufIncompatibility(c: GPTConfig): string | null {
  if (c.mlp !== 'swiglu') return `the MLP is ${c.mlp} (llama.cpp's qwen3 and llama graphs use SwiGLU)`;
  if (c.logitSoftcap > 0) return `logit soft-capping (${c.logitSoftcap}) is on (llama.cpp's qwen3 and llama graphs have none)`;
  return null;
}

/** `qwen3` when the model normalises q and k, else `llama`. */
export function ggufArchitecture(c: GPTConfig): 'qwen3' | 'llama' {
  return c.qkNorm ? 'qwen3' : 'llama';
}

/**
 * llama.cpp does not read the split regex from the file: `tokenizer.ggml.pre` names one of
 * the regexes it has built in (src/llama-vocab.cpp). The names whose regex is ours:
 *   cl100k (our default) = "llama-bpe" (Llama 3's pattern is GPT-4's: digits in runs of 1-3,
 *     a leading non-letter glued to a word, newlines kept apart). Not "qwen2": Qwen2 splits
 *     digits one by one (\p{N} instead of \p{N}{1,3}).
 *   gpt2 = "gpt-2"; o200k = "gpt-4o".
 * llama.cpp writes the case-insensitive contractions (?i:'s|...) as ASCII classes ('[sS]),
 * which differs from tiktoken only for the non-ASCII case variants (ſ, U+017F, folds to s)
 * after an apostrophe; and its gpt-4o regex approximates the Unicode upper/lower classes
 * with [^a-z]/[^A-Z] for letters. A custom pattern has no name, so it is refused.
 */
export function preTokenizerName(pattern: string): string {
  if (pattern === PATTERNS.cl100k_base) return 'llama-bpe';
  if (pattern === PATTERNS.gpt2) return 'gpt-2';
  if (pattern === PATTERNS.o200k_base) return 'gpt-4o';
  throw new UserError('cannot export this tokenizer as GGUF: its split pattern is not one of the built-in ones (gpt2, cl100k, o200k), and llama.cpp only runs the regexes it knows by name');
}

/**
 * The chat template in Jinja (what llama.cpp's --jinja, LM Studio and Hugging Face read),
 * rendering a conversation as src/tokenizer/chat.ts does; null for a tokenizer without the
 * chat specials. Tool calls are not expressed: a plain message's content only.
 */
export function chatTemplate(tok: Tokenizer): string | null {
  if (!Object.values(SPECIALS).every((s) => s in tok.specials)) return null;
  return (
    "{{ bos_token }}{% for message in messages %}" +
    "{% if message['role'] == 'system' %}<|system_start|>{{ message['content'] }}<|system_end|>" +
    "{% elif message['role'] == 'user' %}<|user_start|>{{ message['content'] }}<|user_end|>" +
    "{% elif message['role'] == 'assistant' %}<|assistant_start|>{{ message['content'] }}<|assistant_end|>" +
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant_start|>{% endif %}"
  );
}

/** Token types of llama.cpp's vocabulary. */
const TOKEN_TYPE = { normal: 1, control: 3, unused: 5 } as const;

/** The tokenizer as GGUF metadata: tokens (by id), their types, merges, specials. */
export function tokenizerMetadata(tok: Tokenizer, vocabSize: number): [string, GGUFValue][] {
  const pre = preTokenizerName(tok.pattern);
  // hfTokenizerJson already spells every token through the byte-to-unicode table and
  // recovers the merge behind each one (src/io/export.ts); GGUF stores the same lists
  const hf = hfTokenizerJson(tok) as { model: { vocab: Record<string, number>; merges: [string, string][] } };
  const tokens = new Array<string>(vocabSize);
  const types = new Array<number>(vocabSize).fill(TOKEN_TYPE.normal);
  for (const [text, id] of Object.entries(hf.model.vocab)) tokens[id] = text;
  for (const [text, id] of Object.entries(tok.specials)) {
    tokens[id] = text;
    types[id] = TOKEN_TYPE.control;
  }
  if (tok.vocabSize > vocabSize) throw new UserError(`the tokenizer has ${tok.vocabSize} tokens but the model only ${vocabSize} embeddings`);
  for (let id = 0; id < vocabSize; id++) {
    if (tokens[id] !== undefined) continue;
    // ids the model has rows for but the tokenizer never produces (a padded vocabulary)
    tokens[id] = `<|unused_${id}|>`;
    types[id] = TOKEN_TYPE.unused;
  }
  const bos = tok.bosId;
  // A chat model ends its reply with <|assistant_end|>: that is the end-of-generation token
  // llama.cpp and Ollama stop at. A base model's documents end where the next BOS begins.
  const eos = tok.specials[SPECIALS.assistantEnd] ?? bos;
  const meta: [string, GGUFValue][] = [
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: pre }],
    ['tokenizer.ggml.tokens', { type: 'array', of: 'string', value: tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', of: 'i32', value: types }],
    ['tokenizer.ggml.merges', { type: 'array', of: 'string', value: hf.model.merges.map(([a, b]) => `${a} ${b}`) }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: bos }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: eos }],
    ['tokenizer.ggml.eot_token_id', { type: 'u32', value: eos }],
    ['tokenizer.ggml.padding_token_id', { type: 'u32', value: bos }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }], // every sequence starts with BOS, as in training
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ];
  const template = chatTemplate(tok);
  if (template) meta.push(['tokenizer.chat_template', { type: 'string', value: template }]);
  return meta;
}

/** The model's hyperparameters under `<arch>.*` keys. */
function modelMetadata(c: GPTConfig, name: string, dtype: GGUFDtype): [string, GGUFValue][] {
  const arch = ggufArchitecture(c);
  const u32 = (value: number): GGUFValue => ({ type: 'u32', value });
  return [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.name', { type: 'string', value: name }],
    ['general.file_type', u32(FILE_TYPE[dtype])],
    ['general.quantization_version', u32(2)],
    ['general.alignment', u32(GGUF_ALIGNMENT)],
    [`${arch}.vocab_size`, u32(c.vocabSize)],
    [`${arch}.context_length`, u32(c.maxSeqLen)],
    [`${arch}.embedding_length`, u32(c.hiddenSize)],
    [`${arch}.block_count`, u32(c.numLayers)],
    [`${arch}.feed_forward_length`, u32(c.intermediateSize)],
    [`${arch}.attention.head_count`, u32(c.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(c.numKVHeads)],
    // Qwen3 lets NH * HS differ from C, so the head size is written rather than derived
    [`${arch}.attention.key_length`, u32(c.headDim)],
    [`${arch}.attention.value_length`, u32(c.headDim)],
    [`${arch}.rope.dimension_count`, u32(c.headDim)], // RoPE over the whole head
    [`${arch}.rope.freq_base`, { type: 'f32', value: c.ropeTheta }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: c.rmsNormEps }],
  ];
}

/** Our (HF) parameter name → llama.cpp's tensor name. */
export function ggufTensorName(name: string): string {
  if (name === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (name === 'model.norm.weight') return 'output_norm.weight';
  if (name === 'lm_head.weight') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(name);
  const part: Record<string, string> = {
    input_layernorm: 'attn_norm', post_attention_layernorm: 'ffn_norm',
    'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output',
    'self_attn.q_norm': 'attn_q_norm', 'self_attn.k_norm': 'attn_k_norm',
    'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down',
  };
  if (!m || !part[m[2]]) throw new Error(`internal: no GGUF name for parameter ${name}`);
  return `blk.${m[1]}.${part[m[2]]}.weight`;
}

/**
 * Reorder the rows of a q or k projection (rows = heads × HS) from our rotate-half RoPE
 * layout to llama.cpp's interleaved-pair layout (see the file header): within each head,
 * row i goes to 2i and row i + HS/2 to 2i + 1.
 */
export function interleaveRopeRows(w: Float32Array, rows: number, cols: number, headDim: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let r = 0; r < rows; r++) {
    const h = Math.floor(r / headDim), j = r % headDim;
    const to = h * headDim + (j < half ? 2 * j : 2 * (j - half) + 1);
    out.set(w.subarray(r * cols, (r + 1) * cols), to * cols);
  }
  return out;
}

/** Our model's weights as GGUF tensors of `dtype` (norms stay f32). Adapters must be merged first. */
export async function ggufTensors(model: GPT, dtype: GGUFDtype): Promise<GGUFTensor[]> {
  const c = model.config;
  const out: GGUFTensor[] = [];
  for (const [name, p] of model.params) {
    if (model.role(name) === 'adapter') throw new Error(`internal: merge the LoRA adapters before exporting (${name})`);
    let data: Float32Array = Float32Array.from(await p.data());
    const shape = [...p.shape];
    if (!c.qkNorm && /self_attn\.[qk]_proj\.weight$/.test(name)) data = interleaveRopeRows(data, shape[0], shape[1], c.headDim);
    // q8_0 needs rows of whole 32-value blocks; a matrix that has not stays f16
    const matrixType = dtype === 'q8_0' && shape[shape.length - 1] % Q8_BLOCK !== 0 ? 'f16' : dtype;
    out.push({ name: ggufTensorName(name), shape, dtype: shape.length === 1 ? 'f32' : matrixType, data });
  }
  return out;
}

/** The metadata key that marks a file as ours, so a later export may replace it. */
export const MADE_BY_KEY = 'minichat.made_by';

/** The whole GGUF file for a model and its tokenizer. */
export async function encodeModelGGUF(model: GPT, tok: Tokenizer, o: { dtype: GGUFDtype; name?: string }): Promise<Uint8Array> {
  const why = ggufIncompatibility(model.config);
  if (why) throw new UserError(`cannot export as GGUF: ${why}`);
  const meta: [string, GGUFValue][] = [
    ...modelMetadata(model.config, o.name ?? 'minichat', o.dtype),
    [MADE_BY_KEY, { type: 'string', value: 'export' }], // before the long token lists: claimGGUFOut looks near the start
    ...tokenizerMetadata(tok, model.config.vocabSize),
  ];
  return encodeGGUF(meta, await ggufTensors(model, o.dtype));
}

/**
 * --out for a GGUF: a new path, or a GGUF file an earlier `minichat export` wrote (it carries
 * MADE_BY_KEY among its first bytes' metadata). Anything else is left alone.
 */
export async function claimGGUFOut(path: string): Promise<void> {
  const info = await stat(path).catch(() => null);
  if (!info) {
    await mkdir(dirname(path), { recursive: true });
    return;
  }
  if (info.isDirectory()) throw new UserError(`${path} is a directory: --out names the .gguf file to write (e.g. ${path}/model.gguf)`);
  const head = (await readFile(path)).subarray(0, 1 << 16);
  const ours = new TextDecoder().decode(head.subarray(0, 4)) === 'GGUF' && Buffer.from(head).includes(MADE_BY_KEY);
  if (!ours) throw new UserError(`${path} exists and was not written by minichat export: choose another --out, or remove it yourself`);
}

/** Write the GGUF for `model` and `tok` to `out` (atomically: a temporary file, then rename). */
export async function exportGGUF(model: GPT, tok: Tokenizer, out: string, o: { dtype: GGUFDtype; name?: string }): Promise<number> {
  const bytes = await encodeModelGGUF(model, tok, o);
  await writeFile(out + '.tmp', bytes);
  await rename(out + '.tmp', out);
  return bytes.length;
}
