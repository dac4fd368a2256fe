// LoRA: low-rank adapters on the model's linear layers (Hu et al. 2021, "LoRA: Low-Rank
// Adaptation of Large Language Models").
//
// A linear layer y = x Wᵀ with W (out, in) gets a trainable low-rank correction:
//
//   y = x Wᵀ + (α / r) · (x Aᵀ) Bᵀ          A (r, in), B (out, r), r ≪ min(out, in)
//
// B starts at zero, so at step 0 the adapted model computes exactly what the base computes;
// A starts random, so the first gradient of B is not zero. The base W is frozen (its role is
// 'matrix', the adapters' role is 'adapter', and GPT.setTrainable trains adapters only), so a
// step touches only r·(in + out) numbers per layer and no optimizer state is kept for W.
//
// Rank groups. The adapter's rank space can be split into named groups that each own a slice
// of the rank: A = [A_g1; A_g2] (stacked rows), B = [B_g1, B_g2] (side by side), so
//   (x Aᵀ) Bᵀ = Σ_g (x A_gᵀ) B_gᵀ.
// Each group is stored as its own pair of tensors, so an optimizer can update one group while
// the other stays bit-identical. The scale α / r uses the TOTAL rank r for every group, so the
// split changes nothing about what the whole adapter computes. Plain LoRA is one group named
// 'lora'; the dual-LoRA world-model experiment (src/rl) uses 'policy' and 'world'.
//
// MiniMind's LoRA covers q and o only; ours covers every linear layer by default
// (q, k, v, o and the MLP's gate, up, down), choosable with `targets`.
//
// Shapes: N rows (B*T), in/out the layer's sizes, r the total rank, r_g a group's rank.
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';
import type { GPT, LinearAdapter } from './gpt.ts';

/** Short names of the linear layers an adapter can attach to, and their parameter suffixes. */
export const LORA_TARGETS = {
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj',
  up: 'mlp.up_proj',
  down: 'mlp.down_proj',
} as const;
export type LoraTarget = keyof typeof LORA_TARGETS;

export interface LoraConfig {
  rank: number; // r: total rank of every adapter, e.g. 16
  alpha: number; // α: the update is scaled by α / r (α = r gives scale 1), e.g. 32
  dropout: number; // probability of zeroing an adapter input feature in training (0 = off)
  targets: LoraTarget[]; // which linear layers get an adapter (default: all seven)
  groups: { name: string; rank: number }[]; // the rank split; ranks add up to `rank`
}

export const LORA_DEFAULTS: LoraConfig = {
  rank: 16,
  alpha: 32,
  dropout: 0,
  targets: Object.keys(LORA_TARGETS) as LoraTarget[],
  groups: [{ name: 'lora', rank: 16 }],
};

/** The one place a LoRA config is checked; fills `groups` when omitted. */
export function loraConfig(o: Partial<LoraConfig> = {}): LoraConfig {
  const rank = o.rank ?? LORA_DEFAULTS.rank;
  const c: LoraConfig = {
    rank,
    alpha: o.alpha ?? 2 * rank,
    dropout: o.dropout ?? LORA_DEFAULTS.dropout,
    targets: o.targets ?? LORA_DEFAULTS.targets,
    groups: o.groups ?? [{ name: 'lora', rank }],
  };
  if (!Number.isInteger(c.rank) || c.rank < 1) throw new UserError(`LoRA rank must be a positive integer, got ${c.rank}`);
  if (!(c.alpha > 0)) throw new UserError(`LoRA alpha must be positive, got ${c.alpha}`);
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new UserError(`LoRA dropout must be in [0, 1), got ${c.dropout}`);
  if (c.targets.length === 0) throw new UserError('LoRA needs at least one target layer');
  for (const t of c.targets) {
    if (!(t in LORA_TARGETS)) throw new UserError(`unknown LoRA target "${t}"; choose from: ${Object.keys(LORA_TARGETS).join(', ')}`);
  }
  const sum = c.groups.reduce((s, g) => s + g.rank, 0);
  if (sum !== c.rank) throw new UserError(`LoRA rank groups (${c.groups.map((g) => `${g.name}:${g.rank}`).join(', ')}) must add up to the rank ${c.rank}`);
  if (new Set(c.groups.map((g) => g.name)).size !== c.groups.length) throw new UserError('LoRA rank group names must be distinct');
  for (const g of c.groups) {
    if (!/^[a-z][a-z0-9_]*$/.test(g.name) || !(g.rank >= 1)) throw new UserError(`bad LoRA rank group ${JSON.stringify(g)}`);
  }
  return c;
}

