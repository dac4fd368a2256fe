// Shared types of the optimizers.
//
// Parameters travel with their names and their roles. The role decides which optimizer a
// parameter belongs to (Muon for hidden matrices, AdamW for the rest; see index.ts) and
// whether it is weight-decayed; the name is the key of the optimizer's state dict, so a
// checkpoint's `optimizer.safetensors` lines up with `model.safetensors`. Nothing reads a
// parameter's name to guess what it is: roles, not names. Names follow the Hugging Face Qwen3 layout:
//   model.embed_tokens.weight                     (V, C)
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight  (out, in), applied as x @ Wᵀ
//   model.layers.{i}.self_attn.{q,k}_norm.weight  (HS,)
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight   (out, in)
//   model.layers.{i}.{input,post_attention}_layernorm.weight  (C,)
//   model.norm.weight                             (C,)
//   lm_head.weight                                (V, C), absent when tied to embed_tokens
import type { Tensor } from '../tensor/index.ts';

/**
 * What a parameter is for, declared by the model that owns it (model/gpt.ts paramSpecs):
 *   embedding  the token embedding table (V, C): a lookup, not a linear map → AdamW
 *   head       the LM head (V, C) when untied → AdamW (Muon's orthogonal update suits hidden
 *              maps, not the output layer; Jordan et al. 2024)
 *   matrix     a hidden linear map (out, in) → Muon (or AdamW in the baseline), decayed
 *   gain       a 1-D RMSNorm weight → AdamW, never decayed (decay would shrink activations)
 *   adapter    a LoRA factor → AdamW, not decayed (its B starts at 0; see model/lora.ts)
 */
export type ParamRole = 'embedding' | 'head' | 'matrix' | 'gain' | 'adapter';

/** Roles whose parameters AdamW decays when weight decay is on. */
export const DECAYED_ROLES: readonly ParamRole[] = ['embedding', 'head', 'matrix'];

/** A trainable tensor, its stable name and its role. After backward(), `param.grad` holds dL/dparam. */
export interface NamedParam {
  name: string;
  param: Tensor;
  role: ParamRole;
}

/** What every optimizer here offers (and what buildOptimizer returns, plus `groups`). */
export interface Optimizer {
  /** One update of every parameter that has a gradient, at learning rate `lr`. Reads nothing back. */
  step(lr: number): void;
  /** Drop every parameter's gradient (before the next backward). */
  zeroGrad(): void;
  /**
   * The optimizer's state as named tensors (the optimizer's own tensors, not copies: read
   * them, do not dispose them). Keys: `<param name>.<buffer>` and `<optimizer>.step`.
   */
  stateDict(): Record<string, Tensor>;
  /**
   * Restore a state dict made by stateDict() (for example read back from
   * optimizer.safetensors). Async because the step count must be read to the host.
   * The given tensors may be disposed afterwards: the optimizer shares their storage.
   */
  loadStateDict(state: Record<string, Tensor>): Promise<void>;
}
