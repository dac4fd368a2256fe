// `minichat plan`: what a training step will cost before you start it. For a model config, a
// batch shape, an optimizer, a backend and the memory options, the bytes of the weights, the
// gradients, the optimizer state and the activations, the peak of a step, the FLOPs, and the
// largest batch that fits a memory budget. docs/memory.md walks through it; test/plan.test.ts
// checks it against the peak a real step measures (Backend.peakBytes).
//
// How the estimate is made. Nothing is run: every number below is counted from the model's
// structure (src/model/gpt.ts) and from how the tensor engine frees memory (src/tensor/):
//   - a training step runs inside tidy(): every tensor the FORWARD pass makes stays alive until
//     the step ends, because the backward reads them (a matmul's gradient needs its input, a
//     norm its rstd, attention its output and log-sum-exp). So "activations" = the bytes of
//     every tensor the forward makes (views made by reshape share storage and cost nothing);
//   - the BACKWARD walks the tape from the loss down. Each gradient rule runs in its own tidy,
//     so its temporaries go as soon as it returns; what is alive at any moment is: all the
//     activations, the parameter gradients made so far, the gradients waiting to flow further
//     down, and the rule being run. We follow that walk stage by stage (the head, each block's
//     MLP and attention, the embedding) and take the largest moment;
//   - after the backward the activations are freed, and the OPTIMIZER step runs: clipping,
//     Muon and AdamW make their temporaries inside one tidy PER PARAMETER, so what they hold
//     at once is one parameter's temporaries, the largest parameter's at worst (counted below
//     from src/optim/).
// One backend detail matters too: the wasm matmul kernel reads A as (M, K) and B as (N, K),
// so an operand in the other layout is first transposed into a scratch block that lives for
// that one matmul (src/backend/wasm.ts). The forward's x Wᵀ needs none; the backward's weight
// gradients (dCᵀ x) need two, and for the LM head those are (B·T, V)-sized. MATMUL_SCRATCH says
// which backends do this.
// The peak is the larger of the backward's and the optimizer step's. What runs fused (RMSNorm,
// attention, cross-entropy, AdamW) depends on the backend: FUSED_POLICY (src/backend/fused.ts)
// says, and this file reads the same table.
//
// Counted in float32 elements; ×4 makes bytes. Shapes: B batch, T sequence, N = B·T positions,
// C hidden, Q = NH·HS query width, K = NKV·HS key/value width, F MLP width, V vocabulary,
// L layers, S = B·NH·T² attention scores (composed attention only). Browser-safe: no Node imports.
import { FUSED_POLICY, NS_STEPS } from '../backend/fused.ts';
import { type GPTConfig, countParams, paramSpecs } from '../model/gpt.ts';
import { GPT } from '../model/gpt.ts';
import { buildParamGroups } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import type { Backend } from '../backend/backend.ts';
import { UserError } from '../util/errors.ts';
import { Trainer, languageModelLoss } from './trainer.ts';

export type PlanBackend = 'cpu' | 'wasm' | 'webgpu';
/** Backends whose matmul copies a transposed operand into scratch memory it counts as live. */
const MATMUL_SCRATCH: Record<PlanBackend, boolean> = { wasm: true, cpu: false, webgpu: false };
export const PLAN_BACKENDS: readonly PlanBackend[] = ['wasm', 'cpu', 'webgpu'];

export interface PlanInput {
  config: GPTConfig;
  batchSize: number; // B: sequences per micro-batch
  seqLen: number; // T
  gradAccum: number; // micro-batches per optimizer step
  optimizer: 'muon' | 'adamw';
  backend: PlanBackend;
  recompute: boolean;
  ceChunk: number; // 0 = off
  gradClip: number; // 0 = off
  weightDecay: number;
}

