// Fused ops: six deliberate exceptions to "everything is composed from primitives".
//
// Cross-entropy and the log-probs of target tokens over a large vocabulary, RMSNorm and
// causal attention are where a composed graph makes many passes over big intermediates
// (attention's (B, NH, T, T) scores alone go through six ops; a composed log-softmax keeps
// several (M, V) tensors alive for its backward). SwiGLU's gate and RoPE are chains of
// elementwise passes (RoPE's with slices and a concat) that the wasm backend does in one
// SIMD pass each, with the composed ops' float32 operations in the same order, so their
// results are the composed ones bit for bit. Each fused op here runs one forward kernel and one backward kernel of
// the backend (src/backend/fused.ts: loops in cpu-fused.ts, WGSL on the GPU) and carries its
// own gradient rule in grad.ts. The composed versions in composed.ts stay the reference:
// test/grad.test.ts checks these against finite differences like every op, and
// test/fused.test.ts checks that fused and composed agree.
import type { Backend } from '../backend/backend.ts';
import { CpuBackend } from '../backend/cpu.ts';
import { CpuFused } from '../backend/cpu-fused.ts';
import { type AdamWParams, type AttentionShape, type FusedKernels, type FusedOp, hasFused, prefersFused } from '../backend/fused.ts';
import { attention, crossEntropy, rmsnorm, rope, silu, targetLogprobs } from './composed.ts';
import { ShapeError, mul, record, sameBackend, tensor, wantFloat } from './ops.ts';
import { type Tensor, fromStorage } from './tensor.ts';

const cpuKernels = new WeakMap<CpuBackend, CpuFused>();

/** The fused kernels of a backend: its own, or the plain-loop ones for a CPU backend. */
export function fusedKernels(b: Backend): FusedKernels | null {
  if (hasFused(b)) return b;
  if (b instanceof CpuBackend) {
    let k = cpuKernels.get(b);
    if (!k) cpuKernels.set(b, (k = new CpuFused(b)));
    return k;
  }
  return null;
}

function kernels(op: string, b: Backend): FusedKernels {
  const k = fusedKernels(b);
  if (!k) throw new ShapeError(`${op}: backend ${b.name} has no fused kernels; use the composed op`);
  return k;
}

/**
 * Mean cross-entropy of logits (N, V) against host integer targets (N); rows whose target is
 * `ignoreIndex` are skipped (0 if all are). Same result as composed `crossEntropy`.
 */
export function crossEntropyFused(logits: Tensor, targets: ArrayLike<number>, ignoreIndex = -1): Tensor {
  const b = sameBackend('crossEntropyFused', [logits]);
  wantFloat('crossEntropyFused', logits);
  if (logits.rank !== 2) throw new ShapeError(`crossEntropyFused: logits must be (N, V), got [${logits.shape}]`);
  const [N, V] = logits.shape;
  if (targets.length !== N) throw new ShapeError(`crossEntropyFused: ${targets.length} targets for ${N} rows of logits`);
  const t = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    const v = targets[i];
    if (v === ignoreIndex) t[i] = -1;
    else if (Number.isInteger(v) && v >= 0 && v < V) t[i] = v;
    else throw new ShapeError(`crossEntropyFused: target ${v} at row ${i} is outside [0, ${V})`);
  }
  const tt = tensor(t, [N], { dtype: 'int32', backend: b });
  const { loss, lse } = kernels('crossEntropyFused', b).crossEntropyForward(logits.storage, tt.storage, N, V);
  const out = fromStorage(loss, [], 'float32', b, 'crossEntropyFused');
  return record('crossEntropyFused', [logits, tt], out, { lse: fromStorage(lse, [N], 'float32', b, 'crossEntropyFused.lse'), N, V });
}

/**
 * Log-probability of each row's target: logits (M, V), host integer targets (M) in [0, V)
 * -> (M) = logits[i, target_i] - logsumexp(logits[i, :]). Only the logits and one float per
 * row (the log-sum-exp) are kept for the backward. Same result as composed `targetLogprobs`.
 */
