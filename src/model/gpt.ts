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
import type { NamedParam, ParamRole } from '../optim/types.ts';
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
  role: ParamRole; // what it is for: decides its optimizer and weight decay (optim/types.ts)
}

/** Every parameter of a config, in a fixed order, with its HF name and shape. */
export function paramSpecs(c: GPTConfig): ParamSpec[] {
  const C = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKVHeads * c.headDim, F = c.intermediateSize;
  const specs: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, C], init: 'normal', role: 'embedding' }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    specs.push(
      { name: p + 'input_layernorm.weight', shape: [C], init: 'ones', role: 'gain' },
      { name: p + 'self_attn.q_proj.weight', shape: [q, C], init: 'normal', role: 'matrix' },
      { name: p + 'self_attn.k_proj.weight', shape: [kv, C], init: 'normal', role: 'matrix' },
      { name: p + 'self_attn.v_proj.weight', shape: [kv, C], init: 'normal', role: 'matrix' },
      { name: p + 'self_attn.o_proj.weight', shape: [C, q], init: 'scaled', role: 'matrix' },
    );
    if (c.qkNorm) {
      specs.push(
        { name: p + 'self_attn.q_norm.weight', shape: [c.headDim], init: 'ones', role: 'gain' },
        { name: p + 'self_attn.k_norm.weight', shape: [c.headDim], init: 'ones', role: 'gain' },
      );
    }
    specs.push({ name: p + 'post_attention_layernorm.weight', shape: [C], init: 'ones', role: 'gain' });
    if (c.mlp === 'swiglu') specs.push({ name: p + 'mlp.gate_proj.weight', shape: [F, C], init: 'normal', role: 'matrix' });
    specs.push(
      { name: p + 'mlp.up_proj.weight', shape: [F, C], init: 'normal', role: 'matrix' },
      { name: p + 'mlp.down_proj.weight', shape: [C, F], init: 'scaled', role: 'matrix' },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [C], init: 'ones', role: 'gain' });
  if (!c.tieEmbeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, C], init: 'normal', role: 'head' });
  return specs;
}

