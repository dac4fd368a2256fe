// The GPT: preset sizes, shapes, causality, QK-norm, the single-prompt generate wrapper
// against the naive path, and Hugging Face export.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './tmp.ts';
import { generate, generateNaive } from '../src/model/engine.ts';
import { exportHF, hfTokenizerJson, qwen3Incompatibility } from '../src/io/export.ts';
import { GPT, type GPTConfig, PRESETS, countParams, paramSpecs, presetConfig } from '../src/model/gpt.ts';
import * as T from '../src/tensor/index.ts';
import { trainTokenizer } from '../src/tokenizer/index.ts';
import { readSafetensorsTensors } from '../src/io/checkpoint.ts';

/** A model small enough for exhaustive checks. */
const micro = (o: Partial<GPTConfig> = {}): GPTConfig =>
  presetConfig('tiny', { vocabSize: 50, hiddenSize: 16, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, intermediateSize: 24, maxSeqLen: 32, ...o });

const logitsOf = (m: GPT, ids: number[]) =>
  T.noGrad(() => T.tidy(() => Array.from(m.forward(T.tensor(ids, [1, ids.length], { dtype: 'int32' })).dataSync())));

describe('presets', () => {
  // The targets: tiny ~1M, small ~10M, minimind2-small ~26M, minimind3 ~64M, minimind2 ~104M.
  const targets: Record<string, [number, number]> = {
    tiny: [0.9e6, 1.2e6],
    small: [9e6, 12e6],
    'minimind2-small': [25e6, 27e6],
    minimind3: [62e6, 66e6],
    minimind2: [102e6, 106e6],
  };
  it('parameter counts are in the advertised ranges', () => {
    for (const [name, [lo, hi]] of Object.entries(targets)) {
      const n = countParams(PRESETS[name as keyof typeof PRESETS]);
      expect(n, name).toBeGreaterThanOrEqual(lo);
      expect(n, name).toBeLessThanOrEqual(hi);
    }
  });

  it('minimind2 matches the architecture by hand: 16 layers of (attention + SwiGLU) + embedding + norms', () => {
    const C = 768, F = 2048, V = 6400, HS = 96;
    const perLayer = C * 8 * HS + 2 * C * 2 * HS + 8 * HS * C + 3 * C * F + 2 * C; // q, k+v, o, mlp, 2 norms
    expect(countParams(PRESETS.minimind2)).toBe(V * C + 16 * perLayer + C);
  });

  it('an instantiated model has exactly the counted parameters, under Qwen3 names', () => {
    const m = new GPT(PRESETS.tiny, new T.Rng(0));
    expect(m.numParams()).toBe(countParams(PRESETS.tiny));
    expect([...m.params.keys()]).toContain('model.layers.3.self_attn.q_norm.weight');
    expect([...m.params.keys()]).not.toContain('lm_head.weight'); // tied
    m.dispose();
  });

  it('unknown presets and bad configs are clear errors', () => {
    expect(() => presetConfig('huge')).toThrow(/unknown preset "huge"; choose one of: tiny, small/);
    expect(() => presetConfig('tiny', { numHeads: 3 })).toThrow(/numHeads \(3\) must be a multiple of numKVHeads \(2\)/);
  });
});

describe('forward', () => {
  it('logits have shape (B*T, V) and every option runs', () => {
    for (const o of [{}, { qkNorm: false }, { mlp: 'relu2' as const }, { logitSoftcap: 5 }, { tieEmbeddings: false }]) {
      const m = new GPT(micro(o), new T.Rng(1));
      T.noGrad(() =>
        T.tidy(() => {
          const y = m.forward(T.tensor([1, 2, 3, 4, 5, 6], [2, 3], { dtype: 'int32' }));
          expect(y.shape).toEqual([6, 50]);
          if (o.logitSoftcap) expect(Math.max(...Array.from(y.dataSync(), Math.abs))).toBeLessThanOrEqual(5);
        }),
      );
      m.dispose();
    }
  });

  it('is causal: changing a later token never changes an earlier logit', () => {
    const m = new GPT(micro(), new T.Rng(2));
    const a = [3, 14, 15, 9, 26, 5, 35], b = [...a];
    b[4] = 42;
    const la = logitsOf(m, a), lb = logitsOf(m, b);
    const V = 50;
    expect(la.slice(0, 4 * V)).toEqual(lb.slice(0, 4 * V)); // positions 0..3 identical, bit for bit
    expect(la.slice(4 * V)).not.toEqual(lb.slice(4 * V)); // position 4 on does change
    m.dispose();
  });

  it('QK-norm makes the model invariant to the scale of q_proj and k_proj; without it, not', () => {
    for (const qkNorm of [true, false]) {
      const m = new GPT(micro({ qkNorm }), new T.Rng(3));
      const ids = [1, 7, 2, 9, 4];
      const before = logitsOf(m, ids);
      for (const [name, p] of m.params) {
        if (/self_attn\.(q|k)_proj/.test(name)) p.assign(T.noGrad(() => T.mulScalar(p, 10)));
      }
      const after = logitsOf(m, ids);
      const maxDiff = Math.max(...before.map((v, i) => Math.abs(v - after[i])));
      // rmsnorm(10 q) = rmsnorm(q) up to eps (1e-6 vs mean(q^2) ~ 1e-3): float32 noise only
      if (qkNorm) expect(maxDiff).toBeLessThan(1e-4);
      else expect(maxDiff).toBeGreaterThan(1e-3);
      m.dispose();
    }
  });
});