export interface MemoryPlan {
  params: number;
  weights: number; // bytes of the parameters
  grads: number; // bytes of their gradients (alive from the backward to the optimizer step)
  optimizerState: number; // AdamW's two moments, Muon's momentum, step counters
  resident: number; // what lives between steps: weights + optimizer state + the RoPE tables
  activations: number; // bytes the forward keeps for the backward (all of it, every block)
  activationsPerBlock: number; // of which one block keeps (with recompute: what one block re-makes)
  backwardWork: number; // at the backward's peak: gradients made so far + those in flight
  backwardPeak: number; // resident + activations + backwardWork
  optimizerWork: number; // at the optimizer step's peak: gradients + clipping/Muon/AdamW temporaries
  optimizerPeak: number; // resident + optimizerWork
  peak: number; // the larger of the two
  peakAt: 'backward' | 'optimizer step';
  largestTensor: { bytes: number; what: string }; // one allocation (a GPU binding must hold it)
  tokensPerStep: number;
  flopsPerToken: number; // of a training step: forward + backward (+ the recomputed forward)
  flopsPerStep: number; // flopsPerToken × tokensPerStep: the model's, not the optimizer's
  /**
   * Muon's Newton–Schulz per optimizer step: NS_STEPS iterations of three matmuls per hidden
   * matrix, whatever the batch. For a big model at small batches it is a large share of the
   * step (minimind2: ~1.8 TFLOP, as much as 2048 tokens of forward and backward). 0 for AdamW.
   */
  optimizerFlopsPerStep: number;
}

const F32 = 4;

/** Check the plan's inputs; every error is one line naming the flag. */
function check(p: PlanInput): void {
  for (const [k, v] of [['--batch-size', p.batchSize], ['--seq-len', p.seqLen], ['--grad-accum', p.gradAccum]] as const) {
    if (!(Number.isInteger(v) && v > 0)) throw new UserError(`plan: ${k} must be a positive integer, got ${v}`);
  }
  if (!(Number.isInteger(p.ceChunk) && p.ceChunk >= 0)) throw new UserError(`plan: --ce-chunk must be an integer >= 0, got ${p.ceChunk}`);
  if (!PLAN_BACKENDS.includes(p.backend)) throw new UserError(`plan: --backend must be one of ${PLAN_BACKENDS.join(', ')}, got ${p.backend}`);
  if (p.seqLen > p.config.maxSeqLen) throw new UserError(`plan: --seq-len ${p.seqLen} exceeds the model's context of ${p.config.maxSeqLen} tokens`);
}

/**
 * The forward pass of one block, tensor by tensor (GPT.block: x + attention(norm(x)), then
 * h + mlp(norm(h))), in float32 elements. Every entry is one allocation the tape keeps.
 */
export function blockActivations(c: GPTConfig, B: number, T: number, backend: PlanBackend): Record<string, number> {
  const N = B * T, C = c.hiddenSize, HS = c.headDim, NH = c.numHeads, NKV = c.numKVHeads;
  const Q = NH * HS, K = NKV * HS, F = c.intermediateSize, G = NH / NKV;
  const fused = FUSED_POLICY[backend];
  const norm = (rows: number, cols: number) => (fused.rmsnorm ? rows * cols + rows : normComposed(rows, cols));
  const a: Record<string, number> = {};
  a['input norm (y, rstd)'] = norm(N, C);
  a['q, k, v projections'] = N * Q + 2 * N * K;
  a['q, k, v as heads (permuted copies)'] = N * Q + 2 * N * K;
  if (c.qkNorm) a['QK-norm'] = norm(N * NH, HS) + norm(N * NKV, HS); // per head: rstd per (position, head)
  // RoPE, composed (composed.ts rope): two half slices, a negation, a concat, two products
  // and their sum: 5.5 copies of q and of k; fused (wasm: fused.ts ropeFused): the output only;
  // plus this call's slices of the cos/sin tables
  a['RoPE on q and k'] = (fused.rope ? 1 : 5.5) * (N * Q + N * K) + 2 * T * HS;
  if (fused.attention) {
    a['attention (fused: output, log-sum-exp)'] = N * Q + B * NH * T;
  } else {
    // composed attention (composed.ts attention): k and v repeated for the query heads, the
    // (B, NH, T, T) scores six times over (q kᵀ, scaled, masked, minus the max, exp, divided
    // by the sum), the row max and sum, the causal mask, and the output
    const S = B * NH * T * T;
    a['attention (composed: scores x6, mask, output)'] = (G > 1 ? 2 * N * Q : 0) + 6 * S + 2 * B * NH * T + T * T + 1 + N * Q;
  }
  a['heads merged (permuted copy)'] = N * Q;
  a['output projection, residual add'] = 2 * N * C;
  a['post-attention norm'] = norm(N, C);
  // SwiGLU: up, gate, sigmoid(gate), gate·sigmoid, ·up (fused, wasm: up, gate, product);
  // relu²: up, relu, relu²
  if (c.mlp === 'swiglu') {
    if (fused.swiglu) a['MLP (up, gate, fused product)'] = 3 * N * F;
    else a['MLP (up, gate, sigmoid, silu, product)'] = 5 * N * F;
  } else a['MLP (up, relu, square)'] = 3 * N * F;
  a['down projection, residual add'] = 2 * N * C;
  return a;
}

