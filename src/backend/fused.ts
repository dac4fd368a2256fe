// Fused kernels: optional capabilities a backend may add on top of the primitive ops.
//
// Each one does in one or two kernels what the tensor engine would do with many primitives
// (and many round trips through memory): softmax + cross-entropy, the per-token log-probs
// of chosen tokens (RL's policy loss), RMSNorm, RoPE, causal attention, the AdamW update and
// Muon's Newton–Schulz iteration. Each has a plain-loop
// reference in cpu-fused.ts and a composed definition in src/tensor/composed.ts (or in the
// optimizer); test/webgpu-fused.test.ts checks the GPU against the reference.
//
// The interface works on raw storages, like Backend. WHICH fused op a backend uses is one
// table, FUSED_POLICY below; the tensor layer (src/tensor/fused.ts: rmsnormAuto,
// attentionAuto, crossEntropyAuto, targetLogprobsAuto) reads it, so the model never asks which backend it runs on. Shapes are passed as plain numbers; all float tensors are float32, contiguous,
// row-major; token ids and targets are int32.
import type { Backend, Storage } from './backend.ts';

/** Shapes of one attention call. q: (B, NH, T, HS); k, v: (B, NKV, S, HS). */
export interface AttentionShape {
  B: number; // batch
  NH: number; // query heads
  NKV: number; // key/value heads; NH % NKV == 0 (grouped-query: head h reads KV head h / (NH / NKV))
  T: number; // query positions
  S: number; // key positions (S >= T; queries are the last T of S positions, as with a KV cache)
  HS: number; // head size (<= 128 on WebGPU)
  causal: boolean; // query t sees keys s <= t + (S - T)
}

/** One AdamW step's hyperparameters (decoupled weight decay, bias-corrected moments). */
export interface AdamWParams {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number; // 1-based step count, for the bias corrections 1 - beta^step
}

/** Muon's quintic Newton–Schulz coefficients (Jordan et al., 2024): X <- aX + (bA + cA²)X. */
export const NS_COEFFS = [3.4445, -4.775, 2.0315] as const;
export const NS_STEPS = 5;
/** Added to the Frobenius norm before dividing by it. */
export const NS_EPS = 1e-7;

export interface FusedKernels {
  /**
   * Softmax cross-entropy. logits (N, V), targets int32 (N), -1 = ignore the row.
   * loss: (1), the mean over rows that are not ignored (0 if all are);
   * lse: (N), log-sum-exp of each row, kept for the backward.
   */
  crossEntropyForward(logits: Storage, targets: Storage, N: number, V: number): { loss: Storage; lse: Storage };
  /** dlogits (N, V) = dloss / count * (softmax(logits) - onehot(target)); 0 on ignored rows. dloss: (1). */
  crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, dloss: Storage, N: number, V: number): Storage;

  /**
   * Log-probability of each row's target token: logp (M) = logits[i, target_i] − lse_i, with
   * lse_i the log-sum-exp of row i. logits (M, V), targets int32 (M), each in [0, V) (no
   * ignore value: the caller picks the rows it needs). lse (M) is kept for the backward.
   */
  targetLogprobsForward(logits: Storage, targets: Storage, M: number, V: number): { logp: Storage; lse: Storage };
  /** dlogits (M, V) = dlogp_i (onehot(target_i) − softmax(logits_i)); dlogp: (M). */
  targetLogprobsBackward(logits: Storage, targets: Storage, lse: Storage, dlogp: Storage, M: number, V: number): Storage;

  /**
   * RMSNorm over the last axis: y = x * rstd * weight, rstd = 1 / sqrt(mean(x²) + eps).
   * x (R, C), weight (C) or null; returns y (R, C) and rstd (R) for the backward.
   */
  rmsnormForward(x: Storage, weight: Storage | null, R: number, C: number, eps: number): { y: Storage; rstd: Storage };
  /** dx (R, C) and dweight (C) (null without weight). */
  rmsnormBackward(dy: Storage, x: Storage, weight: Storage | null, rstd: Storage, R: number, C: number): { dx: Storage; dweight: Storage | null };

  /**
   * RoPE, rotate-half layout (composed.ts `rope`): y = x * cos + rotate_half(x) * sin.
   * x (R, T, HS) with R = B * heads; cos, sin (T, HS). `inverse` applies the adjoint, which is
   * the backward: y1 = x1 c1 + x2 s2, y2 = x2 c2 - x1 s1 (halves of the last axis). For
   * tables whose two halves hold the same angles (ropeTables) that is the rotation by minus
   * the angle (sin -> -sin): a rotation's adjoint is its inverse.
   */
  rope(x: Storage, cos: Storage, sin: Storage, R: number, T: number, HS: number, inverse: boolean): Storage;

  /**
   * SwiGLU's gate, elementwise over n floats: h = silu(g) u = g sigmoid(g) u (g = x Wgᵀ,
   * u = x Wuᵀ in the MLP). Optional: a backend without it runs the composed ops.
   */
  swigluForward?(g: Storage, u: Storage, n: number): Storage;
  /** du = dh silu(g); dg = dh u (s + g s (1 - s)), s = sigmoid(g). */
  swigluBackward?(dh: Storage, g: Storage, u: Storage, n: number): { dg: Storage; du: Storage };

  /**
   * softmax(q kᵀ / sqrt(HS), causal) v without storing the (T, S) scores (online softmax).
   * Returns out (B, NH, T, HS) and lse (B, NH, T), the natural-log normaliser of each query
   * row's scaled scores, which the backward uses to recompute the probabilities.
   */
  attentionForward(q: Storage, k: Storage, v: Storage, s: AttentionShape): { out: Storage; lse: Storage };
  /** dq (B, NH, T, HS), dk and dv (B, NKV, S, HS): KV heads sum the gradients of their query heads. */
  attentionBackward(dout: Storage, q: Storage, k: Storage, v: Storage, out: Storage, lse: Storage, s: AttentionShape): { dq: Storage; dk: Storage; dv: Storage };

  /**
   * One AdamW step for a whole parameter of n elements, IN PLACE on param, m and v:
   *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²
   *   param -= lr * (wd * param + (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps))
   */
  adamwUpdate(param: Storage, grad: Storage, m: Storage, v: Storage, n: number, p: AdamWParams): void;

  /**
   * Muon's orthogonalisation of a (rows, cols) matrix G: X = G / (|G|_F + NS_EPS), then
   * `steps` times A = X Xᵀ; X = a X + (b A + c A²) X, working on the wide orientation (the
   * transpose when rows > cols, so A is the smaller Gram matrix). Returns X (rows, cols).
   */
  newtonSchulz(g: Storage, rows: number, cols: number, steps?: number): Storage;
}

