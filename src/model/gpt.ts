// The GPT: a decoder-only transformer in the Hugging Face Qwen3 layout, top to bottom in
// one file.
//
// Design choices (and the options that switch them off for ablations):
//   - token embedding, no position embedding: positions enter through RoPE
//     (Su et al. 2021, "RoFormer"), applied to q and k in the rotate-half layout;
//   - pre-norm RMSNorm (Zhang & Sennrich 2019) with a learnable weight, no biases anywhere;
//   - grouped-query attention (Ainslie et al. 2023): NKV key/value heads shared by NH query heads;
//   - QK-norm (Qwen3; Dehghani et al. 2023 "Scaling ViT to 22B"): a per-head RMSNorm on q and
//     k before RoPE, which bounds the attention logits and lets a higher learning rate be
//     stable. `qkNorm: false` gives the Llama-2 / MiniMind2 baseline;
//   - SwiGLU MLP (Shazeer 2020): down(silu(gate(x)) * up(x)). `mlp: 'relu2'` gives
//     down(relu(up(x))^2) as in modded-nanogpt / nanochat;
//   - final RMSNorm, LM head tied to the embedding or separate; optional logit soft-capping
//     cap * tanh(logits / cap) (Gemma 2).
// Parameter names are Hugging Face's, so exporting to a Qwen3ForCausalLM is a copy.
//
// Shapes: B batch, T time, C hidden, NH query heads, NKV KV heads, HS head size, V vocab.
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';

// ---------------------------------------------------------------------------------------
// config
// ---------------------------------------------------------------------------------------

export interface GPTConfig {
  vocabSize: number; // tokens in the vocabulary, specials included, e.g. 6400
  hiddenSize: number; // C: width of the residual stream, e.g. 768
  numLayers: number; // transformer blocks, e.g. 16
  numHeads: number; // NH: query heads
  numKVHeads: number; // NKV: key/value heads (NH % NKV == 0); NKV == NH is plain multi-head
  headDim: number; // HS: size of one head (Qwen3 lets NH * HS differ from C)
  intermediateSize: number; // MLP hidden width, e.g. 2048
  maxSeqLen: number; // longest context the RoPE tables are built for
  ropeTheta: number; // RoPE base frequency, e.g. 10000 (1e6 in Qwen3)
  rmsNormEps: number; // epsilon inside every RMSNorm
  tieEmbeddings: boolean; // LM head shares the token embedding matrix
  qkNorm: boolean; // RMSNorm on each head's q and k before RoPE
  mlp: 'swiglu' | 'relu2'; // MLP type
  logitSoftcap: number; // 0 = off; else logits = cap * tanh(logits / cap)
}

export type PresetName = 'tiny' | 'small' | 'minimind2-small' | 'minimind3' | 'minimind2';

const base = { maxSeqLen: 512, ropeTheta: 10000, rmsNormEps: 1e-6, tieEmbeddings: true, mlp: 'swiglu' as const, logitSoftcap: 0 };

/** Model sizes, from seconds-on-a-laptop to MiniMind2's ~104M. */
export const PRESETS: Record<PresetName, GPTConfig> = {
  // ~1M parameters: trains on a laptop CPU in minutes; the default for tests and speedrun
  tiny: { ...base, vocabSize: 2048, hiddenSize: 128, numLayers: 4, numHeads: 4, numKVHeads: 2, headDim: 32, intermediateSize: 384, maxSeqLen: 256, qkNorm: true },
  // ~11M parameters
  small: { ...base, vocabSize: 4096, hiddenSize: 384, numLayers: 6, numHeads: 6, numKVHeads: 2, headDim: 64, intermediateSize: 1024, qkNorm: true },
  // MiniMind2-Small (~26M): Llama-style, no QK-norm
  'minimind2-small': { ...base, vocabSize: 6400, hiddenSize: 512, numLayers: 8, numHeads: 8, numKVHeads: 2, headDim: 64, intermediateSize: 1408, qkNorm: false },
  // MiniMind3-style (~64M): wider heads and QK-norm as in Qwen3
  minimind3: { ...base, vocabSize: 6400, hiddenSize: 768, numLayers: 8, numHeads: 8, numKVHeads: 4, headDim: 96, intermediateSize: 2432, qkNorm: true },
  // MiniMind2 (~104M): Llama-style, no QK-norm
  minimind2: { ...base, vocabSize: 6400, hiddenSize: 768, numLayers: 16, numHeads: 8, numKVHeads: 2, headDim: 96, intermediateSize: 2048, qkNorm: false },
};

