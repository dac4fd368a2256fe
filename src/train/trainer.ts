// One optimizer step of language-model training, with nothing else attached: no files, no
// logging. The CLI's pretraining loop (pretrain.ts) and the browser demo's worker both drive
// this class, so the page trains with exactly the code the command line does.
//
// A step: `gradAccum` micro-batches, each forward + backward with the loss scaled by
// 1/gradAccum (so gradients are the mean over micro-batches); a non-finite loss stops before
// the weights are touched; optional global-norm clipping; the optimizer update at the
// scheduled learning rate; gradients dropped.
import type { GPT } from '../model/gpt.ts';
import { type BuiltOptimizer, clipGradNorm, lrAt, type Schedule } from '../optim/index.ts';
import * as T from '../tensor/index.ts';
import type { BatchLoader } from '../data/loader.ts';

export class DivergedError extends Error {
  constructor(readonly step: number, readonly loss: number) {
    super(`training diverged at step ${step}: the loss is ${loss}`);
    this.name = 'DivergedError';
  }
}

export interface StepResult {
  step: number; // steps completed, this one included
  loss: number; // mean training loss of this step's micro-batches
  lr: number;
  seconds: number;
}

export class Trainer {
  /** Optimizer steps completed so far. */
  step = 0;

  constructor(
    readonly model: GPT,
    readonly optimizer: BuiltOptimizer,
    readonly loader: BatchLoader,
    readonly o: { gradAccum: number; gradClip: number; schedule: Schedule },
  ) {}

  async trainStep(): Promise<StepResult> {
    const t0 = performance.now();
    const { model, loader } = this;
    const lr = lrAt(this.step, this.o.schedule);
    let lossSum = 0;
    for (let micro = 0; micro < this.o.gradAccum; micro++) {
      const batch = loader.next();
      lossSum += await T.tidy(async () => {
        const loss = model.loss(T.tensor(batch.x, [batch.B, batch.T], { dtype: 'int32', backend: model.backend }), batch.y);
        T.backward(this.o.gradAccum > 1 ? T.mulScalar(loss, 1 / this.o.gradAccum) : loss);
        return loss.item();
      });
    }
    const loss = lossSum / this.o.gradAccum;
    if (!Number.isFinite(loss)) {
      this.optimizer.zeroGrad();
      throw new DivergedError(this.step + 1, loss);
    }
    T.noGrad(() =>
      T.tidy(() => {
        if (this.o.gradClip > 0) clipGradNorm(model.namedParams(), this.o.gradClip);
        this.optimizer.step(lr);
      }),
    );
    this.optimizer.zeroGrad();
    this.step++;
    return { step: this.step, loss, lr, seconds: (performance.now() - t0) / 1000 };
  }
}
