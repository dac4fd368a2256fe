// Reverse-mode autodiff: every primitive's gradient rule (vector-Jacobian product) in one
// table, and backward(), which walks the tape from the loss to the leaves.
//
// The table's type `{ [K in PrimOp]: Vjp }` makes a primitive without a rule a compile
// error; test/grad.test.ts enumerates the same table, so a rule without a finite-difference
// check is a test failure.
//
// Notation: y = op(x...), dy is the gradient of the loss w.r.t. y, and each rule returns
// dx for every input (null where the input gets no gradient: indices, comparison results).
import * as O from './ops.ts';
import type { PrimOp } from './ops.ts';
import { type TapeNode, type Tensor, detach, keep, noGrad, tape, tidy, withGrad } from './tensor.ts';
import { fusedBackward } from './fused.ts';
import type { AttentionShape } from '../backend/fused.ts';

type Vjp = (node: TapeNode, dy: Tensor) => (Tensor | null)[];

/**
 * Sum `g` down to `shape`: the adjoint of numpy broadcasting. Leading extra dims and dims
 * that were 1 in `shape` are summed away.
 */
export function sumTo(g: Tensor, shape: number[]): Tensor {
  let t = g;
  while (t.rank > shape.length) t = O.sum(t, 0);
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1 && t.shape[i] !== 1) t = O.sum(t, i, true);
  }
  return t;
}

const [x0, x1] = [(n: TapeNode) => n.inputs[0], (n: TapeNode) => n.inputs[1]];
const param = (n: TapeNode) => n.attrs.param as number;

