// AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
// Regularization", ICLR 2019; Adam: Kingma & Ba, 2015).
//
// For each parameter p with gradient g, at step t = 1, 2, ...:
//   m ← β1·m + (1−β1)·g                 first moment (running mean of g)
//   v ← β2·v + (1−β2)·g²                second moment (running mean of g², elementwise)
//   m̂ = m / (1−β1^t),  v̂ = v / (1−β2^t)  bias correction: m and v start at 0, so early
//                                        averages are too small by exactly these factors
//   p ← p − lr·wd·p − lr·m̂ / (√v̂ + ε)
// "Decoupled": the decay −lr·wd·p is applied to p directly, not added to g (which would
// route it through m/√v and make the effective decay depend on the gradient scale).
// This is the same arithmetic as torch.optim.AdamW.
//
// Every step is tensor ops only: t is a host counter, so the bias corrections are plain
// numbers, and nothing is read back from the device (the same code runs on WebGPU).
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';
import { loadInto, readStep, stateZeros, stepTensor } from './state.ts';
import { DECAYED_ROLES, type NamedParam, type Optimizer } from './types.ts';

export interface AdamWOptions {
  /** (β1, β2): decay rates of the first and second moment averages. Default (0.9, 0.95),
   *  the usual choice for language models (nanoGPT, Llama); torch's default β2 is 0.999. */
  betas?: [number, number];
  /** Added to √v̂ so that parameters with tiny gradients do not get huge steps. Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay coefficient (the step multiplies p by 1 − lr·wd). Default 0. */
  weightDecay?: number;
  /**
   * Which parameters are decayed. Default: by role (DECAYED_ROLES: matrices, embedding, head);
   * norm gains are not decayed, since pulling a gain towards 0 shrinks the whole activation,
   * and neither are LoRA adapters.
   */
  decay?: (p: NamedParam) => boolean;
  /** Name of the step counter in the state dict. Default 'adamw.step'. */
  stepKey?: string;
}

export class AdamW implements Optimizer {
  readonly params: NamedParam[];
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly stepKey: string;
  /** Steps taken so far (the t of the bias correction). */
  t = 0;
  private readonly decays: boolean[];
  private readonly expAvg: T.Tensor[]; // m, one per param, same shape
  private readonly expAvgSq: T.Tensor[]; // v, one per param, same shape
  private readonly stepT: T.Tensor; // t as an int32 scalar, refreshed by stateDict()

  constructor(params: NamedParam[], opts: AdamWOptions = {}) {
    this.params = params;
    this.betas = opts.betas ?? [0.9, 0.95];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    this.stepKey = opts.stepKey ?? 'adamw.step';
    const [b1, b2] = this.betas;
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new UserError(`AdamW: betas must be in [0, 1), got (${b1}, ${b2})`);
    if (!(this.eps > 0)) throw new UserError(`AdamW: eps must be positive, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new UserError(`AdamW: weight decay must be >= 0, got ${this.weightDecay}`);
    const decay = opts.decay ?? ((p: NamedParam) => DECAYED_ROLES.includes(p.role));
    this.decays = params.map(decay);
    this.expAvg = params.map((p) => stateZeros(p.param));
    this.expAvgSq = params.map((p) => stateZeros(p.param));
    this.stepT = stepTensor(0, params[0]?.param.backend ?? T.getDefaultBackend());
  }

  step(lr: number): void {
    if (!Number.isFinite(lr) || lr < 0) throw new UserError(`AdamW: learning rate must be finite and >= 0, got ${lr}`);
    this.t++;
    const [b1, b2] = this.betas;
    const bc1 = 1 - b1 ** this.t, bc2 = 1 - b2 ** this.t;
    T.noGrad(() =>
      // One tidy PER PARAMETER: the ~10 temporaries of the composed update below are freed
      // before the next parameter's are made, so the step never holds more than one
      // parameter's worth of them (one tidy around the loop kept every parameter's until
      // the end: 10x the size of all AdamW parameters, for 104M-parameter models gigabytes).
      this.params.forEach(({ param: p }, i) => T.tidy(() => {
        const g = p.grad;
        if (!g) return; // unused this step (torch skips params whose grad is None too)
        // the backend's fused kernel where FUSED_POLICY says so: the same maths, one pass, in place
        const wd = this.decays[i] ? this.weightDecay : 0;
        if (T.adamwUpdateFused(p, g, this.expAvg[i], this.expAvgSq[i], { lr, beta1: b1, beta2: b2, eps: this.eps, weightDecay: wd, step: this.t })) return;
        const m = T.add(T.mulScalar(this.expAvg[i], b1), T.mulScalar(g, 1 - b1));
        const v = T.add(T.mulScalar(this.expAvgSq[i], b2), T.mulScalar(T.mul(g, g), 1 - b2));
        this.expAvg[i].assign(m);
        this.expAvgSq[i].assign(v);
        // update = m̂ / (√v̂ + ε) = (m / bc1) / (√v / √bc2 + ε)
        const denom = T.addScalar(T.mulScalar(T.sqrt(v), 1 / Math.sqrt(bc2)), this.eps);
        const update = T.div(T.mulScalar(m, lr / bc1), denom);
        const decayed = this.decays[i] && this.weightDecay > 0 ? T.mulScalar(p, 1 - lr * this.weightDecay) : p;
        p.assign(T.sub(decayed, update));
      })),
    );
  }

  zeroGrad(): void {
    T.zeroGrad(this.params.map((p) => p.param));
  }

  stateDict(): Record<string, T.Tensor> {
    T.tidy(() => this.stepT.assign(T.tensor([this.t], [], { dtype: 'int32', backend: this.stepT.backend })));
    const out: Record<string, T.Tensor> = { [this.stepKey]: this.stepT };
    this.params.forEach(({ name }, i) => {
      out[`${name}.exp_avg`] = this.expAvg[i];
      out[`${name}.exp_avg_sq`] = this.expAvgSq[i];
    });
    return out;
  }

  async loadStateDict(state: Record<string, T.Tensor>): Promise<void> {
    const t = await readStep(state, this.stepKey);
    this.params.forEach(({ name }, i) => {
      loadInto(this.expAvg[i], state, `${name}.exp_avg`);
      loadInto(this.expAvgSq[i], state, `${name}.exp_avg_sq`);
    });
    this.t = t;
  }

  /** The state-dict keys this optimizer reads and writes. */
  stateKeys(): string[] {
    return [this.stepKey, ...this.params.flatMap(({ name }) => [`${name}.exp_avg`, `${name}.exp_avg_sq`])];
  }
}