describe('generation engine (single-prompt wrapper; the batched engine is in test/engine.test.ts)', () => {
  it('generate (KV cache) produces the same tokens as the naive path', async () => {
    const m = new GPT(micro(), new T.Rng(4));
    for (const [temperature, topK] of [[0, 0], [1, 0], [0.8, 5]]) {
      // the wrapper seeds the engine with one draw from its rng
      const naive = await generateNaive(m, [[1, 2, 3]], { maxTokens: 20, temperature, topK, topP: 1, seed: new T.Rng(9).nextU32(), stop: [] });
      const fast = await generate(m, [1, 2, 3], { maxTokens: 20, temperature, topK, rng: new T.Rng(9) });
      expect(fast).toEqual(naive[0].tokens);
      expect(fast).toHaveLength(20);
    }
    m.dispose();
  });

  it('generation stops when the context is full instead of failing', async () => {
    const m = new GPT(micro({ maxSeqLen: 8 }), new T.Rng(5));
    const out = await generate(m, [1], { maxTokens: 20, temperature: 1, topK: 0, rng: new T.Rng(1) });
    // 1 prompt token + 7 fed tokens fill the 8 positions; the logits at the last give an 8th
    expect(out).toHaveLength(8);
    // a prompt longer than the context is cut to its last 8 tokens, which fill it: one token
    const long = await generate(m, Array.from({ length: 12 }, (_, i) => i + 1), { maxTokens: 5, temperature: 0, topK: 0, rng: new T.Rng(1) });
    expect(long).toHaveLength(1);
    m.dispose();
  });
});

describe('Hugging Face export', () => {
  it('writes Qwen3 names, shapes and config; reloading gives identical logits', async () => {
    const tok = await trainTokenizer(['the cat sat on the mat. the dog sat on the log.'.repeat(20)], { vocabSize: 300 });
    const cfg = micro({ vocabSize: tok.vocabSize });
    const m = new GPT(cfg, new T.Rng(6));
    const dir = join(tempDir('mc-export-'), 'hf');
    await exportHF(m, tok, dir);

    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', vocab_size: tok.vocabSize, hidden_size: 16,
      num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, intermediate_size: 24, tie_word_embeddings: true,
    });
    const weights = await readSafetensorsTensors(join(dir, 'model.safetensors'));
    const expected = paramSpecs(cfg);
    expect([...weights.keys()].sort()).toEqual(expected.map((s) => s.name).sort());
    expect(weights.get('model.layers.1.self_attn.k_norm.weight')!.shape).toEqual([8]);
    expect(weights.get('model.layers.0.self_attn.k_proj.weight')!.shape).toEqual([16, 16]); // (NKV*HS, C)
    expect(weights.get('model.layers.0.mlp.down_proj.weight')!.shape).toEqual([16, 24]);

    const m2 = new GPT(cfg, new T.Rng(99));
    m2.loadWeights(weights, 'export');
    const ids = tok.encode('the cat sat');
    expect(logitsOf(m2, ids)).toEqual(logitsOf(m, ids));

    // tokenizer.json: every ordinary token and every merge, in rank order
    const hf = hfTokenizerJson(tok) as { model: { vocab: Record<string, number>; merges: [string, string][] } };
    expect(Object.keys(hf.model.vocab)).toHaveLength(tok.encoder.size);
    expect(hf.model.merges).toHaveLength(tok.encoder.size - 256);
    expect(hf.model.vocab['Ġ' + 'cat'] ?? hf.model.vocab['Ġc'] ?? null).not.toBeNull(); // " c..." in GPT-2's byte alphabet
    m.dispose();
    m2.dispose();
  });

  it('refuses configs Qwen3 cannot express, naming the option', async () => {
    expect(qwen3Incompatibility(micro({ qkNorm: false }))).toMatch(/QK-norm is off/);
    expect(qwen3Incompatibility(micro({ mlp: 'relu2' }))).toMatch(/relu2/);
    expect(qwen3Incompatibility(micro({ logitSoftcap: 15 }))).toMatch(/soft-capping/);
    expect(qwen3Incompatibility(micro())).toBeNull();
    const tok = await trainTokenizer(['abc abc abd'], { vocabSize: 270 });
    const m = new GPT(micro({ qkNorm: false, vocabSize: tok.vocabSize }), new T.Rng(0));
    await expect(exportHF(m, tok, join(tempDir('mc-export-'), 'never'))).rejects.toThrow(/cannot export as Qwen3ForCausalLM: QK-norm is off/);
    m.dispose();
  });
});

describe('fused and composed paths', () => {
  it('give the same loss and gradients for a whole model', () => {
    const m = new GPT(micro(), new T.Rng(8));
    const ids = T.tensor([1, 4, 9, 16, 25, 36, 49, 3, 8, 13], [2, 5], { dtype: 'int32' });
    const targets = [4, 9, 16, 25, -1, 49, 3, 8, 13, 18];
    const run = (fused: boolean) => {
      m.fused = fused;
      return T.tidy(() => {
        const loss = m.loss(ids, targets);
        T.backward(loss);
        const grads = [...m.params.values()].map((p) => p.grad!.toArraySync());
        T.zeroGrad([...m.params.values()]);
        return { loss: loss.itemSync(), grads };
      });
    };
    const f = run(true), c = run(false);
    expect(Math.abs(f.loss - c.loss)).toBeLessThan(1e-5 * c.loss);
    f.grads.forEach((g, i) => {
      const scale = Math.max(...c.grads[i].map(Math.abs));
      g.forEach((v, j) => expect(Math.abs(v - c.grads[i][j])).toBeLessThanOrEqual(1e-4 * scale + 1e-6));
    });
    ids.dispose();
    m.dispose();
  });
});
