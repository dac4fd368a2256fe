// Activation recomputation ("gradient checkpointing", Chen et al. 2016, "Training Deep Nets
// with Sublinear Memory Cost"): trade compute for memory.
//
// Normally every tensor a forward pass makes stays alive until the step's tidy() ends, because
// the backward pass reads them (a matmul's gradient needs its inputs, a norm's its rstd, ...).
// For a transformer that is ~20 activations of (B*T, C) or (B*T, F) per block, which is what
// makes a large batch run out of memory. `checkpoint(fn, x, params)` instead:
//   forward:  runs y = fn(x) without recording (noGrad) inside its own tidy(), so fn's
//             intermediates are freed at once; only x (the block's input) and y are kept, and
//             ONE tape node ('checkpoint') stands for the whole sub-graph;
//   backward: its gradient rule (grad.ts) runs fn(x) AGAIN, this time recording, on a fresh
//             tape, back-propagates dy through it (the parameters' gradients accumulate into
//             their .grad as usual), and returns dx. The re-run's activations exist only while
//             that one rule runs.
// So the memory of L blocks' activations becomes L block inputs plus ONE block's activations,
// for one extra forward pass of each block (about a third more compute per step).
//
// Requirements on fn: deterministic (no dropout, no sampling), and a function of x and of
// tensors that do not change between the forward and the backward (the parameters, which the
// optimizer updates only after backward). `params` lists the tensors fn reads that may need
// gradients: they decide whether the output records at all (a LoRA block's input may not
// require grad while its adapters do). Their gradients are not returned by the node: they
// accumulate directly into .grad during the re-run's backward, exactly as they would have.
import { record } from './ops.ts';
import { type Tensor, isGradEnabled, noGrad, tidy } from './tensor.ts';

export function checkpoint(fn: (x: Tensor) => Tensor, x: Tensor, params: Tensor[] = []): Tensor {
  // nothing records (evaluation): just run fn, freeing its intermediates as it returns
  if (!isGradEnabled() || !(x.requiresGrad || params.some((p) => p.requiresGrad))) return tidy(() => fn(x));
  const y = tidy(() => noGrad(() => fn(x)));
  return record('checkpoint', [x, ...params], y, { fn });
}