export function presetConfig(name: string, overrides: Partial<GPTConfig> = {}): GPTConfig {
  const p = PRESETS[name as PresetName];
  if (!p) throw new UserError(`unknown preset "${name}"; choose one of: ${Object.keys(PRESETS).join(', ')}`);
  return validateConfig({ ...p, ...overrides });
}

/** The one place a config is checked; every error names the field. */
export function validateConfig(c: GPTConfig): GPTConfig {
  const posInt = ['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKVHeads', 'headDim', 'intermediateSize', 'maxSeqLen'] as const;
  for (const k of posInt) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new UserError(`model config: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.numHeads % c.numKVHeads !== 0) throw new UserError(`model config: numHeads (${c.numHeads}) must be a multiple of numKVHeads (${c.numKVHeads})`);
  if (c.headDim % 2 !== 0) throw new UserError(`model config: headDim must be even for RoPE, got ${c.headDim}`);
  if (!(c.ropeTheta > 0) || !(c.rmsNormEps > 0)) throw new UserError('model config: ropeTheta and rmsNormEps must be positive');
  if (c.mlp !== 'swiglu' && c.mlp !== 'relu2') throw new UserError(`model config: mlp must be swiglu or relu2, got ${c.mlp}`);
  if (!(c.logitSoftcap >= 0)) throw new UserError(`model config: logitSoftcap must be >= 0, got ${c.logitSoftcap}`);
  return c;
}

// ---------------------------------------------------------------------------------------
// parameters
// ---------------------------------------------------------------------------------------

export interface ParamSpec {
  name: string; // Hugging Face name
  shape: number[];
  init: 'normal' | 'ones' | 'scaled'; // 'scaled': residual output projections
}

/** Every parameter of a config, in a fixed order, with its HF name and shape. */
export function paramSpecs(c: GPTConfig): ParamSpec[] {
  const C = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKVHeads * c.headDim, F = c.intermediateSize;
  const specs: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, C], init: 'normal' }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    specs.push(
      { name: p + 'input_layernorm.weight', shape: [C], init: 'ones' },
      { name: p + 'self_attn.q_proj.weight', shape: [q, C], init: 'normal' },
      { name: p + 'self_attn.k_proj.weight', shape: [kv, C], init: 'normal' },
      { name: p + 'self_attn.v_proj.weight', shape: [kv, C], init: 'normal' },
      { name: p + 'self_attn.o_proj.weight', shape: [C, q], init: 'scaled' },
    );
    if (c.qkNorm) {
      specs.push(
        { name: p + 'self_attn.q_norm.weight', shape: [c.headDim], init: 'ones' },
        { name: p + 'self_attn.k_norm.weight', shape: [c.headDim], init: 'ones' },
      );
    }
    specs.push({ name: p + 'post_attention_layernorm.weight', shape: [C], init: 'ones' });
    if (c.mlp === 'swiglu') specs.push({ name: p + 'mlp.gate_proj.weight', shape: [F, C], init: 'normal' });
    specs.push(
      { name: p + 'mlp.up_proj.weight', shape: [F, C], init: 'normal' },
      { name: p + 'mlp.down_proj.weight', shape: [C, F], init: 'scaled' },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [C], init: 'ones' });
  if (!c.tieEmbeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, C], init: 'normal' });
  return specs;
}

export function countParams(c: GPTConfig): number {
  return paramSpecs(c).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
}

/** Per-layer key/value cache for incremental decoding: (B, NKV, S, HS) each. */
export interface KVCache {
  k: (T.Tensor | null)[];
  v: (T.Tensor | null)[];
  /** positions already in the cache */
  length: number;
}

// ---------------------------------------------------------------------------------------
// the model
// ---------------------------------------------------------------------------------------

export class GPT {
  readonly config: GPTConfig;
  /**
   * Use the fused kernels for RMSNorm, attention and the loss (the default), or compose
   * them from primitives (the reference; slower, and stores the (T, T) scores). Both give
   * the same results (test/model.test.ts).
   */
  fused = true;
  /** name -> parameter, in paramSpecs order. Persistent tensors (created outside any scope). */
  readonly params = new Map<string, T.Tensor>();
  private rope: { cos: T.Tensor; sin: T.Tensor } | null = null;

  /** A freshly initialised model: normal(0, 0.02) weights, residual output projections
   *  scaled down by 1/sqrt(2 * layers) (GPT-2) so the residual stream starts small, norms 1. */
  constructor(config: GPTConfig, rng: T.Rng, backend?: T.Tensor['backend']) {
    this.config = validateConfig(config);
    const std = 0.02;
    for (const s of paramSpecs(config)) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      const data = s.init === 'ones' ? new Float32Array(n).fill(1) : rng.normalArray(n, s.init === 'scaled' ? std / Math.sqrt(2 * config.numLayers) : std);
      this.params.set(s.name, T.tensor(data, s.shape, { requiresGrad: true, backend }));
    }
  }

  get backend(): T.Tensor['backend'] {
    return this.p('model.embed_tokens.weight').backend;
  }

  /** Parameters as a named list (for optimizers and checkpoints). */
  namedParams(): { name: string; param: T.Tensor }[] {
    return [...this.params].map(([name, param]) => ({ name, param }));
  }

  numParams(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.size;
    return n;
  }

  private p(name: string): T.Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`internal: no parameter ${name}`);
    return t;
  }

  /** RoPE tables for positions [0, maxSeqLen), built once and sliced per call. */
  private ropeTables(): { cos: T.Tensor; sin: T.Tensor } {
    if (!this.rope) {
      const c = this.config;
      this.rope = T.noGrad(() => {
        const r = T.ropeTables(c.maxSeqLen, c.headDim, c.ropeTheta, 0, this.backend);
        return { cos: T.keep(r.cos), sin: T.keep(r.sin) };
      });
    }
    return this.rope;
  }

  /** RMSNorm over the last axis with a learnable weight. */
  private norm(x: T.Tensor, name: string): T.Tensor {
    const eps = this.config.rmsNormEps;
    return T.rmsnormAuto(x, this.p(name), eps, this.fused); // fused or composed: FUSED_POLICY decides
  }

  /** x (N, in) @ Wᵀ with W stored (out, in), as in torch.nn.Linear. */
  private linear(x: T.Tensor, name: string): T.Tensor {
    return T.matmul(x, this.p(name), { transB: true });
  }

  private attention(x: T.Tensor, l: number, B: number, Tn: number, cache?: KVCache): T.Tensor {
    const c = this.config, pre = `model.layers.${l}.self_attn.`;
    const NH = c.numHeads, NKV = c.numKVHeads, HS = c.headDim;
    const heads = (t: T.Tensor, n: number) => T.permute(T.reshape(t, [B, Tn, n, HS]), [0, 2, 1, 3]); // (B, n, T, HS)
    let q = heads(this.linear(x, pre + 'q_proj.weight'), NH); // (B, NH, T, HS)
    let k = heads(this.linear(x, pre + 'k_proj.weight'), NKV); // (B, NKV, T, HS)
    let v = heads(this.linear(x, pre + 'v_proj.weight'), NKV); // (B, NKV, T, HS)
    if (c.qkNorm) {
      q = this.norm(q, pre + 'q_norm.weight');
      k = this.norm(k, pre + 'k_norm.weight');
    }
    const start = cache?.length ?? 0;
    const { cos, sin } = this.ropeTables();
    const cosT = T.slice(cos, 0, start, start + Tn), sinT = T.slice(sin, 0, start, start + Tn); // (T, HS)
    q = T.rope(q, cosT, sinT);
    k = T.rope(k, cosT, sinT);
    if (cache) {
      // append this call's keys and values; the cache owns the concatenation
      const pk = cache.k[l], pv = cache.v[l];
      if (pk && pv) {
        k = T.concat([pk, k], 2);
        v = T.concat([pv, v], 2);
        pk.dispose();
        pv.dispose();
      }
      cache.k[l] = T.keep(k);
      cache.v[l] = T.keep(v);
    }
    // fused (never stores the (T, T) scores) or composed, per backend: FUSED_POLICY in src/backend/fused.ts
    const y = T.attentionAuto(q, k, v, true, this.fused); // (B, NH, T, HS)
    const merged = T.reshape(T.permute(y, [0, 2, 1, 3]), [B * Tn, NH * HS]);
    return this.linear(merged, pre + 'o_proj.weight'); // (B*T, C)
  }

  private mlp(x: T.Tensor, l: number): T.Tensor {
    const pre = `model.layers.${l}.mlp.`;
    const up = this.linear(x, pre + 'up_proj.weight'); // (B*T, F)
    const h = this.config.mlp === 'swiglu' ? T.mul(T.silu(this.linear(x, pre + 'gate_proj.weight')), up) : T.relu2(up);
    return this.linear(h, pre + 'down_proj.weight'); // (B*T, C)
  }

  /**
   * Logits for token ids idx (B, T), as (B*T, V). With a cache, idx holds only the new
   * positions and the cache is extended (inference only).
   */
  forward(idx: T.Tensor, cache?: KVCache): T.Tensor {
    const c = this.config;
    if (idx.dtype !== 'int32' || idx.rank !== 2) throw new Error(`GPT.forward: idx must be int32 (B, T), got ${idx.describe()}`);
    const [B, Tn] = idx.shape;
    const start = cache?.length ?? 0;
    if (start + Tn > c.maxSeqLen) throw new UserError(`sequence of ${start + Tn} tokens exceeds the model's maxSeqLen ${c.maxSeqLen}`);
    let x = T.reshape(T.gather(this.p('model.embed_tokens.weight'), idx), [B * Tn, c.hiddenSize]); // (B*T, C)
    for (let l = 0; l < c.numLayers; l++) {
      const pre = `model.layers.${l}.`;
      x = T.add(x, this.attention(this.norm(x, pre + 'input_layernorm.weight'), l, B, Tn, cache));
      x = T.add(x, this.mlp(this.norm(x, pre + 'post_attention_layernorm.weight'), l));
    }
    if (cache) cache.length += Tn;
    x = this.norm(x, 'model.norm.weight');
    const head = c.tieEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    let logits = this.linear(x, head); // (B*T, V)
    if (c.logitSoftcap > 0) logits = T.mulScalar(T.tanh(T.mulScalar(logits, 1 / c.logitSoftcap)), c.logitSoftcap);
    return logits;
  }

  /** Mean next-token cross-entropy of idx (B, T) against targets (B*T, host ints; -1 = skip). */
  loss(idx: T.Tensor, targets: ArrayLike<number>): T.Tensor {
    const logits = this.forward(idx);
    return T.crossEntropyAuto(logits, targets, -1, this.fused);
  }

  newCache(): KVCache {
    return { k: new Array(this.config.numLayers).fill(null), v: new Array(this.config.numLayers).fill(null), length: 0 };
  }

  static disposeCache(cache: KVCache): void {
    [...cache.k, ...cache.v].forEach((t) => t?.dispose());
  }

  /** Replace every parameter's values (shapes must match exactly). */
  loadWeights(weights: Map<string, { shape: number[]; data: ArrayLike<number> }>, source: string): void {
    for (const [name, p] of this.params) {
      const w = weights.get(name);
      if (!w) throw new UserError(`${source}: missing parameter ${name}`);
      if (w.shape.join() !== p.shape.join()) {
        throw new UserError(`${source}: ${name} has shape [${w.shape}] but the model config expects [${p.shape}]`);
      }
      p.assign(T.noGrad(() => T.tensor(w.data, w.shape, { backend: p.backend })));
    }
  }

  dispose(): void {
    for (const p of this.params.values()) p.dispose();
    this.rope?.cos.dispose();
    this.rope?.sin.dispose();
  }
}
