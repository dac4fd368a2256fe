// Export a checkpoint as a Hugging Face `Qwen3ForCausalLM` directory:
//   config.json        Qwen3's keys (checkpoint.ts qwen3Config)
//   model.safetensors  the same tensors under the same names (our names are HF's), float32
//   tokenizer.json     a Hugging Face `tokenizers` BPE model rebuilt from our ranks
//   tokenizer.tiktoken + tokenizer_minichat.json  our own tokenizer files, unchanged
//   generation_config.json, special_tokens_map.json, tokenizer_config.json
//
// Qwen3 cannot express three of our options, so those are refused with the option named:
// no QK-norm (Qwen3 always has q_norm/k_norm), the ReLU² MLP, and logit soft-capping.
//
// tokenizer.json: a tiktoken ranks table lists merged tokens but not the pair that made
// each one. BPE with ranks merges lowest rank first, so the pair behind token r is found by
// running the merge loop on r's bytes using only ranks < r: what is left is two parts.
// Bytes are written with GPT-2's byte-to-unicode table, as the ByteLevel pre-tokenizer does.
import { chmod, mkdir, mkdtemp, rm, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Tokenizer } from '../tokenizer/index.ts';
import { qwen3Config } from './checkpoint.ts';
import { encodeSafetensors, fromTensors } from './safetensors.ts';
import { UserError } from '../util/errors.ts';
import type { GPT, GPTConfig } from '../model/gpt.ts';

/** Why a config cannot be a Qwen3ForCausalLM, or null if it can. */
export function qwen3Incompatibility(c: GPTConfig): string | null {
  if (!c.qkNorm) return 'QK-norm is off (Qwen3 always normalises q and k): train with QK-norm to export';
  if (c.mlp !== 'swiglu') return `the MLP is ${c.mlp} (Qwen3 uses SwiGLU)`;
  if (c.logitSoftcap > 0) return `logit soft-capping (${c.logitSoftcap}) is on (Qwen3 has none)`;
  return null;
}

/** GPT-2's reversible map from bytes to printable unicode characters. */
export function byteToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = keep.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  return out;
}

/** Hugging Face tokenizers' JSON for our byte-level BPE. */
export function hfTokenizerJson(tok: Tokenizer): Record<string, unknown> {
  const b2u = byteToUnicode();
  const show = (bytes: Uint8Array) => Array.from(bytes, (b) => b2u[b]).join('');
  const bin = (bytes: Uint8Array) => String.fromCharCode(...bytes);
  const vocab: Record<string, number> = {};
  const merges: [string, string][] = [];
  const byRank = [...tok.encoder].sort((a, b) => a[1] - b[1]);
  for (const [key, rank] of byRank) {
    const bytes = Uint8Array.from(key, (ch) => ch.charCodeAt(0));
    vocab[show(bytes)] = rank;
    if (bytes.length < 2) continue;
    // replay BPE on this token's bytes with ranks below its own
    let parts = Array.from(bytes, (b) => Uint8Array.of(b));
    while (parts.length > 2) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i + 1 < parts.length; i++) {
        const r = tok.encoder.get(bin(parts[i]) + bin(parts[i + 1]));
        if (r !== undefined && r < rank && r < bestRank) {
          best = i;
          bestRank = r;
        }
      }
      if (best < 0) break;
      const merged = new Uint8Array(parts[best].length + parts[best + 1].length);
      merged.set(parts[best]);
      merged.set(parts[best + 1], parts[best].length);
      parts = [...parts.slice(0, best), merged, ...parts.slice(best + 2)];
    }
    if (parts.length === 2) merges.push([show(parts[0]), show(parts[1])]);
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: Object.entries(tok.specials).map(([content, id]) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: tok.pattern }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges },
  };
}

/** Write a Hugging Face Qwen3 directory for `model` and `tok` into `out` (atomically). */
export async function exportHF(model: GPT, tok: Tokenizer, out: string): Promise<void> {
  const why = qwen3Incompatibility(model.config);
  if (why) throw new UserError(`cannot export as Qwen3ForCausalLM: ${why}`);
  // a fresh temporary directory beside `out` (so the final rename stays on one file system)
  const parent = dirname(resolve(out));
  await mkdir(parent, { recursive: true });
  const tmp = await mkdtemp(join(parent, `.${basename(resolve(out))}.tmp-`));
  await chmod(tmp, 0o755); // mkdtemp makes it private (0700); the export is an ordinary directory
  const tensors = await fromTensors(Object.fromEntries(model.params));
  await writeFile(join(tmp, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  const bos = tok.bosId;
  await writeFile(join(tmp, 'config.json'), JSON.stringify({ ...qwen3Config(model.config), bos_token_id: bos, eos_token_id: bos, transformers_version: '4.51.0' }, null, 2) + '\n');
  await writeFile(join(tmp, 'generation_config.json'), JSON.stringify({ bos_token_id: bos, eos_token_id: bos, do_sample: true, temperature: 0.8, top_k: 40 }, null, 2) + '\n');
  await writeFile(join(tmp, 'tokenizer.json'), JSON.stringify(hfTokenizerJson(tok)) + '\n');
  const bosText = Object.entries(tok.specials).find(([, id]) => id === bos)?.[0] ?? null;
  await writeFile(join(tmp, 'special_tokens_map.json'), JSON.stringify({ bos_token: bosText, eos_token: bosText }, null, 2) + '\n');
  await writeFile(join(tmp, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast', bos_token: bosText, eos_token: bosText, model_max_length: model.config.maxSeqLen }, null, 2) + '\n');
  await writeFile(join(tmp, 'tokenizer.tiktoken'), tok.toTiktokenRanks());
  await writeFile(join(tmp, 'tokenizer_minichat.json'), JSON.stringify({ pattern: tok.pattern, specials: tok.specials }, null, 2) + '\n');
  await rm(out, { recursive: true, force: true });
  await rename(tmp, out);
}