/** Parse `--lora-targets q,k,v` (or `all`). */
export function parseLoraTargets(s: string): LoraTarget[] {
  if (s === 'all') return Object.keys(LORA_TARGETS) as LoraTarget[];
  return s.split(',').map((t) => t.trim()).filter(Boolean) as LoraTarget[];
}

/** Names of one adapter's tensors for a base weight name and a group. */
export function adapterNames(base: string, group: string): { A: string; B: string } {
  const stem = base.replace(/\.weight$/, '');
  return { A: `${stem}.lora_A.${group}.weight`, B: `${stem}.lora_B.${group}.weight` };
}

/**
 * The adapters of one model: which base weights have them, and the forward rule. Installed as
 * the GPT's `adapter`, so GPT.linear calls `apply` for every projection.
 */
export class Lora implements LinearAdapter {
  /** base weight name → that layer's adapter tensors, one pair per rank group */
  readonly layers = new Map<string, { group: string; A: T.Tensor; B: T.Tensor }[]>();
  /** set by the caller around training steps; dropout applies only while true */
  training = false;

  constructor(readonly config: LoraConfig, private readonly rng: T.Rng) {}

  get scale(): number {
    return this.config.alpha / this.config.rank;
  }

  /** y (N, out) = x Wᵀ, already computed; add (α/r) Σ_g (x A_gᵀ) B_gᵀ. */
  apply(x: T.Tensor, name: string, y: T.Tensor): T.Tensor {
    const parts = this.layers.get(name);
    if (!parts) return y;
    let h = x; // (N, in)
    if (this.training && this.config.dropout > 0) h = this.dropout(x);
    // α/r multiplies the narrow (N, r_g) product, not the (N, out) one: the same sum, one
    // fewer full-width tensor per layer kept for the backward (RL's step memory, bench/RESULTS.md)
    let out = y;
    for (const { A, B } of parts) {
      const low = T.mulScalar(T.matmul(h, A, { transB: true }), this.scale); // (N, r_g)
      out = T.add(out, T.matmul(low, B, { transB: true })); // (N, out)
    }
    return out;
  }

  /** Inverted dropout on the adapter's input: zero features with probability p, scale the
   *  rest by 1/(1−p). The mask is drawn on the host from the adapter's own Rng. */
  private dropout(x: T.Tensor): T.Tensor {
    const p = this.config.dropout;
    const mask = new Float32Array(x.size);
    for (let i = 0; i < mask.length; i++) mask[i] = this.rng.uniform() < p ? 0 : 1 / (1 - p);
    return T.mul(x, T.tensor(mask, x.shape, { backend: x.backend }));
  }
}

/**
 * Attach fresh adapters to `model` and freeze everything else. A: normal(0, 1/√in) (so x Aᵀ
 * keeps x's scale), B: zeros (so the model is unchanged until B learns). Returns the Lora.
 */
