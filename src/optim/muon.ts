// Muon: MomentUm Orthogonalized by Newton–Schulz (Keller Jordan et al., 2024,
// https://kellerjordan.github.io/posts/muon/; scaled up in Moonlight: Liu et al., "Muon is
// Scalable for LLM Training", 2025, arXiv:2502.16982).
//
// For a weight matrix W (out, in) with gradient G, Muon keeps a momentum buffer B and steps
//   B ← μ·B + G                         heavy-ball momentum, μ = 0.95
//   U = G + μ·B                         Nesterov: look one momentum step ahead
//   O = NS5(U) ≈ U_polar = P Qᵀ          where U = P Σ Qᵀ (SVD): every singular value → ~1
//   W ← W − lr·wd·W − lr·s(out, in)·O   decoupled weight decay, shape-dependent scale s
// The idea: a gradient matrix of a linear layer is typically dominated by a few directions
// (low stable rank). Replacing it with its orthogonal polar factor keeps the directions but
// gives each the same step size, so rare-but-useful directions are not drowned out. It is
// the steepest-descent step under the spectral norm (Bernstein & Newhouse, 2024).
//
// Scaling convention (the one this repository uses): Moonlight's
//   s(out, in) = 0.2 · √max(out, in).
// An orthogonal (out, in) matrix has entries of RMS √(min/(out·in)) = 1/√max(out, in), so
// s·O has RMS 0.2 — about the RMS of a typical AdamW update. Muon and AdamW can then share
// one learning rate (one --lr flag, one schedule). Keller Jordan's convention
// s = √max(1, out/in) is available as `scaling: 'keller'`; it needs its own, larger lr
// (≈ 0.02), which is why it is not the default.
//
// Only 2-D hidden matrices belong on Muon: embeddings and the LM head are lookups/readouts
// rather than linear maps between hidden states and do better on AdamW (Keller Jordan;
// Moonlight), and 1-D gains have no matrix structure to orthogonalise. index.ts does the split.
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';
import { loadInto, readStep, stateZeros, stepTensor } from './state.ts';
import type { NamedParam, Optimizer } from './types.ts';

/**
 * The quintic's coefficients (Keller Jordan): p(x) = a·x + b·x³ + c·x⁵. Chosen to make
 * p'(0) = a as large as possible (small singular values grow ×3.4445 per step) while the
 * iterates stay in a band around 1 rather than converging exactly to 1: five steps map every
 * x in [0.0016, 1] into [0.68, 1.21] (x ≥ 0.01: [0.68, 1.14]), which is all Muon needs.
 */
export const NS_COEFFS = [3.4445, -4.775, 2.0315] as const;

/**
 * Approximately orthogonalise a matrix G (m, n): returns ≈ P Qᵀ for G = P Σ Qᵀ, by `steps`
 * iterations of the odd quintic X ← a·X + b·(X Xᵀ)X + c·(X Xᵀ)²X, which acts on each
 * singular value σ as σ ← p(σ) and leaves the singular vectors alone.
 *
 * G is first divided by its Frobenius norm (≥ the largest singular value), so every σ starts
 * in (0, 1], where the iteration is designed to work. A tall G (m > n) is transposed first so
 * that X Xᵀ is the smaller Gram matrix (min(m,n)² instead of max(m,n)²), and back at the end.
 * Runs in float32 (the reference uses bfloat16; the iteration is robust to rounding).
 */
export function newtonSchulz5(G: T.Tensor, steps = 5): T.Tensor {
  if (G.rank !== 2) throw new T.ShapeError(`newtonSchulz5: expected a matrix, got [${G.shape}]`);
  const [a, b, c] = NS_COEFFS;
  // noGrad: an optimizer's arithmetic is never differentiated (and must not fill the tape)
  return T.noGrad(() => T.tidy(() => {
    const tall = G.shape[0] > G.shape[1];
    const norm = T.sqrt(T.sumAll(T.mul(G, G))); // ‖G‖_F, a scalar kept on the device
    let X = T.div(G, T.addScalar(norm, 1e-7)); // (m, n), ‖X‖_F ≤ 1; 1e-7 guards G = 0
    if (tall) X = T.transpose(X); // (k, K) with k = min(m, n)
    for (let i = 0; i < steps; i++) {
      // one scope per iteration: its temporaries are freed (and their memory reused by the
      // next iteration) instead of piling up until the end
      const prev = X;
      X = T.tidy(() => {
        const A = T.matmul(prev, prev, { transB: true }); // (k, k) = X Xᵀ
        const B = T.add(T.mulScalar(A, b), T.mulScalar(T.matmul(A, A), c)); // (k, k) = b·A + c·A²
        return T.add(T.mulScalar(prev, a), T.matmul(B, prev)); // (k, K) = a·X + B X
      });
    }
    return tall ? T.transpose(X) : X; // (m, n)
  }));
}

export type MuonScaling = 'moonlight' | 'keller';

