// One optimizer step of any training stage, with nothing else attached: no files, no
// logging. Pretraining, SFT and RL differ only in their batch source and their loss
// function; this class is the loop body they share (and the page runs the same code).
//
//   const trainer = new Trainer(model, groups, source, { gradAccum: 1, gradClip: 1 });
//   await trainer.trainStep((model, batch) => model.loss(ids(batch), batch.y));
//
// A step:
//   1. `gradAccum` micro-batches from the batch source, each forward + backward with the loss
//      scaled by 1/gradAccum (so gradients are the mean over micro-batches);
//   2. a non-finite loss stops before the weights are touched (DivergedError);
//   3. optional global-norm clipping over every trainable parameter;
//   4. each parameter group's optimizer steps at its own scheduled learning rate
//      (Muon and AdamW in pretraining; a LoRA group, or a policy and a world-model group, later);
//   5. gradients dropped.
// Frozen parameters (requiresGrad off) get no gradient and belong to no group.
import type { GPT } from '../model/gpt.ts';
import { clipGradNorm, lrAt, type ParamGroup } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';

export class DivergedError extends Error {
  constructor(readonly step: number, readonly loss: number) {
    super(`training diverged at step ${step}: the loss is ${loss}`);
    this.name = 'DivergedError';
  }
}

/** Where batches come from: pretraining windows, packed conversations, RL rollouts. */
export interface BatchSource<B> {
  next(): B;
}

/** The loss of one micro-batch: a scalar tensor that depends on the model's parameters.
 *  May be async (a loss that needs a host copy of something on a GPU backend). */
export type LossFn<B> = (model: GPT, batch: B) => T.Tensor | Promise<T.Tensor>;

export interface StepResult {
  step: number; // steps completed, this one included
  loss: number; // mean training loss of this step's micro-batches
  lr: number; // the first group's learning rate this step (all groups share one schedule in pretraining)
  lrs: Record<string, number>; // every group's learning rate this step
  seconds: number;
}

export interface TrainerOptions {
  gradAccum: number; // micro-batches per optimizer step
  gradClip: number; // clip the global gradient norm to this (0 = off)
}

export class Trainer<B> {
  /** Optimizer steps completed so far. */
  step = 0;

  constructor(
    readonly model: GPT,
    readonly groups: ParamGroup[],
    readonly source: BatchSource<B>,
    readonly o: TrainerOptions,
  ) {
    if (!Number.isInteger(o.gradAccum) || o.gradAccum < 1) throw new UserError(`grad-accum must be a positive integer, got ${o.gradAccum}`);
    if (!(o.gradClip >= 0)) throw new UserError(`grad-clip must be >= 0, got ${o.gradClip}`);
    const seen = new Set<string>();
    for (const g of groups) {
      for (const p of g.params) {
        if (seen.has(p.name)) throw new Error(`internal: parameter ${p.name} is in two groups`);
        if (!p.param.requiresGrad) throw new Error(`internal: frozen parameter ${p.name} is in group ${g.name}`);
        seen.add(p.name);
      }
    }
  }

  /** Every parameter some group updates. */
  params() {
    return this.groups.flatMap((g) => g.params);
  }

  async trainStep(lossFn: LossFn<B>): Promise<StepResult> {
    const t0 = performance.now();
    const { model, source } = this;
    const lrs: Record<string, number> = {};
    for (const g of this.groups) lrs[g.name] = lrAt(this.step, g.schedule);
    let lossSum = 0;
    for (let micro = 0; micro < this.o.gradAccum; micro++) {
      const batch = source.next();
      lossSum += await T.tidy(async () => {
        const loss = await lossFn(model, batch);
        T.backward(this.o.gradAccum > 1 ? T.mulScalar(loss, 1 / this.o.gradAccum) : loss);
        return loss.item();
      });
    }
    const loss = lossSum / this.o.gradAccum;
    if (!Number.isFinite(loss)) {
      this.zeroGrad();
      throw new DivergedError(this.step + 1, loss);
    }
    T.noGrad(() =>
      T.tidy(() => {
        if (this.o.gradClip > 0) clipGradNorm(this.params(), this.o.gradClip);
        for (const g of this.groups) g.optimizer.step(lrs[g.name]);
      }),
    );
    this.zeroGrad();
    this.step++;
    const lr = this.groups.length ? lrs[this.groups[0].name] : 0;
    return { step: this.step, loss, lr, lrs, seconds: (performance.now() - t0) / 1000 };
  }

  zeroGrad(): void {
    for (const g of this.groups) g.optimizer.zeroGrad();
  }
}

/** Next-token loss on (B, T) windows with targets (-1 = not trained on): pretraining's and
 *  SFT's loss function. */
export function languageModelLoss(model: GPT, batch: { x: Int32Array; y: ArrayLike<number>; B: number; T: number }): T.Tensor {
  return model.loss(T.tensor(batch.x, [batch.B, batch.T], { dtype: 'int32', backend: model.backend }), batch.y);
}