export const VJP: { [K in PrimOp]: Vjp } = {
  // d(-x) = -dy
  neg: (_n, dy) => [O.neg(dy)],
  // d exp(x) = exp(x) dy = y dy
  exp: (n, dy) => [O.mul(dy, n.output)],
  // d log(x) = dy / x
  log: (n, dy) => [O.div(dy, x0(n))],
  // d sqrt(x) = dy / (2 sqrt(x)) = 0.5 dy / y
  sqrt: (n, dy) => [O.mulScalar(O.div(dy, n.output), 0.5)],
  // y = x^(-1/2): dy/dx = -1/2 x^(-3/2) = -1/2 y^3
  rsqrt: (n, dy) => [O.mul(dy, O.mulScalar(O.pow(n.output, 3), -0.5))],
  // d tanh(x) = (1 - y^2) dy
  tanh: (n, dy) => [O.mul(dy, O.addScalar(O.neg(O.mul(n.output, n.output)), 1))],
  // d sigmoid(x) = y (1 - y) dy
  sigmoid: (n, dy) => [O.mul(dy, O.mul(n.output, O.addScalar(O.neg(n.output), 1)))],
  // d relu(x) = [x > 0] dy
  relu: (n, dy) => [O.mul(dy, O.gt(x0(n), O.scalar(0, { backend: dy.backend })))],
  // d x^p = p x^(p-1) dy
  powScalar: (n, dy) => [O.mul(dy, O.mulScalar(O.pow(x0(n), param(n) - 1), param(n)))],
  // d (s x) = s dy
  mulScalar: (n, dy) => [O.mulScalar(dy, param(n))],
  // d (x + s) = dy
  addScalar: (_n, dy) => [dy],

  // Binary ops broadcast, so each input's gradient is summed back to its own shape.
  add: (n, dy) => [sumTo(dy, x0(n).shape), sumTo(dy, x1(n).shape)],
  sub: (n, dy) => [sumTo(dy, x0(n).shape), sumTo(O.neg(dy), x1(n).shape)],
  // d(a b) = b dy, a dy
  mul: (n, dy) => [sumTo(O.mul(dy, x1(n)), x0(n).shape), sumTo(O.mul(dy, x0(n)), x1(n).shape)],
  // d(a / b) = dy / b, -dy a / b^2 = -dy y / b
  div: (n, dy) => [
    sumTo(O.div(dy, x1(n)), x0(n).shape),
    sumTo(O.neg(O.div(O.mul(dy, n.output), x1(n))), x1(n).shape),
  ],
  // Comparisons are piecewise constant: zero gradient almost everywhere.
  lt: () => [null, null],
  gt: () => [null, null],
  eq: () => [null, null],
  // where(c, a, b): dy flows to a where c holds and to b elsewhere; c gets none.
  where: (n, dy) => {
    const zero = O.scalar(0, { backend: dy.backend });
    const [c, a, b] = n.inputs;
    return [null, sumTo(O.where(c, dy, zero), a.shape), sumTo(O.where(c, zero, dy), b.shape)];
  },
  // expand is broadcasting made explicit: its adjoint sums back.
  expand: (n, dy) => [sumTo(dy, x0(n).shape)],

  // sum along an axis: every input position receives the gradient of its row's total.
  sum: (n, dy) => {
    const x = x0(n), axis = n.attrs.axis as number;
    const kept = O.reshape(dy, x.shape.map((d, i) => (i === axis ? 1 : d)));
    return [O.expand(kept, x.shape)];
  },
  // max along an axis: the gradient goes to the arg-max positions (all of them on ties).
  max: (n, dy) => {
    const x = x0(n), axis = n.attrs.axis as number;
    const keepShape = x.shape.map((d, i) => (i === axis ? 1 : d));
    const isMax = O.eq(x, O.reshape(n.output, keepShape));
    return [O.mul(isMax, O.reshape(dy, keepShape))];
  },

  reshape: (n, dy) => [O.reshape(dy, x0(n).shape)],
  // permute's adjoint is the inverse permutation.
  permute: (n, dy) => {
    const perm = n.attrs.perm as number[];
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [O.permute(dy, inv)];
  },
  // slice's adjoint pads the gradient back with zeros, and pad's adjoint slices.
  slice: (n, dy) => {
    const { axis, start, end } = n.attrs as { axis: number; start: number; end: number };
    return [O.pad(dy, axis, start, x0(n).shape[axis] - end)];
  },
  pad: (n, dy) => {
    const { axis, before } = n.attrs as { axis: number; before: number };
    return [O.slice(dy, axis, before, before + x0(n).shape[axis])];
  },
  concat: (n, dy) => {
    const { axis, sizes } = n.attrs as { axis: number; sizes: number[] };
    let off = 0;
    return sizes.map((s) => O.slice(dy, axis, off, (off += s)));
  },

  // C = A B: dA = dC Bᵀ, dB = Aᵀ dC; transposed operands swap roles accordingly. A frozen
  // operand (a base weight under LoRA) gets no gradient: its matmul, a third of the
  // backward's work, is skipped rather than computed and dropped.
  matmul: (n, dy) => [n.inputs[0].requiresGrad ? matmulGradA(n, dy) : null, n.inputs[1].requiresGrad ? matmulGradB(n, dy) : null],

  // gather's adjoint scatters the rows' gradients back, adding rows picked more than once.
  gather: (n, dy) => [O.scatterAdd(dy, x1(n), x0(n).shape[0]), null],
  scatterAdd: (n, dy) => [O.gather(dy, x1(n)), null],

  // Fused ops carry their backward kernels (src/backend/fused.ts for the maths):
  // cross-entropy: dlogits = dy / rows * (softmax(logits) - onehot(target)), 0 on ignored rows
  crossEntropyFused: (n, dy) => {
    const { lse, N, V } = n.attrs as { lse: Tensor; N: number; V: number };
    return [fusedBackward.crossEntropy(x0(n), x1(n), lse, dy, N, V), null];
  },
  // target log-probs: dlogits = dy_i (onehot(target_i) - softmax(logits_i))
  targetLogprobsFused: (n, dy) => {
    const { lse, M, V } = n.attrs as { lse: Tensor; M: number; V: number };
    return [fusedBackward.targetLogprobs(x0(n), x1(n), lse, dy, M, V), null];
  },
  // RMSNorm: y = x r w with r = (mean x² + eps)^-1/2:
  //   dx = r (dy w) - x r³ mean(dy w x),  dw = Σ_rows dy x r
  rmsnormFused: (n, dy) => {
    const { rstd, R, C } = n.attrs as { rstd: Tensor; R: number; C: number };
    const [dx, dw] = fusedBackward.rmsnorm(x0(n), n.inputs[1] ?? null, rstd, dy, R, C);
    return n.inputs.length > 1 ? [dx, dw] : [dx];
  },
  // attention: recompute P = softmax(q kᵀ/√HS) from the saved log-sum-exp, then
  //   dv = Pᵀ dy, dP = dy vᵀ, dS = P (dP - rowsum(dy ∘ out)), dq = dS k/√HS, dk = dSᵀ q/√HS
  attentionFused: (n, dy) => {
    const { lse, shape } = n.attrs as { lse: Tensor; shape: AttentionShape };
    const [q, k, v] = n.inputs;
    return fusedBackward.attention(q, k, v, n.output, lse, dy, shape);
  },

  // SwiGLU h = silu(g) u: du = dh silu(g), dg = dh u silu'(g) (one kernel for both)
  swigluFused: (n, dy) => fusedBackward.swiglu(x0(n), x1(n), dy),
  // RoPE is linear in x: its backward is the adjoint rotation (the tables get no gradient)
  ropeFused: (n, dy) => [fusedBackward.rope(x0(n), x1(n), n.inputs[2], dy), null, null],

  // checkpoint (checkpoint.ts): y = fn(x) was computed without a tape. Recompute it WITH one,
  // from a copy of x cut off from the outer graph, and back-propagate dy through the re-run:
  // the parameters fn reads get their gradients accumulated into .grad right there (so the node
  // returns null for them), and the copy's gradient is dx. The outer tape is set aside while
  // the inner backward runs (backward clears the tape it walks) and put back afterwards.
  checkpoint: (n, dy) => {
    const fn = n.attrs.fn as (x: Tensor) => Tensor;
    const x = x0(n);
    const outer = tape.splice(0, tape.length);
    try {
      const xr = detach(x);
      xr.requiresGrad = x.requiresGrad;
      const y = withGrad(() => fn(xr));
      if (y.requiresGrad) backward(y, dy);
      const dx = xr.grad; // a leaf's gradient is kept past tidy(); taken here so xr's dispose leaves it
      xr.grad = null;
      return [dx, ...n.inputs.slice(1).map(() => null)];
    } finally {
      tape.length = 0;
      for (const node of outer) tape.push(node);
    }
  },
};

