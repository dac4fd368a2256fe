// Gradient clipping by global norm (Pascanu et al., "On the difficulty of training recurrent
// neural networks", 2013): if the gradients of all parameters, seen as one long vector, have
// norm ‖g‖ > maxNorm, scale them all by maxNorm/‖g‖, so a rare huge gradient cannot throw the
// weights far. Same rule as torch.nn.utils.clip_grad_norm_.
//
// Everything stays on the device: the norm is a scalar tensor, and the scale
// min(1, maxNorm/(‖g‖ + 1e-6)) is computed with where/lt, never read back. The returned norm
// can be read later (for logging) when the host needs a number anyway.
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';
import type { NamedParam } from './types.ts';

/**
 * Scale every gradient in place (by buffer swap) so their global L2 norm is at most maxNorm.
 * Returns the norm *before* clipping as a scalar tensor (shape []) owned by the caller's scope.
 * Parameters without a gradient are skipped.
 */
export function clipGradNorm(params: (NamedParam | T.Tensor)[], maxNorm: number): T.Tensor {
  if (!(maxNorm > 0)) throw new UserError(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`);
  const grads = params.map((p) => (p instanceof T.Tensor ? p : p.param).grad).filter((g): g is T.Tensor => g !== null);
  if (grads.length === 0) throw new UserError('clipGradNorm: no parameter has a gradient (call backward first)');
  return T.noGrad(() =>
    T.tidy(() => {
      // ‖g‖² = Σ over params of Σ g² ; one scalar per param, added on the device. Each g² is
      // made and freed in its own tidy (only the scalar comes out), so at most one
      // gradient's worth of squares exists at a time, not a copy of every gradient.
      let sq = T.tidy(() => T.sumAll(T.mul(grads[0], grads[0])));
      for (const g of grads.slice(1)) sq = T.add(sq, T.tidy(() => T.sumAll(T.mul(g, g))));
      const norm = T.sqrt(sq); // ()
      const ratio = T.div(T.scalar(maxNorm, { backend: norm.backend }), T.addScalar(norm, 1e-6));
      const one = T.scalar(1, { backend: norm.backend });
      const scale = T.where(T.lt(ratio, one), ratio, one); // min(1, ratio)
      // the same for the rescale: g takes the product's storage and its old one is freed at once
      for (const g of grads) T.tidy(() => g.assign(T.mul(g, scale)));
      return norm;
    }),
  );
}
