// Small helpers shared by the optimizers for their persistent state (moment buffers and the
// step count): how it is created so that it outlives every tidy() scope, and how a saved
// state dict is checked and loaded back.
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';

/** A zero buffer shaped like `like`, kept alive past any enclosing tidy(). */
export function stateZeros(like: T.Tensor): T.Tensor {
  return T.keep(T.zeros(like.shape, { backend: like.backend }));
}

/** A persistent int32 scalar holding a step count. */
export function stepTensor(step: number, backend: T.Tensor['backend']): T.Tensor {
  return T.keep(T.tensor([step], [], { dtype: 'int32', backend }));
}

/**
 * Make `target` hold the values of `state[key]` (no copy: the storage is shared, which is
 * safe because every update replaces a buffer rather than writing into it).
 */
export function loadInto(target: T.Tensor, state: Record<string, T.Tensor>, key: string): void {
  const src = state[key];
  if (!src) throw new UserError(`optimizer state: missing "${key}" (was the checkpoint made with another model or optimizer?)`);
  if (src.dtype !== target.dtype || src.shape.join() !== target.shape.join()) {
    throw new UserError(`optimizer state: "${key}" is ${src.dtype}[${src.shape}], expected ${target.dtype}[${target.shape}]`);
  }
  if (src.backend !== target.backend) {
    throw new UserError(`optimizer state: "${key}" lives on backend ${src.backend.name}, the parameters on ${target.backend.name}`);
  }
  target.assign(src);
}

/** Read a saved step count (int32 or float32 scalar) to the host. */
export async function readStep(state: Record<string, T.Tensor>, key: string): Promise<number> {
  const src = state[key];
  if (!src || src.size !== 1) throw new UserError(`optimizer state: missing or malformed step count "${key}"`);
  const step = (await src.data())[0];
  if (!(Number.isInteger(step) && step >= 0)) throw new UserError(`optimizer state: step count "${key}" is ${step}, not a non-negative integer`);
  return step;
}