export function targetLogprobsFused(logits: Tensor, targets: ArrayLike<number>): Tensor {
  const b = sameBackend('targetLogprobsFused', [logits]);
  wantFloat('targetLogprobsFused', logits);
  if (logits.rank !== 2) throw new ShapeError(`targetLogprobsFused: logits must be (M, V), got [${logits.shape}]`);
  const [M, V] = logits.shape;
  if (targets.length !== M) throw new ShapeError(`targetLogprobsFused: ${targets.length} targets for ${M} rows of logits`);
  const t = new Int32Array(M);
  for (let i = 0; i < M; i++) {
    const v = targets[i];
    if (!(Number.isInteger(v) && v >= 0 && v < V)) throw new ShapeError(`targetLogprobsFused: target ${v} at row ${i} is outside [0, ${V})`);
    t[i] = v;
  }
  const tt = tensor(t, [M], { dtype: 'int32', backend: b });
  const { logp, lse } = kernels('targetLogprobsFused', b).targetLogprobsForward(logits.storage, tt.storage, M, V);
  const out = fromStorage(logp, [M], 'float32', b, 'targetLogprobsFused');
  return record('targetLogprobsFused', [logits, tt], out, { lse: fromStorage(lse, [M], 'float32', b, 'targetLogprobsFused.lse'), M, V });
}

/** RMSNorm over the last axis (weight optional). Same result as composed `rmsnorm`. */
export function rmsnormFused(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  const ins = weight ? [x, weight] : [x];
  const b = sameBackend('rmsnormFused', ins);
  ins.forEach((t) => wantFloat('rmsnormFused', t));
  const C = x.shape.at(-1)!, R = x.size / C;
  if (weight && (weight.rank !== 1 || weight.shape[0] !== C)) throw new ShapeError(`rmsnormFused: weight [${weight.shape}] does not match the last axis of [${x.shape}]`);
  const { y, rstd } = kernels('rmsnormFused', b).rmsnormForward(x.storage, weight?.storage ?? null, R, C, eps);
  const out = fromStorage(y, x.shape, 'float32', b, 'rmsnormFused');
  return record('rmsnormFused', ins, out, { rstd: fromStorage(rstd, [R], 'float32', b, 'rmsnormFused.rstd'), R, C });
}

/**
 * softmax(q kᵀ / sqrt(HS)) v with grouped-query heads, optionally causal, without storing
 * the scores. q (B, NH, T, HS); k, v (B, NKV, S, HS). Same result as composed `attention`.
 */
