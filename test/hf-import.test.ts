// Importing Hugging Face checkpoints (src/io/hf-import.ts, `minichat import`):
//   - the committed fixture test/fixtures/hf-llama-tiny (a SmolLM2-style LlamaForCausalLM in
//     two shards, bf16 + f16, untied head; written by scripts/make-hf-fixture.py) gives the ids
//     of Hugging Face's BPE algorithm and the logits of an independent numpy forward pass;
//   - export → import round trips (Qwen3 with QK-norm through export.ts, a tied Llama written
//     here) give identical logits and identical token ids;
//   - everything minichat cannot represent is refused with one line naming it.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './tmp.ts';
import { exportHF, hfTokenizerJson } from '../src/io/export.ts';
import { hfModelConfig, hfTokenizer, importHF } from '../src/io/hf-import.ts';
import { loadCheckpoint, modelFromParts, qwen3Config } from '../src/io/checkpoint.ts';
import { decodeSafetensors, encodeSafetensors, fromTensors } from '../src/io/safetensors.ts';
import { GPT, type GPTConfig, presetConfig } from '../src/model/gpt.ts';
import * as T from '../src/tensor/index.ts';
import { trainTokenizer } from '../src/tokenizer/index.ts';
import { DEFAULT_SPECIALS, renderForCompletion } from '../src/tokenizer/chat.ts';
import { PATTERNS } from '../src/tokenizer/patterns.ts';
import { UserError } from '../src/util/errors.ts';

const root = resolve(import.meta.dirname, '..');
const bin = join(root, 'bin/minichat.mjs');
const FIXTURE = join(root, 'test/fixtures/hf-llama-tiny');
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });

const logitsOf = (m: GPT, ids: number[]) =>
  T.noGrad(() => T.tidy(() => Array.from(m.forward(T.tensor(ids, [1, ids.length], { dtype: 'int32' })).dataSync())));

/** A text with unicode and whitespace runs, for the tokenizer comparisons. */
const TEXT = 'The cat sat on the mat.\n\n  Then   12 dogs — café, naïve 🙂\tend 2024!';

const micro = (o: Partial<GPTConfig> = {}): GPTConfig =>
  presetConfig('tiny', { vocabSize: 50, hiddenSize: 16, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, intermediateSize: 24, maxSeqLen: 32, ...o });

/** A copy of the fixture whose config.json / tokenizer.json are edited by `edit`. */
function fixtureCopy(edit: { config?: (c: Record<string, unknown>) => void; tokenizer?: (t: Record<string, any>) => void } = {}): string {
  const dir = join(tempDir('mc-hf-'), 'model');
  mkdirSync(dir);
  for (const f of readdirSync(FIXTURE)) copyFileSync(join(FIXTURE, f), join(dir, f));
  for (const [file, fn] of [['config.json', edit.config], ['tokenizer.json', edit.tokenizer]] as const) {
    if (!fn) continue;
    const j = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    fn(j);
    writeFileSync(join(dir, file), JSON.stringify(j));
  }
  return dir;
}

