// The learning-rate schedule: linear warmup, a long constant stretch, then a linear
// warmdown ("trapezoidal" or warmup-stable-decay; used by modded-nanogpt and nanochat, and
// studied in Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
// Durations", 2024). Unlike cosine, the peak holds for most of the run, and the final
// warmdown — where most of the loss drop of a decay happens — can be placed anywhere.
//
//   lr ▲   ______________________
//      |  /                      \
//      | /                        \___ finalFraction·lr
//      +---------------------------------► step
//       warmup     constant     warmdown
//
// Steps count from 0. Both ramps count steps *completed* after this one (step + 1), so the
// first step already has a nonzero rate (lr/warmupSteps) and the last step (totalSteps − 1)
// runs exactly at finalFraction·lr. Pure function: no state, safe to call on resume.
import { UserError } from '../util/errors.ts';

export interface Schedule {
  /** Peak learning rate. */
  lr: number;
  /** Steps of linear warmup from lr/warmupSteps to lr. 0: start at the peak. */
  warmupSteps: number;
  /** Total steps of the run. */
  totalSteps: number;
  /** Fraction of totalSteps spent in the final linear warmdown, in [0, 1]. */
  warmdownFraction: number;
  /** The warmdown ends at finalFraction·lr (0: anneal to zero). */
  finalFraction: number;
}

/** The learning rate for step `step` (0-based). Steps at or past totalSteps get the final rate. */
export function lrAt(step: number, s: Schedule): number {
  if (!(Number.isInteger(step) && step >= 0)) throw new UserError(`lrAt: step must be a non-negative integer, got ${step}`);
  if (!(s.lr >= 0) || !Number.isInteger(s.totalSteps) || s.totalSteps < 1) throw new UserError(`lrAt: need lr >= 0 and totalSteps >= 1, got lr ${s.lr}, totalSteps ${s.totalSteps}`);
  if (!(Number.isInteger(s.warmupSteps) && s.warmupSteps >= 0)) throw new UserError(`lrAt: warmupSteps must be a non-negative integer, got ${s.warmupSteps}`);
  if (!(s.warmdownFraction >= 0 && s.warmdownFraction <= 1)) throw new UserError(`lrAt: warmdownFraction must be in [0, 1], got ${s.warmdownFraction}`);
  if (!(s.finalFraction >= 0 && s.finalFraction <= 1)) throw new UserError(`lrAt: finalFraction must be in [0, 1], got ${s.finalFraction}`);
  const done = Math.min(step + 1, s.totalSteps); // steps completed after this one
  const warmup = s.warmupSteps > 0 ? Math.min(1, done / s.warmupSteps) : 1;
  const warmdownSteps = Math.round(s.warmdownFraction * s.totalSteps);
  const start = s.totalSteps - warmdownSteps; // first warmdown step
  let decay = 1;
  if (warmdownSteps > 0 && done > start) {
    const progress = (done - start) / warmdownSteps; // (0, 1]: 1 on the last step
    decay = 1 - progress * (1 - s.finalFraction);
  }
  // If warmup and warmdown overlap (a very short run), the smaller factor wins.
  return s.lr * Math.min(warmup, decay);
}