/** Composed RMSNorm (composed.ts rmsnorm), for a backend that does not fuse it: x², mean, +eps,
 *  rsqrt, x·r, ·w (each kept). Every listed backend fuses it today. */
function normComposed(rows: number, cols: number): number {
  return 3 * rows * cols + 3 * rows;
}

const sum = (o: Record<string, number>) => Object.values(o).reduce((s, v) => s + v, 0);

/**
 * The largest moment of one block's backward beyond the activations and the parameter
 * gradients, in float32 elements: the residual stream's gradient (N·C) waiting below, plus the
 * rule being run and the gradients it has produced that wait for their own rules.
 */
function blockBackwardWork(c: GPTConfig, B: number, T: number, backend: PlanBackend): number {
  const N = B * T, C = c.hiddenSize, NH = c.numHeads, HS = c.headDim, NKV = c.numKVHeads;
  const Q = NH * HS, K = NKV * HS, F = c.intermediateSize;
  // MLP, SwiGLU: at sigmoid's rule, alive are the gradients of up and of the gate's product
  // (waiting), the incoming gradient, and the rule's three temporaries and its result: 7 N·F;
  // fused (wasm): the incoming gradient and the rule's two results, 3 N·F.
  // relu²: the product rule's two results added (4 N·F).
  const fused = FUSED_POLICY[backend];
  const mlp = (c.mlp === 'swiglu' ? (fused.swiglu ? 3 : 7) : 4) * N * F;
  let attn: number;
  if (fused.attention) {
    // fused attention's rule: the incoming gradient and dq, dk, dv; before it, the merged
    // heads' gradient and its permuted copy
    attn = 2 * N * Q + 2 * N * K;
  } else {
    // composed: softmax's division rule holds the incoming (B, NH, T, T) gradient, its result
    // and three temporaries of that size, while v's gradient (repeated heads) waits
    const S = B * NH * T * T;
    attn = 5 * S + N * Q + N * K;
  }
  // RoPE's rules on q (k's gradient and v's waiting): the incoming gradient, two products and
  // the padded halves; fused (wasm): the incoming gradient and its result
  const rope = (fused.rope ? 2 : 4) * N * Q + 2 * N * K;
  // the gate's weight gradient with wasm's transposed copies of its two operands, while the
  // up projection's gradient waits
  const matmul = MATMUL_SCRATCH[backend] ? 3 * N * F + 2 * N * C : 0;
  return N * C + Math.max(mlp, attn, rope, matmul);
}