describe('the committed Llama fixture (independent reference)', () => {
  const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as { text: string; ids: number[] };
  const ref = decodeSafetensors(readFileSync(join(FIXTURE, 'expected-logits.safetensors'))).tensors.logits;

  it('gives the ids of Hugging Face BPE and the logits of the numpy forward pass (float32 tolerance)', async () => {
    const r = await importHF(FIXTURE);
    expect(r.architecture).toBe('LlamaForCausalLM');
    expect(r.sourceDtypes).toEqual(['BF16', 'F16']);
    const c = r.parts.config;
    expect(c).toMatchObject({ qkNorm: false, tieEmbeddings: false, ropeTheta: 100000, rmsNormEps: 1e-5, numHeads: 4, numKVHeads: 2, headDim: 8, maxSeqLen: 64 });
    // ids: the digits split one by one, spaces before digits, a tab, accents and an emoji
    expect(r.parts.tokenizer.encodeOrdinary(expected.text)).toEqual(expected.ids);
    expect(r.parts.tokenizer.decode(expected.ids)).toBe(expected.text);

    const V = r.hfVocabSize, Tn = expected.ids.length;
    expect(ref.shape).toEqual([Tn, V]);
    const m = modelFromParts(r.parts);
    const ours = logitsOf(m, expected.ids);
    const Vm = c.vocabSize; // V + the appended chat tokens
    expect(Vm).toBe(V + DEFAULT_SPECIALS.length);
    let maxErr = 0;
    for (let t = 0; t < Tn; t++) for (let v = 0; v < V; v++) maxErr = Math.max(maxErr, Math.abs(ours[t * Vm + v] - ref.data[t * V + v]));
    // float32 arithmetic against float64 on logits of size ~1-10 in a 2-layer model: 1e-4 absolute
    expect(maxErr).toBeLessThan(1e-4);
    // and the comparison can fail: the logits are not near-constant
    expect(Math.max(...ref.data) - Math.min(...ref.data)).toBeGreaterThan(1);
    m.dispose();
  });

  it('`minichat import` writes an ordinary run directory that chat-rendering and loadCheckpoint use', () => {
    const out = join(tempDir('mc-hf-'), 'run');
    const r = run('import', '--hf', FIXTURE, '--out', out);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/imported LlamaForCausalLM: 0\.04M parameters \(BF16\/F16 → float32\).*untied head, rope theta 100000, vocab 304 \+ 11 chat tokens/);
    expect(JSON.parse(readFileSync(join(out, 'made-by.json'), 'utf8')).command).toBe('import');
    expect(existsSync(join(out, 'checkpoint', 'model.safetensors'))).toBe(true);
    return loadCheckpoint(out).then(({ model, tokenizer, state }) => {
      expect(state).toBeNull();
      const prompt = renderForCompletion(tokenizer, [{ role: 'user', content: 'hi' }]);
      expect(prompt[0]).toBe(tokenizer.specials['<|bos|>']);
      expect(prompt.at(-1)).toBe(304 + DEFAULT_SPECIALS.indexOf('<|assistant_start|>'));
      // the imported head: a new token's embedding row is the mean row, the old rows unchanged
      expect(logitsOf(model, prompt).every(Number.isFinite)).toBe(true);
      model.dispose();
      // a second import into the same --out replaces it; --no-chat-tokens keeps the vocabulary as is
      const again = run('import', '--hf', FIXTURE, '--out', out, '--no-chat-tokens', '--json');
      expect(again.status).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ vocab: 304, added_tokens: [], dtypes: ['BF16', 'F16'], qk_norm: false, tied: false });
    });
  });

  it('without chat tokens the logits cover the vocabulary exactly as the reference', async () => {
    const r = await importHF(FIXTURE, { chatTokens: false });
    expect(r.parts.config.vocabSize).toBe(304);
    expect(r.parts.tokenizer.vocabSize).toBe(304);
    expect(r.parts.tokenizer.specials).toEqual({ '<|endoftext|>': 0, '<|im_start|>': 1, '<|im_end|>': 2 });
    const m = modelFromParts(r.parts);
    const ours = logitsOf(m, expected.ids);
    expect(ours.length).toBe(ref.data.length);
    for (let i = 0; i < ours.length; i++) expect(Math.abs(ours[i] - ref.data[i])).toBeLessThan(1e-4);
    m.dispose();
  });

  it('a vocab_size larger than the tokenizer: the unused ids become reserved specials', async () => {
    // the head and embedding must then have the larger shape: the fixture's do not
    const dir = fixtureCopy({ config: (c) => (c.vocab_size = 310) });
    await expect(importHF(dir)).rejects.toThrow(/model\.embed_tokens\.weight has shape \[304,32\] but config\.json implies \[310,32\]/);
  });
});