export function attentionFused(q: Tensor, k: Tensor, v: Tensor, causal = true): Tensor {
  const b = sameBackend('attentionFused', [q, k, v]);
  [q, k, v].forEach((t) => wantFloat('attentionFused', t));
  const [B, NH, T, HS] = q.shape;
  const [, NKV, S] = k.shape;
  if (q.rank !== 4 || k.rank !== 4 || v.shape.join() !== k.shape.join() || k.shape[0] !== B || k.shape[3] !== HS) {
    throw new ShapeError(`attentionFused: expected q (B, NH, T, HS) and k, v (B, NKV, S, HS), got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  if (NH % NKV !== 0) throw new ShapeError(`attentionFused: ${NH} query heads is not a multiple of ${NKV} KV heads`);
  if (S < T) throw new ShapeError(`attentionFused: ${S} keys for ${T} queries (need S >= T)`);
  const shape: AttentionShape = { B, NH, NKV, T, S, HS, causal };
  const r = kernels('attentionFused', b).attentionForward(q.storage, k.storage, v.storage, shape);
  const out = fromStorage(r.out, [B, NH, T, HS], 'float32', b, 'attentionFused');
  return record('attentionFused', [q, k, v], out, { lse: fromStorage(r.lse, [B, NH, T], 'float32', b, 'attentionFused.lse'), shape });
}

/** The fused kernels of b if they include the optional SwiGLU pair. */
function swigluKernels(b: Backend): Required<Pick<FusedKernels, 'swigluForward' | 'swigluBackward'>> | null {
  const k = fusedKernels(b);
  return k?.swigluForward && k.swigluBackward ? (k as Required<FusedKernels>) : null;
}

/**
 * SwiGLU's gate: silu(g) * u for g, u of one shape (the MLP's two projections), in one
 * kernel forward and one backward. Same result as the composed `mul(silu(g), u)`, without
 * its intermediates (sigmoid(g) and silu(g), kept for the backward) or its seven backward passes.
 */
export function swigluFused(g: Tensor, u: Tensor): Tensor {
  const b = sameBackend('swigluFused', [g, u]);
  [g, u].forEach((t) => wantFloat('swigluFused', t));
  if (g.shape.join() !== u.shape.join()) throw new ShapeError(`swigluFused: gate [${g.shape}] and up [${u.shape}] differ in shape`);
  const k = swigluKernels(b);
  if (!k) throw new ShapeError(`swigluFused: backend ${b.name} has no SwiGLU kernel; use mul(silu(g), u)`);
  const y = k.swigluForward(g.storage, u.storage, g.size);
  return record('swigluFused', [g, u], fromStorage(y, g.shape, 'float32', b, 'swigluFused'));
}

/**
 * RoPE (composed.ts `rope`) in one kernel: x (..., T, HS), tables cos, sin (T, HS). Same
 * result as the composed op, without its slices, negation, concat, two products and sum
 * (and their backward passes). The tables get no gradient: ropeAuto composes when they need one.
 */
export function ropeFused(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const b = sameBackend('ropeFused', [x, cos, sin]);
  [x, cos, sin].forEach((t) => wantFloat('ropeFused', t));
  const HS = x.shape.at(-1)!, T = x.shape.at(-2)!;
  if (x.rank < 2 || HS % 2 !== 0) throw new ShapeError(`ropeFused: x must be (..., T, HS) with HS even, got [${x.shape}]`);
  for (const t of [cos, sin]) {
    if (t.shape.join() !== `${T},${HS}`) throw new ShapeError(`ropeFused: tables must be (T, HS) = (${T}, ${HS}), got [${t.shape}]`);
  }
  const R = x.size / (T * HS);
  const y = kernels('ropeFused', b).rope(x.storage, cos.storage, sin.storage, R, T, HS, false);
  return record('ropeFused', [x, cos, sin], fromStorage(y, x.shape, 'float32', b, 'ropeFused'));
}

// ---- the model's entry points: fused or composed, chosen by the one table ----

/** Whether `op` runs fused on this tensor's backend (FUSED_POLICY, and the kernels exist). */
function useFused(op: FusedOp, x: Tensor, allowFused: boolean): boolean {
  return allowFused && prefersFused(x.backend, op) && fusedKernels(x.backend) !== null;
}

/** Would attentionAuto run the fused kernel on this backend? (The KV-cache path asks, since
 *  the fused kernel takes no per-row mask: without one it needs the mask built explicitly.) */
export function attentionRunsFused(backend: Tensor['backend'], allowFused = true): boolean {
  return allowFused && prefersFused(backend, 'attention') && fusedKernels(backend) !== null;
}

/** RMSNorm: rmsnormFused where FUSED_POLICY says so, else the composed `rmsnorm`. */
export function rmsnormAuto(x: Tensor, weight: Tensor | null, eps = 1e-6, allowFused = true): Tensor {
  return useFused('rmsnorm', x, allowFused) ? rmsnormFused(x, weight, eps) : rmsnorm(x, weight, eps);
}

/** Attention: attentionFused where FUSED_POLICY says so, else the composed `attention`. */
export function attentionAuto(q: Tensor, k: Tensor, v: Tensor, causal = true, allowFused = true): Tensor {
  return useFused('attention', q, allowFused) ? attentionFused(q, k, v, causal) : attention(q, k, v, causal);
}

/** SwiGLU's gate: swigluFused where FUSED_POLICY says so (and the kernel exists), else mul(silu(g), u). */
export function swigluAuto(g: Tensor, u: Tensor, allowFused = true): Tensor {
  return useFused('swiglu', g, allowFused) && swigluKernels(g.backend) ? swigluFused(g, u) : mul(silu(g), u);
}

/** RoPE: ropeFused where FUSED_POLICY says so and the tables need no gradient, else the composed `rope`. */
export function ropeAuto(x: Tensor, cos: Tensor, sin: Tensor, allowFused = true): Tensor {
  return useFused('rope', x, allowFused) && !cos.requiresGrad && !sin.requiresGrad ? ropeFused(x, cos, sin) : rope(x, cos, sin);
}

/** Cross-entropy: crossEntropyFused where FUSED_POLICY says so, else the composed one. */
export function crossEntropyAuto(logits: Tensor, targets: ArrayLike<number>, ignoreIndex = -1, allowFused = true): Tensor {
  return useFused('crossEntropy', logits, allowFused) ? crossEntropyFused(logits, targets, ignoreIndex) : crossEntropy(logits, targets, ignoreIndex);
}

/** Target log-probs: targetLogprobsFused where FUSED_POLICY says so, else the composed one. */
export function targetLogprobsAuto(logits: Tensor, targets: ArrayLike<number>, allowFused = true): Tensor {
  return useFused('targetLogprobs', logits, allowFused) ? targetLogprobsFused(logits, targets) : targetLogprobs(logits, targets);
}

/**
 * One AdamW step IN PLACE on param p and its moments m, v (same shape, float32), by the
 * backend's fused kernel where FUSED_POLICY has 'adamw' for it. Returns false (and does
 * nothing) otherwise: the caller then runs the composed update. Not recorded on the tape.
 */
export function adamwUpdateFused(p: Tensor, g: Tensor, m: Tensor, v: Tensor, hp: AdamWParams): boolean {
  const b = p.backend;
  if (!prefersFused(b, 'adamw') || !hasFused(b)) return false;
  for (const t of [g, m, v]) {
    if (t.backend !== b || t.size !== p.size) throw new ShapeError(`adamwUpdateFused: ${t.describe()} does not match the parameter ${p.describe()}`);
  }
  b.adamwUpdate(p.storage, g.storage, m.storage, v.storage, p.size, hp);
  return true;
}

/** The kernels' backward passes, for the rules in grad.ts. */
export const fusedBackward = {
  crossEntropy(logits: Tensor, targets: Tensor, lse: Tensor, dy: Tensor, N: number, V: number): Tensor {
    const s = kernels('crossEntropyFused', logits.backend).crossEntropyBackward(logits.storage, targets.storage, lse.storage, dy.storage, N, V);
    return fromStorage(s, [N, V], 'float32', logits.backend, 'crossEntropyFused.backward');
  },
  targetLogprobs(logits: Tensor, targets: Tensor, lse: Tensor, dy: Tensor, M: number, V: number): Tensor {
    const s = kernels('targetLogprobsFused', logits.backend).targetLogprobsBackward(logits.storage, targets.storage, lse.storage, dy.storage, M, V);
    return fromStorage(s, [M, V], 'float32', logits.backend, 'targetLogprobsFused.backward');
  },
  rmsnorm(x: Tensor, w: Tensor | null, rstd: Tensor, dy: Tensor, R: number, C: number): [Tensor, Tensor | null] {
    const r = kernels('rmsnormFused', x.backend).rmsnormBackward(dy.storage, x.storage, w?.storage ?? null, rstd.storage, R, C);
    return [
      fromStorage(r.dx, x.shape, 'float32', x.backend, 'rmsnormFused.backward'),
      r.dweight && w ? fromStorage(r.dweight, w.shape, 'float32', x.backend, 'rmsnormFused.backward') : null,
    ];
  },
  swiglu(g: Tensor, u: Tensor, dy: Tensor): [Tensor, Tensor] {
    const r = swigluKernels(g.backend)!.swigluBackward(dy.storage, g.storage, u.storage, g.size);
    return [fromStorage(r.dg, g.shape, 'float32', g.backend, 'swigluFused.backward'), fromStorage(r.du, u.shape, 'float32', g.backend, 'swigluFused.backward')];
  },
  rope(x: Tensor, cos: Tensor, sin: Tensor, dy: Tensor): Tensor {
    const HS = x.shape.at(-1)!, T = x.shape.at(-2)!;
    const s = kernels('ropeFused', x.backend).rope(dy.storage, cos.storage, sin.storage, x.size / (T * HS), T, HS, true);
    return fromStorage(s, x.shape, 'float32', x.backend, 'ropeFused.backward');
  },
  attention(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, dy: Tensor, s: AttentionShape): [Tensor, Tensor, Tensor] {
    const r = kernels('attentionFused', q.backend).attentionBackward(dy.storage, q.storage, k.storage, v.storage, out.storage, lse.storage, s);
    const be = q.backend;
    return [
      fromStorage(r.dq, q.shape, 'float32', be, 'attentionFused.backward'),
      fromStorage(r.dk, k.shape, 'float32', be, 'attentionFused.backward'),
      fromStorage(r.dv, v.shape, 'float32', be, 'attentionFused.backward'),
    ];
  },
};