/** The factor s(out, in) multiplying the orthogonalised update (see the header). */
export function muonScale(out: number, inp: number, scaling: MuonScaling = 'moonlight'): number {
  return scaling === 'moonlight' ? 0.2 * Math.sqrt(Math.max(out, inp)) : Math.sqrt(Math.max(1, out / inp));
}

export interface MuonOptions {
  /** Momentum coefficient μ. Default 0.95. */
  momentum?: number;
  /** Use the Nesterov look-ahead U = G + μB (default true) or plain momentum U = B. */
  nesterov?: boolean;
  /** Newton–Schulz iterations. Default 5. */
  nsSteps?: number;
  /** Decoupled weight decay (W ← W·(1 − lr·wd) before the update). Default 0. */
  weightDecay?: number;
  /** Shape scaling convention. Default 'moonlight' (shares AdamW's learning rate). */
  scaling?: MuonScaling;
  /** Name of the step counter in the state dict. Default 'muon.step'. */
  stepKey?: string;
}

export class Muon implements Optimizer {
  readonly params: NamedParam[];
  readonly momentum: number;
  readonly nesterov: boolean;
  readonly nsSteps: number;
  readonly weightDecay: number;
  readonly scaling: MuonScaling;
  readonly stepKey: string;
  /** Steps taken (Muon needs no bias correction; kept for the state dict and logging). */
  t = 0;
  private readonly buf: T.Tensor[]; // momentum buffer B per param, (out, in)
  private readonly stepT: T.Tensor;

  constructor(params: NamedParam[], opts: MuonOptions = {}) {
    for (const { name, param } of params) {
      if (param.rank !== 2) throw new UserError(`Muon: "${name}" has shape [${param.shape}]; Muon only takes 2-D matrices`);
    }
    this.params = params;
    this.momentum = opts.momentum ?? 0.95;
    this.nesterov = opts.nesterov ?? true;
    this.nsSteps = opts.nsSteps ?? 5;
    this.weightDecay = opts.weightDecay ?? 0;
    this.scaling = opts.scaling ?? 'moonlight';
    this.stepKey = opts.stepKey ?? 'muon.step';
    if (!(this.momentum >= 0 && this.momentum < 1)) throw new UserError(`Muon: momentum must be in [0, 1), got ${this.momentum}`);
    if (!(Number.isInteger(this.nsSteps) && this.nsSteps >= 1)) throw new UserError(`Muon: nsSteps must be a positive integer, got ${this.nsSteps}`);
    if (!(this.weightDecay >= 0)) throw new UserError(`Muon: weight decay must be >= 0, got ${this.weightDecay}`);
    this.buf = params.map((p) => stateZeros(p.param));
    this.stepT = stepTensor(0, params[0]?.param.backend ?? T.getDefaultBackend());
  }

  step(lr: number): void {
    if (!Number.isFinite(lr) || lr < 0) throw new UserError(`Muon: learning rate must be finite and >= 0, got ${lr}`);
    this.t++;
    const mu = this.momentum;
    T.noGrad(() =>
      // One tidy PER MATRIX: its momentum products, look-ahead and orthogonalised update are
      // freed before the next matrix's are made (one tidy around the loop kept 5 copies of
      // every matrix until the end of the step: 5x all of Muon's weights).
      this.params.forEach(({ param: W }, i) => T.tidy(() => {
        const G = W.grad;
        if (!G) return;
        const B = T.add(T.mulScalar(this.buf[i], mu), G); // (out, in)
        this.buf[i].assign(B);
        const U = this.nesterov ? T.add(G, T.mulScalar(B, mu)) : B;
        const O = newtonSchulz5(U, this.nsSteps); // (out, in), singular values ≈ 1
        const [out, inp] = W.shape;
        const decayed = this.weightDecay > 0 ? T.mulScalar(W, 1 - lr * this.weightDecay) : W;
        W.assign(T.sub(decayed, T.mulScalar(O, lr * muonScale(out, inp, this.scaling))));
      })),
    );
  }

  zeroGrad(): void {
    T.zeroGrad(this.params.map((p) => p.param));
  }

  stateDict(): Record<string, T.Tensor> {
    T.tidy(() => this.stepT.assign(T.tensor([this.t], [], { dtype: 'int32', backend: this.stepT.backend })));
    const out: Record<string, T.Tensor> = { [this.stepKey]: this.stepT };
    this.params.forEach(({ name }, i) => (out[`${name}.momentum_buffer`] = this.buf[i]));
    return out;
  }

  async loadStateDict(state: Record<string, T.Tensor>): Promise<void> {
    const t = await readStep(state, this.stepKey);
    this.params.forEach(({ name }, i) => loadInto(this.buf[i], state, `${name}.momentum_buffer`));
    this.t = t;
  }

  stateKeys(): string[] {
    return [this.stepKey, ...this.params.map(({ name }) => `${name}.momentum_buffer`)];
  }
}