export function countParams(c: GPTConfig): number {
  return paramSpecs(c).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Per-layer key/value cache for batched incremental decoding (src/model/engine.ts).
 * Preallocated once for `rows` sequences of up to `maxLen` positions and written in place
 * (T.writeSlice), so memory does not grow while generating. All rows share one position
 * counter, `length`; prompts of different lengths are LEFT-padded, and `start[r]` is the
 * first real position of row r: keys before it are masked out of attention. With RoPE the
 * scores depend only on relative positions, so a padded row computes what it would alone.
 */
export interface KVCache {
  k: T.Tensor[]; // per layer (R, NKV, maxLen, HS)
  v: T.Tensor[]; // per layer (R, NKV, maxLen, HS)
  rows: number; // R: sequences in the batch
  maxLen: number; // positions allocated (<= maxSeqLen)
  length: number; // positions already filled, the same for every row
  start: number[] | null; // per row: first non-pad position; null = no row is padded
}

/**
 * Something that adds to a linear layer's output: LoRA (lora.ts) implements it. GPT.linear
 * calls `apply(x, name, x Wᵀ)` for every projection, so adapters attach in one place.
 */
export interface LinearAdapter {
  apply(x: T.Tensor, name: string, y: T.Tensor): T.Tensor;
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
  /**
   * Memory-lean training (docs/memory.md), both off by default; they change what is kept for
   * the backward pass, never the results (test/memory-options.test.ts):
   *   recompute: keep only each block's input during the forward and run the block again inside
   *              the backward (T.checkpoint), so one block's activations are alive at a time;
   *   ceChunk:   the LM head and the cross-entropy over at most ceChunk of the B*T positions at
   *              a time, each chunk recomputed in the backward, so the (B*T, V) logits never
   *              exist whole (0 = off: one (B*T, V) logits tensor, as in forward()).
   */
  recompute = false;
  ceChunk = 0;
  /** name -> parameter, in paramSpecs order. Persistent tensors (created outside any scope). */
  readonly params = new Map<string, T.Tensor>();
  /** name -> role, from paramSpecs (adapters attached later add theirs). */
  readonly roles = new Map<string, ParamRole>();
  /** Adapters on the linear layers (LoRA), or null. */
  adapter: LinearAdapter | null = null;
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
      this.roles.set(s.name, s.role);
    }
  }

  get backend(): T.Tensor['backend'] {
    return this.p('model.embed_tokens.weight').backend;
  }

  /** Every parameter with its name and role (for checkpoints; optimizers take trainableParams). */
  namedParams(): NamedParam[] {
    return [...this.params].map(([name, param]) => ({ name, param, role: this.role(name) }));
  }

  /** The parameters that train: those with requiresGrad (see setTrainable). */
  trainableParams(): NamedParam[] {
    return this.namedParams().filter((p) => p.param.requiresGrad);
  }

  /** Register an extra parameter (a LoRA factor) so optimizers and checkpoints see it. */
  addParam(name: string, param: T.Tensor, role: ParamRole): void {
    if (this.params.has(name)) throw new Error(`internal: parameter ${name} exists already`);
    this.params.set(name, param);
    this.roles.set(name, role);
  }

  removeParam(name: string): void {
    this.params.get(name)?.dispose();
    this.params.delete(name);
    this.roles.delete(name);
  }

  role(name: string): ParamRole {
    const r = this.roles.get(name);
    if (!r) throw new Error(`internal: no role for parameter ${name}`);
    return r;
  }

  /**
   * Freeze or unfreeze parameters chosen by a predicate on their name and role, e.g.
   * `model.setTrainable((p) => p.role === 'adapter')` trains only LoRA adapters. A frozen
   * parameter records no gradient (autograd skips it) and joins no optimizer group.
   */
  setTrainable(pred: (p: { name: string; role: ParamRole }) => boolean): void {
    for (const [name, param] of this.params) param.requiresGrad = pred({ name, role: this.role(name) });
  }

  numParams(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.size;
    return n;
  }

  /** Every parameter's gradient copied to the host, and their joint L2 norm (parity checks: CPU vs WebGPU). */
  async gradsOnHost(): Promise<{ grads: Map<string, Float32Array>; norm: number }> {
    const grads = new Map<string, Float32Array>();
    let sq = 0;
    for (const [name, p] of this.params) {
      if (!p.grad) continue;
      const g = Float32Array.from(await p.grad.data());
      grads.set(name, g);
      for (const v of g) sq += v * v;
    }
    return { grads, norm: Math.sqrt(sq) };
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
    const y = T.matmul(x, this.p(name), { transB: true });
    return this.adapter ? this.adapter.apply(x, name, y) : y;
  }

  private attention(x: T.Tensor, l: number, B: number, Tn: number, cache?: KVCache, mask?: T.Tensor): T.Tensor {
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
    q = T.ropeAuto(q, cosT, sinT, this.fused); // one kernel or the composed op: FUSED_POLICY decides
    k = T.ropeAuto(k, cosT, sinT, this.fused);
    if (cache) {
      // Write this call's keys and values into the preallocated cache at [start, start+T).
      // A prefill may have fewer rows than the cache (B prompts, R = B*G rows): each prompt's
      // keys are copied into its G consecutive rows, which is how a prompt is prefilled once
      // and forked into G samples.
      const G = cache.rows / B;
      const fork = (t: T.Tensor) => (G === 1 ? t : T.reshape(T.expand(T.reshape(t, [B, 1, NKV, Tn, HS]), [B, G, NKV, Tn, HS]), [B * G, NKV, Tn, HS]));
      T.writeSlice(cache.k[l], fork(k), 2, start);
      T.writeSlice(cache.v[l], fork(v), 2, start);
      if (start > 0) {
        // attend over everything cached so far (a copy of the filled part; the rest is unused)
        k = T.slice(cache.k[l], 2, 0, start + Tn); // (B, NKV, S, HS)
        v = T.slice(cache.v[l], 2, 0, start + Tn); // (B, NKV, S, HS)
      }
    }
    // The cache path with padding needs a per-row key mask, which the fused kernels do not
    // take: every padded batch runs the composed masked attention, on every backend. Otherwise
    // fused (never stores the (T, T) scores) or composed, per backend: FUSED_POLICY in
    // src/backend/fused.ts.
    const y = mask ? maskedAttention(q, k, v, mask) : T.attentionAuto(q, k, v, true, this.fused); // (B, NH, T, HS)
    const merged = T.reshape(T.permute(y, [0, 2, 1, 3]), [B * Tn, NH * HS]);
    return this.linear(merged, pre + 'o_proj.weight'); // (B*T, C)
  }

  private mlp(x: T.Tensor, l: number): T.Tensor {
    const pre = `model.layers.${l}.mlp.`;
    const up = this.linear(x, pre + 'up_proj.weight'); // (B*T, F)
    // silu(gate) * up: one kernel or the composed ops, per FUSED_POLICY
    const h = this.config.mlp === 'swiglu' ? T.swigluAuto(this.linear(x, pre + 'gate_proj.weight'), up, this.fused) : T.relu2(up);
    return this.linear(h, pre + 'down_proj.weight'); // (B*T, C)
  }

  /**
   * Logits for token ids idx (B, T), as (B*T, V). With a cache, idx holds only the new
   * positions, which are written into the cache (inference only: call inside T.noGrad).
   * B equals cache.rows, except for the first call (the prefill), where cache.rows may be a
   * multiple G of B: each prompt row then fills G cache rows.
   */
  forward(idx: T.Tensor, cache?: KVCache): T.Tensor {
    return this.head(this.hidden(idx, cache));
  }

  /**
   * Logits (M, V) at some positions only: `rows` int32 (M) indexes the B*T positions of idx
   * (row b*T + t). The transformer runs on every position (attention needs them all); only
   * the LM head, whose (·, V) output is the largest activation, is skipped elsewhere. RL's
   * log-probs (model/logprobs.ts) need the logits only where a sampled token is predicted.
   */
  logitsAt(idx: T.Tensor, rows: T.Tensor): T.Tensor {
    return this.head(T.gather(this.hidden(idx), rows));
  }

  /** The final hidden states (B*T, C) of idx (B, T), after the last RMSNorm; see forward. */
  private hidden(idx: T.Tensor, cache?: KVCache): T.Tensor {
    const c = this.config;
    if (idx.dtype !== 'int32' || idx.rank !== 2) throw new Error(`GPT.forward: idx must be int32 (B, T), got ${idx.describe()}`);
    const [B, Tn] = idx.shape;
    const start = cache?.length ?? 0;
    if (start + Tn > c.maxSeqLen) throw new UserError(`sequence of ${start + Tn} tokens exceeds the model's maxSeqLen ${c.maxSeqLen}`);
    let mask: T.Tensor | undefined;
    if (cache) {
      if (start + Tn > cache.maxLen) throw new Error(`GPT.forward: ${start + Tn} positions overflow a KV cache of ${cache.maxLen}`);
      const prefillFork = start === 0 && cache.rows % B === 0;
      if (B !== cache.rows && !prefillFork) throw new Error(`GPT.forward: ${B} rows for a KV cache of ${cache.rows} rows`);
      // The cache path attends with an explicit mask (see attention) unless an unpadded batch
      // can use the fused kernel. Per input row: where its real tokens start (all 0 without
      // padding, and the mask is just causal).
      if (cache.start || !T.attentionRunsFused(this.backend, this.fused)) {
        const starts = Array.from({ length: B }, (_, b) => cache.start?.[b * (cache.rows / B)] ?? 0);
        mask = padMask(starts, start, Tn, this.backend);
      }
    }
    let x = T.reshape(T.gather(this.p('model.embed_tokens.weight'), idx), [B * Tn, c.hiddenSize]); // (B*T, C)
    for (let l = 0; l < c.numLayers; l++) {
      const block = (h: T.Tensor) => this.block(h, l, B, Tn, cache, mask);
      // with recompute, the tape keeps only x for this block; the block runs again in backward
      x = this.recompute && !cache ? T.checkpoint(block, x, this.layerParams(l)) : block(x);
    }
    if (cache) cache.length += Tn;
    return this.norm(x, 'model.norm.weight'); // (B*T, C)
  }

  /** One transformer block on the residual stream x (B*T, C): pre-norm attention, then pre-norm MLP. */
  private block(x: T.Tensor, l: number, B: number, Tn: number, cache?: KVCache, mask?: T.Tensor): T.Tensor {
    const pre = `model.layers.${l}.`;
    const h = T.add(x, this.attention(this.norm(x, pre + 'input_layernorm.weight'), l, B, Tn, cache, mask));
    return T.add(h, this.mlp(this.norm(h, pre + 'post_attention_layernorm.weight'), l));
  }

  /** The parameters block l reads (its weights, and any adapters attached to them). */
  private layerParams(l: number): T.Tensor[] {
    const pre = `model.layers.${l}.`;
    return [...this.params].filter(([name]) => name.startsWith(pre)).map(([, p]) => p);
  }

  /** The LM head (and the optional soft-cap) on hidden states (R, C): logits (R, V). */
  private head(x: T.Tensor): T.Tensor {
    const c = this.config;
    const head = c.tieEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    let logits = this.linear(x, head); // (R, V)
    if (c.logitSoftcap > 0) logits = T.mulScalar(T.tanh(T.mulScalar(logits, 1 / c.logitSoftcap)), c.logitSoftcap);
    return logits;
  }

  /** Mean next-token cross-entropy of idx (B, T) against targets (B*T, host ints; -1 = skip). */
  loss(idx: T.Tensor, targets: ArrayLike<number>): T.Tensor {
    if (this.ceChunk > 0 && this.ceChunk < idx.size) return this.chunkedLoss(this.hidden(idx), targets);
    const logits = this.forward(idx);
    return T.crossEntropyAuto(logits, targets, -1, this.fused);
  }

  /**
   * The same mean cross-entropy, ceChunk rows at a time. The mean over all counted rows is
   *   loss = Σ_chunks mean_chunk * (rows counted in the chunk / rows counted in all),
   * and each chunk's head + loss is one checkpoint: its (rows, V) logits are made in the forward
   * only long enough to take the loss, and made again in the backward for the gradient. The
   * head weight's gradient then arrives as one sum per chunk instead of one matmul over all
   * rows, so it equals the unchunked one up to float rounding (test/memory-options.test.ts).
   */
  private chunkedLoss(h: T.Tensor, targets: ArrayLike<number>): T.Tensor {
    const N = h.shape[0];
    if (targets.length !== N) throw new T.ShapeError(`loss: ${targets.length} targets for ${N} positions`);
    const counted = (s: number, e: number) => {
      let n = 0;
      for (let i = s; i < e; i++) if (targets[i] !== -1) n++;
      return n;
    };
    const all = counted(0, N);
    const headW = this.p(this.config.tieEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
    let loss: T.Tensor | null = null;
    for (let s = 0; s < N; s += this.ceChunk) {
      const e = Math.min(N, s + this.ceChunk), n = counted(s, e);
      if (n === 0) continue; // nothing trained on here: no logits needed at all
      const t = Array.prototype.slice.call(targets, s, e) as number[];
      const part = T.checkpoint((z) => T.mulScalar(T.crossEntropyAuto(this.head(z), t, -1, this.fused), n / all), T.slice(h, 0, s, e), [headW]);
      loss = loss ? T.add(loss, part) : part;
    }
    return loss ?? T.mulScalar(T.sumAll(h), 0); // every target ignored: 0, as crossEntropy gives
  }

  /**
   * An empty KV cache for `rows` sequences of up to `maxLen` positions (zero-filled, written
   * in place). `start[r]`: how many left-pad positions row r has (omit when none has any).
   */
  newCache(rows = 1, maxLen = this.config.maxSeqLen, start?: number[]): KVCache {
    const c = this.config;
    if (!(Number.isInteger(rows) && rows > 0 && Number.isInteger(maxLen) && maxLen > 0 && maxLen <= c.maxSeqLen)) {
      throw new Error(`newCache: need rows > 0 and 0 < maxLen <= maxSeqLen (${c.maxSeqLen}), got ${rows} and ${maxLen}`);
    }
    if (start && start.length !== rows) throw new Error(`newCache: ${start.length} start positions for ${rows} rows`);
    const shape = [rows, c.numKVHeads, maxLen, c.headDim]; // (R, NKV, maxLen, HS)
    const alloc = () => Array.from({ length: c.numLayers }, () => T.keep(T.zeros(shape, { backend: this.backend })));
    const padded = start?.some((s) => s > 0) ? [...start!] : null;
    return { k: alloc(), v: alloc(), rows, maxLen, length: 0, start: padded };
  }

  static disposeCache(cache: KVCache): void {
    [...cache.k, ...cache.v].forEach((t) => t.dispose());
  }

  /** Replace every parameter's values (shapes must match exactly). */
  loadWeights(weights: Map<string, { shape: number[]; data: ArrayLike<number> }>, source: string): void {
    for (const [name, p] of this.params) {
      if (this.role(name) === 'adapter') continue; // adapters load with lora.ts loadAdapters
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

// ---------------------------------------------------------------------------------------
// attention over a left-padded batch (the KV-cache path of the generation engine)
// ---------------------------------------------------------------------------------------

/**
 * The (B, 1, T, S) mask, 1 = may attend, for T queries at positions [pos, pos+T) over keys
 * [0, pos+T) of rows whose real tokens begin at start[b]: causal, and no pad keys
 * (s < start[b]). A pad query sees only itself, so its softmax row is never all -inf (a NaN
 * there would reach the cache and, through 0 * NaN, every real row).
 */
function padMask(start: number[], pos: number, Tn: number, backend: T.Tensor['backend']): T.Tensor {
  const B = start.length, S = pos + Tn;
  const m = new Float32Array(B * Tn * S);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < Tn; t++) {
      const q = pos + t; // the query's absolute position
      for (let s = 0; s <= q; s++) m[(b * Tn + t) * S + s] = s >= start[b] || s === q ? 1 : 0;
    }
  }
  return T.tensor(m, [B, 1, Tn, S], { backend });
}

/**
 * Composed attention with an explicit (B, 1, T, S) mask; q (B, NH, T, HS), k, v (B, NKV, S, HS).
 * Grouped-query heads without copying the KV heads: query head h = kv * G + g, so q viewed as
 * (B, NKV, G*T, HS) multiplies each KV head once for its G query heads (composed.ts `attention`
 * instead expands k and v G times, which dominated a decode step on the CPU).
 */
function maskedAttention(q: T.Tensor, k: T.Tensor, v: T.Tensor, mask: T.Tensor): T.Tensor {
  const [B, NH, Tn, HS] = q.shape;
  const [, NKV, S] = k.shape;
  const G = NH / NKV;
  const qg = T.reshape(q, [B, NKV, G * Tn, HS]); // (B, NKV, G*T, HS), a view
  const att = T.mulScalar(T.matmul(qg, k, { transB: true }), 1 / Math.sqrt(HS)); // (B, NKV, G*T, S)
  const masked = T.where(T.reshape(mask, [B, 1, 1, Tn, S]), T.reshape(att, [B, NKV, G, Tn, S]), T.scalar(-Infinity, { backend: q.backend }));
  const p = T.reshape(T.softmax(masked, -1), [B, NKV, G * Tn, S]);
  return T.reshape(T.matmul(p, v), [B, NH, Tn, HS]); // (B, NH, T, HS)
}