function matmulGradA(n: TapeNode, dC: Tensor): Tensor {
  const [a, b] = n.inputs;
  const { transA, transB } = n.attrs as { transA: boolean; transB: boolean };
  // A (M,K):  dA = dC @ op(B)ᵀ.   Aᵀ stored (K,M): dA_stored = op(B) @ dCᵀ.
  const g = transA
    ? O.matmul(b, dC, { transA: transB, transB: true })
    : O.matmul(dC, b, { transB: !transB });
  return sumTo(g, a.shape);
}

function matmulGradB(n: TapeNode, dC: Tensor): Tensor {
  const [a, b] = n.inputs;
  const { transA, transB } = n.attrs as { transA: boolean; transB: boolean };
  // A 2-D weight used by a batched input (x @ W in a model): flatten the batch into rows so
  // the weight gradient is one matmul, not a batch of per-example copies summed afterwards.
  if (b.rank === 2 && a.rank > 2 && !transA) {
    const a2 = O.reshape(a, [-1, a.shape.at(-1)!]);
    const d2 = O.reshape(dC, [-1, dC.shape.at(-1)!]);
    return transB ? O.matmul(d2, a2, { transA: true }) : O.matmul(a2, d2, { transA: true });
  }
  // B (K,N): dB = op(A)ᵀ @ dC.   Bᵀ stored (N,K): dB_stored = dCᵀ @ op(A).
  const g = transB
    ? O.matmul(dC, a, { transA: true, transB: transA })
    : O.matmul(a, dC, { transA: !transA });
  return sumTo(g, b.shape);
}

/** The names of every primitive op, from the gradient table. */
export const PRIM_OPS = Object.keys(VJP) as PrimOp[];

/**
 * Backpropagate from a scalar `loss` (or from `loss` with an explicit seed gradient).
 * Leaves (tensors with requiresGrad and no op) get `.grad`, accumulated across calls and
 * kept alive past the enclosing tidy(); intermediate gradients are freed as soon as used.
 * The tape is cleared afterwards.
 */
export function backward(loss: Tensor, seed?: Tensor): void {
  if (!loss.requiresGrad) throw new Error(`backward: ${loss.describe()} does not depend on anything that requires grad`);
  if (!seed && loss.size !== 1) throw new Error(`backward: loss must be a scalar, got shape [${loss.shape}]; pass a seed gradient`);
  noGrad(() => {
    const grads = new Map<Tensor, Tensor>();
    grads.set(loss, seed ?? O.full(loss.shape, 1, { backend: loss.backend }));
    // The nodes up to the loss's, walked in reverse from a copy: a checkpoint's rule records
    // (and clears) a tape of its own while this loop runs.
    const nodes = tape.slice(0, loss.node ? tape.indexOf(loss.node) + 1 : 0);
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i];
      const dy = grads.get(node.output);
      if (!dy) continue;
      grads.delete(node.output);
      // Each rule runs in its own tidy(): the temporaries it makes on the way to its results
      // (silu's sigmoid rule alone makes three (B*T, F) tensors) are freed as soon as the rule
      // returns, instead of piling up until the step ends. Only the returned gradients survive.
      const dxs = tidy(() => VJP[node.op as PrimOp](node, dy));
      node.inputs.forEach((x, k) => {
        const dx = dxs[k];
        if (!dx || !x.requiresGrad) return;
        // Store a fresh view per entry: rules may return the same tensor for two inputs (or
        // dy itself), and every entry must be disposable on its own (views share storage).
        const g = O.reshape(dx, x.shape);
        if (x.node) {
          const prev = grads.get(x);
          if (prev) {
            grads.set(x, O.add(prev, g));
            prev.dispose();
            g.dispose();
          } else grads.set(x, g);
        } else {
          // a leaf: accumulate into .grad, which outlives the enclosing tidy()
          const old = x.grad;
          x.grad = keep(old ? O.add(old, g) : g);
          if (old) {
            old.dispose();
            g.dispose();
          }
        }
      });
      // this gradient has been pushed to the inputs: free it now, not at the end of the step
      // (the views stored above keep what is still needed alive)
      for (const dx of dxs) if (dx !== seed) dx?.dispose();
      if (dy !== seed) dy.dispose();
    }
    for (const node of tape) node.output.node = null;
    tape.length = 0;
  });
}

/** Drop the gradients of a list of parameters (before the next backward). */
export function zeroGrad(params: Tensor[]): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