describe('export → import round trips', () => {
  it('Qwen3 (QK-norm, tied): identical logits and identical token ids', async () => {
    const tok = await trainTokenizer([(TEXT + ' the cat sat on the mat. the dog sat on the log. ').repeat(20)], { vocabSize: 330 });
    const cfg = micro({ vocabSize: tok.vocabSize, ropeTheta: 5e5, rmsNormEps: 1e-5 });
    const m = new GPT(cfg, new T.Rng(6));
    const dir = join(tempDir('mc-hf-'), 'hf');
    await exportHF(m, tok, dir);
    const r = await importHF(dir);
    expect(r.architecture).toBe('Qwen3ForCausalLM');
    expect(r.addedTokens).toEqual([]); // a minichat tokenizer has every chat token already
    expect(r.parts.config).toEqual(cfg);
    const t2 = r.parts.tokenizer;
    expect(t2.encode(TEXT)).toEqual(tok.encode(TEXT));
    expect(t2.encode('<|bos|>hi<|user_end|>', { allowedSpecial: 'all' })).toEqual(tok.encode('<|bos|>hi<|user_end|>', { allowedSpecial: 'all' }));
    expect(t2.specials).toEqual(tok.specials);
    expect([...t2.encoder].sort()).toEqual([...tok.encoder].sort());
    expect(t2.pattern).toBe(tok.pattern);
    const m2 = modelFromParts(r.parts);
    const ids = tok.encode(TEXT).slice(0, 32);
    expect(logitsOf(m2, ids)).toEqual(logitsOf(m, ids));
    m.dispose();
    m2.dispose();
  });

  it('Llama (no QK-norm, tied, GPT-2 pre-tokenizer): identical logits and ids', async () => {
    const tok = await trainTokenizer([TEXT.repeat(30)], { vocabSize: 300, pattern: PATTERNS.gpt2 });
    const cfg = micro({ vocabSize: tok.vocabSize, qkNorm: false, maxSeqLen: 48 });
    const m = new GPT(cfg, new T.Rng(7));
    const dir = join(tempDir('mc-hf-'), 'llama');
    mkdirSync(dir);
    const q = qwen3Config(cfg);
    const llama = { ...q, architectures: ['LlamaForCausalLM'], model_type: 'llama', rope_interleaved: false, mlp_bias: false };
    for (const k of ['use_sliding_window', 'sliding_window', 'max_window_layers']) delete (llama as Record<string, unknown>)[k];
    writeFileSync(join(dir, 'config.json'), JSON.stringify(llama));
    const tj = hfTokenizerJson(tok) as Record<string, any>;
    expect(tj.pre_tokenizer.pretokenizers[0].pattern.Regex).toBe(tok.pattern);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tj));
    writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(await fromTensors(Object.fromEntries(m.params)), { format: 'pt' }));
    const r = await importHF(dir);
    expect(r.architecture).toBe('LlamaForCausalLM');
    expect(r.parts.config).toEqual(cfg);
    expect(r.parts.tokenizer.encode(TEXT)).toEqual(tok.encode(TEXT));
    const m2 = modelFromParts(r.parts);
    const ids = tok.encode(TEXT).slice(0, 40);
    expect(ids.length).toBeGreaterThan(20);
    expect(logitsOf(m2, ids)).toEqual(logitsOf(m, ids));
    // the same directory called Qwen3 lacks the QK-norm weights
    writeFileSync(join(dir, 'config.json'), JSON.stringify(q));
    await expect(importHF(dir)).rejects.toThrow(/missing tensor model\.layers\.0\.self_attn\.q_norm\.weight/);
    m.dispose();
    m2.dispose();
  });
});