/** Does this backend (object) implement the fused kernels? */
export function hasFused<B extends Backend>(b: B): b is B & FusedKernels {
  const f = b as Partial<FusedKernels>;
  return typeof f.crossEntropyForward === 'function' && typeof f.attentionForward === 'function' && typeof f.newtonSchulz === 'function';
}

/** The fused ops the model may use instead of their composed definitions. */
export type FusedOp = 'rmsnorm' | 'attention' | 'crossEntropy' | 'targetLogprobs' | 'adamw' | 'swiglu' | 'rope';

/**
 * Which fused ops each backend uses, by backend name: the one place this choice is made.
 * A backend not listed uses every fused op when it implements the kernels (hasFused).
 *   cpu, cpu64: RMSNorm, cross-entropy and target log-probs run cpu-fused.ts's loops (one
 *     pass instead of several); attention stays composed, because its two matmuls use the WASM SIMD matmul
 *     while cpu-fused.ts's attention is plain reference loops.
 *   wasm: all four are SIMD kernels (kernels/cpu/ops.wat); attention never stores (T, T).
 *   webgpu: all four are WGSL kernels.
 *   adamw (the optimizer's update in place, src/optim/adamw.ts): wasm and webgpu; on cpu the
 *     composed update stays, as the reference the fused ones are tested against.
 *   swiglu, rope (the MLP's gate and the rotary embedding, src/tensor/fused.ts): wasm only,
 *     where they replace chains of elementwise passes (and RoPE's slices and concat) by one
 *     SIMD pass; they compute the same float32 operations in the same order, so the results
 *     are bit for bit the composed ones. cpu keeps the composed ops (the reference);
 *     webgpu has a rope kernel (tested) but no swiglu, and runs both composed.
 * newtonSchulz has kernels (and tests) but training does not call it: Muon runs composed
 * tensor ops, whose matmuls are the fast part anyway.
 */
export const FUSED_POLICY: Record<string, Record<FusedOp, boolean>> = {
  cpu: { rmsnorm: true, crossEntropy: true, targetLogprobs: true, attention: false, adamw: false, swiglu: false, rope: false },
  cpu64: { rmsnorm: true, crossEntropy: true, targetLogprobs: true, attention: false, adamw: false, swiglu: false, rope: false },
  wasm: { rmsnorm: true, crossEntropy: true, targetLogprobs: true, attention: true, adamw: true, swiglu: true, rope: true },
  webgpu: { rmsnorm: true, crossEntropy: true, targetLogprobs: true, attention: true, adamw: true, swiglu: false, rope: false },
};

/** Should `op` run fused on backend b? (FUSED_POLICY, else whether b has the kernels.) */
export function prefersFused(b: Backend, op: FusedOp): boolean {
  return FUSED_POLICY[b.name]?.[op] ?? hasFused(b);
}