export function attachLora(model: GPT, cfg: Partial<LoraConfig>, rng: T.Rng): Lora {
  if (model.adapter) throw new UserError('this model already has LoRA adapters');
  const config = loraConfig(cfg);
  const lora = new Lora(config, rng);
  const suffixes = config.targets.map((t) => LORA_TARGETS[t]);
  for (const { name, param, role } of model.namedParams()) {
    if (role !== 'matrix' || !suffixes.some((s) => name.endsWith(`.${s}.weight`))) continue;
    const [out, inp] = param.shape;
    const parts = config.groups.map((g) => {
      const n = adapterNames(name, g.name);
      const A = T.tensor(rng.normalArray(g.rank * inp, 1 / Math.sqrt(inp)), [g.rank, inp], { requiresGrad: true, backend: param.backend });
      const B = T.zeros([out, g.rank], { requiresGrad: true, backend: param.backend });
      model.addParam(n.A, A, 'adapter');
      model.addParam(n.B, B, 'adapter');
      return { group: g.name, A, B };
    });
    lora.layers.set(name, parts);
  }
  if (lora.layers.size === 0) throw new UserError(`no linear layer matched the LoRA targets ${config.targets.join(',')}`);
  model.adapter = lora;
  model.setTrainable((p) => p.role === 'adapter');
  return lora;
}

/** Every adapter tensor of one rank group (or all groups), as named parameters. */
export function adapterParams(model: GPT, group?: string) {
  const lora = model.adapter as Lora | null;
  if (!lora) return [];
  const out: { name: string; param: T.Tensor; role: 'adapter' }[] = [];
  for (const [base, parts] of lora.layers) {
    for (const p of parts) {
      if (group !== undefined && p.group !== group) continue;
      const n = adapterNames(base, p.group);
      out.push({ name: n.A, param: p.A, role: 'adapter' }, { name: n.B, param: p.B, role: 'adapter' });
    }
  }
  return out;
}

/**
 * Fold the adapters into the base weights, W ← W + (α/r) Σ_g B_g A_g, and remove them: the
 * result is a plain model (for the Hugging Face export). Every parameter trains again.
 */
export function mergeLora(model: GPT): void {
  const lora = model.adapter as Lora | null;
  if (!lora) throw new UserError('this model has no LoRA adapters to merge');
  T.noGrad(() =>
    T.tidy(() => {
      for (const [base, parts] of lora.layers) {
        const W = model.params.get(base)!;
        let delta: T.Tensor | null = null;
        for (const { B, A } of parts) {
          const d = T.matmul(B, A); // (out, r_g) @ (r_g, in) → (out, in)
          delta = delta ? T.add(delta, d) : d;
        }
        W.assign(T.add(W, T.mulScalar(delta!, lora.scale)));
      }
    }),
  );
  for (const p of adapterParams(model)) model.removeParam(p.name);
  model.adapter = null;
  model.setTrainable(() => true);
}

/** What is saved of the adapters: their config and tensors (`adapters.safetensors`). */
export function adapterState(model: GPT): { config: LoraConfig; tensors: Map<string, T.Tensor> } {
  const lora = model.adapter as Lora | null;
  if (!lora) throw new UserError('this model has no LoRA adapters');
  return { config: lora.config, tensors: new Map(adapterParams(model).map((p) => [p.name, p.param])) };
}

/** Attach adapters with `config` and set them to saved values (from adapterState). */
export function loadAdapters(
  model: GPT,
  config: Partial<LoraConfig>,
  weights: Map<string, { shape: number[]; data: ArrayLike<number> }>,
  source: string,
  rng = new T.Rng(0),
): Lora {
  const lora = attachLora(model, config, rng);
  for (const { name, param } of adapterParams(model)) {
    const w = weights.get(name);
    if (!w) throw new UserError(`${source}: missing adapter tensor ${name} (was it saved with other --lora-targets or rank?)`);
    if (w.shape.join() !== param.shape.join()) throw new UserError(`${source}: ${name} has shape [${w.shape}] but the LoRA config expects [${param.shape}]`);
    param.assign(T.noGrad(() => T.tensor(w.data, w.shape, { backend: param.backend })));
  }
  return lora;
}