describe('what cannot be imported: one line each', () => {
  const base = JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8'));
  const cfgError = (edit: Record<string, unknown>) => {
    try {
      hfModelConfig({ ...base, ...edit });
    } catch (e) {
      expect(e).toBeInstanceOf(UserError);
      expect((e as Error).message).not.toContain('\n');
      return (e as Error).message;
    }
    return 'no error';
  };

  it('architectures and config keys', () => {
    expect(hfModelConfig(base).config.qkNorm).toBe(false);
    expect(cfgError({ architectures: ['MistralForCausalLM'] })).toMatch(/architecture MistralForCausalLM is not supported \(minichat imports Qwen3ForCausalLM and LlamaForCausalLM\)/);
    expect(cfgError({ architectures: ['Qwen3MoeForCausalLM'] })).toMatch(/Qwen3MoeForCausalLM is not supported/);
    expect(cfgError({ rope_scaling: { rope_type: 'llama3', factor: 32 } })).toMatch(/"rope_scaling": .*llama3.* means RoPE scaling/);
    expect(cfgError({ rope_scaling: { rope_type: 'default' } })).toBe('no error');
    expect(cfgError({ attention_bias: true })).toMatch(/"attention_bias": true means biases on the attention projections/);
    expect(cfgError({ architectures: ['Qwen3ForCausalLM'], use_sliding_window: true, sliding_window: 4096 })).toMatch(/"use_sliding_window": true means sliding-window attention/);
    expect(cfgError({ architectures: ['Qwen3ForCausalLM'], use_sliding_window: false, sliding_window: 4096, head_dim: 8 })).toBe('no error');
    expect(cfgError({ sliding_window: 4096 })).toMatch(/"sliding_window": 4096 means sliding-window attention/);
    expect(cfgError({ num_experts: 8 })).toMatch(/"num_experts": 8 means a mixture of experts/);
    expect(cfgError({ rope_interleaved: true })).toMatch(/interleaved RoPE/);
    expect(cfgError({ partial_rotary_factor: 0.5 })).toMatch(/unknown key "partial_rotary_factor" for LlamaForCausalLM/);
    expect(cfgError({ hidden_act: 'gelu' })).toMatch(/"hidden_act": "gelu" is not supported/);
    expect(cfgError({ num_key_value_heads: 3 })).toMatch(/numHeads \(4\) must be a multiple of numKVHeads \(3\)/);
  });

  const tokJson = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8'));
  const tokError = (edit: (t: Record<string, any>) => void) => {
    const t = structuredClone(tokJson);
    edit(t);
    try {
      hfTokenizer(t);
    } catch (e) {
      expect(e).toBeInstanceOf(UserError);
      expect((e as Error).message).not.toContain('\n');
      return (e as Error).message;
    }
    return 'no error';
  };

  it('tokenizers minichat cannot represent, with the reason', () => {
    expect(tokError(() => {})).toBe('no error');
    expect(tokError((t) => (t.model.type = 'Unigram'))).toMatch(/cannot import this tokenizer: the model is Unigram, not BPE/);
    expect(tokError((t) => (t.model.byte_fallback = true))).toMatch(/byte_fallback is on \(a SentencePiece-style BPE/);
    expect(tokError((t) => (t.pre_tokenizer = { type: 'Metaspace', replacement: '▁' }))).toMatch(/the pre-tokenizer is Metaspace, not byte-level/);
    expect(tokError((t) => (t.pre_tokenizer.pretokenizers[1].add_prefix_space = true))).toMatch(/add_prefix_space: true/);
    expect(tokError((t) => (t.pre_tokenizer.pretokenizers[0] = { type: 'Punctuation' }))).toMatch(/Punctuation \+ ByteLevel .* has no single-regex equivalent/);
    expect(tokError((t) => (t.normalizer = { type: 'Lowercase' }))).toMatch(/the normalizer Lowercase is not supported/);
    expect(tokError((t) => (t.model.merges = [...t.model.merges].reverse()))).toMatch(/ids in merge order/);
    expect(tokError((t) => delete t.model.vocab['Ā'])).toMatch(/byte 0x00 has no token/);
    expect(tokError((t) => (t.model.vocab['Ġzzz'] = 999))).toMatch(/token id 999 is in the vocab but no merge makes it/);
  });

  it('the CLI: one line, no stack trace, --out untouched', () => {
    const parent = tempDir('mc-hf-');
    const cases: [string, RegExp][] = [
      [fixtureCopy({ config: (c) => (c.architectures = ['GPT2LMHeadModel']) }), /^minichat: .*config\.json: architecture GPT2LMHeadModel is not supported/],
      [fixtureCopy({ config: (c) => (c.rope_scaling = { type: 'linear', factor: 2 }) }), /^minichat: .*"rope_scaling": .* means RoPE scaling/],
      [fixtureCopy({ tokenizer: (t) => (t.model.type = 'WordPiece') }), /^minichat: .*tokenizer\.json: cannot import this tokenizer: the model is WordPiece, not BPE/],
      [join(parent, 'missing'), /^minichat: --hf .*missing: no such directory/],
    ];
    for (const [dir, re] of cases) {
      const out = join(parent, 'out');
      const r = run('import', '--hf', dir, '--out', out);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(re);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('sharded weights that disagree with their index, and shapes that disagree with the config', async () => {
    const dir = fixtureCopy();
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    index.weight_map['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    await expect(importHF(dir)).rejects.toThrow(/holds model\.norm\.weight, which the index puts in model-00001-of-00002\.safetensors/);
    const dir2 = fixtureCopy({ config: (c) => (c.intermediate_size = 48) });
    await expect(importHF(dir2)).rejects.toThrow(/mlp\.gate_proj\.weight has shape \[64,32\] but config\.json implies \[48,32\]/);
  });
});