/** The matrices Muon updates (role 'matrix'), in parameter order; AdamW takes the rest. */
function optimizerSplit(c: GPTConfig, optimizer: PlanInput['optimizer']): { muon: number[][]; adamw: number[][] } {
  const muon: number[][] = [], adamw: number[][] = [];
  for (const s of paramSpecs(c)) (optimizer === 'muon' && s.role === 'matrix' ? muon : adamw).push(s.shape);
  return { muon, adamw };
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * The optimizer step's largest moment beyond the resident weights and state, in elements:
 * the gradients, plus the temporaries of ONE parameter, since clipping (src/optim/clip.ts),
 * Muon (muon.ts) and AdamW (adamw.ts) each run one tidy() per parameter and so free a
 * parameter's temporaries before making the next one's:
 *   clipping: one gradient's g² (to sum it), later one rescaled gradient;
 *   Muon, per matrix: momentum·μ and the Nesterov look-ahead (2 products + the sum: 3 copies)
 *     while Newton–Schulz runs. Its scope keeps G², the normalised X (and, for a tall matrix,
 *     its transpose) and every iterate until it returns; at its peak, the last iteration's
 *     a·X and B·X beside the new iterate: NS_STEPS + 4 copies (+ 1 tall) and the iteration's
 *     5 Gram-sized matrices (min(m, n)²). (wasm's transposed matmul operand is never alive at
 *     that moment: B·X's scratch goes before the sum is made, so it costs nothing extra.)
 *   AdamW, composed (cpu): 10 temporaries of the parameter (11 with weight decay), + 1 for
 *     the new value while the old one is still there; fused (wasm, webgpu): none, the kernel
 *     updates in place.
 * The largest of these over the parameters, and over the three, is the working memory.
 */
function optimizerWork(p: PlanInput, params: number, maxParam: number): number {
  const { muon, adamw } = optimizerSplit(p.config, p.optimizer);
  const grads = params;
  const clip = p.gradClip > 0 ? maxParam : 0;
  let muonPeak = 0;
  for (const shape of muon) {
    const n = numel(shape), k = Math.min(shape[0], shape[1]);
    const ns = n * (NS_STEPS + 4 + (shape[0] > shape[1] ? 1 : 0)) + 5 * k * k;
    muonPeak = Math.max(muonPeak, 3 * n + ns);
  }
  const fusedAdam = FUSED_POLICY[p.backend].adamw;
  const adamPer = (p.weightDecay > 0 ? 11 : 10) + 1;
  const adamPeak = fusedAdam ? 0 : Math.max(0, ...adamw.map((shape) => adamPer * numel(shape)));
  return grads + Math.max(clip, muonPeak, adamPeak);
}

/** The estimate for one configuration (see the header for how it is counted). */
export function planMemory(p: PlanInput): MemoryPlan {
  check(p);
  const c = p.config, B = p.batchSize, T = p.seqLen, N = B * T;
  const C = c.hiddenSize, V = c.vocabSize, L = c.numLayers, HS = c.headDim;
  const params = countParams(c);
  const shapes = paramSpecs(c).map((s) => s.shape);
  const maxParam = Math.max(...shapes.map(numel));
  const { muon, adamw } = optimizerSplit(c, p.optimizer);
  // ---- between steps ----
  const state = 1 * muon.reduce((s, sh) => s + numel(sh), 0) + 2 * adamw.reduce((s, sh) => s + numel(sh), 0) + (muon.length ? 1 : 0) + 1;
  const rope = 2 * c.maxSeqLen * HS; // the model's cos/sin tables, made on the first forward
  const resident = params + state + rope;

  // ---- the forward: what the tape keeps ----
  const perBlock = sum(blockActivations(c, B, T, p.backend));
  const chunk = p.ceChunk > 0 && p.ceChunk < N ? p.ceChunk : 0;
  const embed = N /* token ids, int32 */ + N * C; // the embedding rows (gather)
  const finalNorm = N * C + N;
  // the head and the loss: logits (N, V) and the fused loss's targets, log-sum-exp and value;
  // chunked: only each chunk's slice of the hidden states (its logits are freed at once)
  // (a logit soft-cap, which no preset uses, keeps three more (N, V) tensors; its backward's
  // own temporaries are not followed below)
  const softcap = c.logitSoftcap > 0 ? 3 * N * V : 0;
  const head = chunk ? N * C + 3 * Math.ceil(N / chunk) : N * V + softcap + 2 * N + 1;
  // with recompute the tape keeps each block's output only (its input is the previous one's)
  const blocks = p.recompute ? L * N * C : L * perBlock;
  const activations = embed + blocks + finalNorm + head;

  // ---- the backward: its largest moment, stage by stage from the loss down ----
  // With accumulation, every micro-batch after the first adds into existing gradients: the
  // full set is alive from the start, plus a new sum and the addend for the largest parameter.
  const accum = p.gradAccum > 1;
  const gradsAt = (madeSoFar: number) => (accum ? params + 2 * maxParam : madeSoFar);
  const headGrad = V * C; // the LM head's weight gradient (the embedding's, when tied)
  const n = chunk || N;
  const scratch = MATMUL_SCRATCH[p.backend] ? n * V + n * C : 0; // dlogitsᵀ and the hidden states, transposed
  // head: dlogits + the hidden states' gradient + the head weight's gradient (+ wasm's scratch).
  // Chunked: one chunk's recomputed logits and their gradient, the hidden states' gradient
  // summed over the chunks so far, and on each later chunk the head weight's gradient added
  // into the one so far (the addend and the new sum)
  const headStage = chunk
    ? gradsAt(headGrad) + 2 * n * V + n * C + N * C + 2 * n + Math.max(2 * headGrad, headGrad + scratch)
    : gradsAt(headGrad) + n * V + N * C + scratch;
  // blocks: the gradients of the blocks above and this one; with recompute, this block's
  // activations are made again inside its rule
  const blockWork = blockBackwardWork(c, B, T, p.backend) + (p.recompute ? perBlock + N * C : 0);
  const blockStage = gradsAt(params - V * C) + blockWork;
  // embedding: every gradient exists; the rows' scatter into a (V, C) table and, when tied,
  // its sum with the head's gradient
  const embedStage = gradsAt(params) + N * C + (c.tieEmbeddings ? 2 : 1) * V * C;
  const backwardWork = Math.max(headStage, blockStage, embedStage);

  const optWork = optimizerWork(p, params, maxParam);
  const bytes = (x: number) => Math.round(x * F32);
  const backwardPeak = bytes(resident + activations + backwardWork), optimizerPeak = bytes(resident + optWork);

  // ---- the largest single allocation (a WebGPU storage binding must hold it) ----
  const candidates: [number, string][] = [
    [chunk ? chunk * V : N * V, chunk ? `logits of one ${chunk}-position chunk (${chunk} x ${V})` : `logits (${N} x ${V})`],
    [maxParam, 'the largest parameter'],
    [N * c.intermediateSize, `MLP activations (${N} x ${c.intermediateSize})`],
  ];
  if (!FUSED_POLICY[p.backend].attention) candidates.push([B * c.numHeads * T * T, `attention scores (${B} x ${c.numHeads} x ${T} x ${T})`]);
  const [lt, what] = candidates.reduce((a, b) => (b[0] > a[0] ? b : a));

  // ---- FLOPs: 2 per multiply-add; backward = 2x forward ----
  const F = c.intermediateSize, Q = c.numHeads * HS, K = c.numKVHeads * HS;
  const blockMatmul = 2 * (C * Q + 2 * C * K + Q * C + (c.mlp === 'swiglu' ? 3 : 2) * C * F); // per token
  const attnFlops = 2 * 2 * Q * ((T + 1) / 2); // q kᵀ and P v over the causal half, per token
  const headFlops = 2 * V * C;
  const fwdBlocks = L * (blockMatmul + attnFlops);
  const flopsPerToken = 3 * (fwdBlocks + headFlops) + (p.recompute ? fwdBlocks : 0) + (chunk ? headFlops : 0);
  const tokensPerStep = N * p.gradAccum;
  // Newton–Schulz on a (k, K) matrix (k = min side, muon.ts): X Xᵀ (k²K multiply-adds), A·A
  // (k³) and B·X (k²K) per iteration
  const nsFlops = muon.reduce((s, [a, b]) => {
    const k = Math.min(a, b), Kx = Math.max(a, b);
    return s + NS_STEPS * 2 * k * k * (2 * Kx + k);
  }, 0);

  return {
    params, weights: bytes(params), grads: bytes(params), optimizerState: bytes(state), resident: bytes(resident),
    activations: bytes(activations), activationsPerBlock: bytes(perBlock), backwardWork: bytes(backwardWork), backwardPeak,
    optimizerWork: bytes(optWork), optimizerPeak, peak: Math.max(backwardPeak, optimizerPeak),
    peakAt: backwardPeak >= optimizerPeak ? 'backward' : 'optimizer step',
    largestTensor: { bytes: bytes(lt), what }, tokensPerStep, flopsPerToken, flopsPerStep: flopsPerToken * tokensPerStep,
    optimizerFlopsPerStep: nsFlops,
  };
}

/**
 * The largest B (sequences per micro-batch, at this T) whose estimated peak fits `budget`
 * bytes; 0 when not even B = 1 does. The estimate grows with B, so a binary search finds it.
 */
export function largestBatch(p: PlanInput, budget: number, maxB = 1 << 16): number {
  const fits = (B: number) => planMemory({ ...p, batchSize: B }).peak <= budget;
  if (!fits(1)) return 0;
  let lo = 1, hi = 2;
  while (hi <= maxB && fits(hi)) [lo, hi] = [hi, hi * 2];
  hi = Math.min(hi, maxB + 1);
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

const UNITS: Record<string, number> = {
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/**
 * A memory size: "8GB" (10⁹ bytes each), "8GiB" (2³⁰), "512MB", "1.5 GiB", or a plain number
 * of bytes. A bare "8G" is refused: it means 8·10⁹ to some tools and 8·2³⁰ to others.
 */
export function parseBytes(s: string, flag = '--memory'): number {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i.exec(s);
  const unit = m?.[2].toLowerCase() ?? '';
  const mult = unit === '' ? 1 : UNITS[unit];
  if (!m || mult === undefined) {
    const hint = /^[kmgt]$/i.test(unit) ? `: say ${m![1]}${unit.toUpperCase()}B (10^n bytes) or ${m![1]}${unit.toUpperCase()}iB (2^n bytes)` : ' (like 8GB, 8GiB, 512MB or a number of bytes)';
    throw new UserError(`${flag}: cannot read "${s}" as a memory size${hint}`);
  }
  const v = Number(m[1]) * mult;
  if (!(v >= 1)) throw new UserError(`${flag}: ${s} is not a positive memory size`);
  return Math.floor(v);
}

/** Bytes for people: binary units, 3 significant digits ("1.62 GiB"). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v >= 100 ? v.toFixed(0) : v.toPrecision(3)} ${units[i]}`;
}

/** FLOPs for people ("1.23 GFLOP"). */
export function formatFlops(n: number): string {
  const units = ['', 'k', 'M', 'G', 'T', 'P'];
  let i = 0, v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toPrecision(3)} ${units[i]}FLOP`;
}

/**
 * Measure instead of estimate: build the model on `backend`, run ONE real training step (the
 * Trainer and the loss pretraining uses, on random tokens: memory does not depend on the data)
 * and return the most bytes live tensors held during it (Backend.peakBytes), counted from
 * before the model was made, and the step's seconds.
 */
export async function measurePeak(p: PlanInput, backend: Backend, seed = 0): Promise<{ peak: number; resident: number; seconds: number }> {
  check(p);
  const base = backend.bytesInUse();
  backend.resetPeak();
  const rng = new T.Rng(seed);
  const model = T.noGrad(() => new GPT(p.config, rng, backend));
  model.recompute = p.recompute;
  model.ceChunk = p.ceChunk;
  const schedule = { lr: 1e-3, warmupSteps: 0, totalSteps: 1, warmdownFraction: 0, finalFraction: 1 };
  const groups = buildParamGroups(model.trainableParams(), { kind: p.optimizer, lr: 1e-3, weightDecay: p.weightDecay, schedule });
  const N = p.batchSize * p.seqLen, V = p.config.vocabSize;
  const next = () => ({ x: Int32Array.from({ length: N }, () => rng.int(V)), y: Array.from({ length: N }, () => rng.int(V)), B: p.batchSize, T: p.seqLen });
  const trainer = new Trainer(model, groups, { next }, { gradAccum: p.gradAccum, gradClip: p.gradClip });
  const resident = backend.bytesInUse() - base;
  try {
    const r = await trainer.trainStep(languageModelLoss);
    return { peak: backend.peakBytes() - base, resident, seconds: r.seconds };
  } finally {
    for (const g of groups) for (const t of Object.values(g.optimizer.stateDict())) t.dispose();
    model.dispose();
  }
}
