// The model's per-token log-probs (src/model/logprobs.ts), fast path against the slow: the
// fused targetLogprobs kernel and logits computed only at wanted positions (`only`) give the
// composed log-softmax's values and parameter gradients, and hold less memory for the
// backward (bytes from the backends' live-bytes counter, exact and machine-independent).
// The kernels themselves are checked in fused.test.ts, grad.test.ts (float64 finite
// differences), wasm-backend.test.ts and webgpu-fused.test.ts.
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { createWasmBackend } from '../src/backend/wasm.ts';
import { GPT, type GPTConfig } from '../src/model/gpt.ts';
import { tokenLogprobs, type TokenLogprobsOptions } from '../src/model/logprobs.ts';
import * as T from '../src/tensor/index.ts';

const wasm = await createWasmBackend();
afterAll(() => {
  T.setDefaultBackend(cpu);
  wasm.destroy();
});

const config = (V: number): GPTConfig => ({
  vocabSize: V, hiddenSize: 16, numLayers: 2, numHeads: 2, numKVHeads: 1, headDim: 8, intermediateSize: 32,
  maxSeqLen: 64, ropeTheta: 10000, rmsNormEps: 1e-6, tieEmbeddings: true, qkNorm: true, mlp: 'swiglu', logitSoftcap: 0,
});

/** log-probs and every parameter's gradient of sum(logp * R), R fixed. */
function run(model: GPT, ids: Int32Array, N: number, L: number, R: Float32Array, o: TokenLogprobsOptions) {
  const params = model.trainableParams().map((p) => p.param);
  const out = T.tidy(() => {
    const lp = tokenLogprobs(model, ids, N, L, o);
    T.backward(T.sumAll(T.mul(lp, T.tensor(R, [N, L - 1]))));
    return { logp: Float32Array.from(lp.dataSync()), grads: params.map((p) => Float32Array.from(p.grad!.dataSync())) };
  });
  T.zeroGrad(params);
  return out;
}

// Same maths in float32, different operation order (one pass per row vs several ops; the
// gradient summed over the wanted rows only): a few ULP per element, as test/fused.test.ts.
function close(got: Float32Array, want: Float32Array, what: string) {
  expect(got.length, what).toBe(want.length);
  got.forEach((v, i) => expect(Math.abs(v - want[i]), `${what}[${i}]`).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(want[i])));
}

describe('tokenLogprobs: fused and only-wanted-positions = the composed log-softmax', () => {
  const V = 61, N = 3, L = 9, rng = new T.Rng(5);
  const model = T.noGrad(() => new GPT({ ...config(V), logitSoftcap: 15 }, new T.Rng(3)));
  const ids = Int32Array.from({ length: N * L }, () => rng.int(V));
  const R = rng.normalArray(N * (L - 1)) as Float32Array;
  // a completion mask like RL's: each row's last few positions, of different lengths
  const only = Float32Array.from({ length: N * (L - 1) }, (_, i) => (i % (L - 1) >= 2 + Math.floor(i / (L - 1)) ? 1 : 0));

  it('fused log-probs and gradients equal the composed ones', () => {
    const slow = run(model, ids, N, L, R, { fused: false }), fast = run(model, ids, N, L, R, {});
    close(fast.logp, slow.logp, 'logp');
    slow.grads.forEach((g, k) => close(fast.grads[k], g, `grad ${k}`));
    // the values are real log-probs: negative, and not all the same
    expect(Math.max(...slow.logp)).toBeLessThan(0);
    expect(new Set(slow.logp).size).toBeGreaterThan(N);
  });

  it('`only`: the wanted positions as computed in full, exact zeros elsewhere, the masked gradient', () => {
    const masked = R.map((r, i) => r * only[i]);
    const slow = run(model, ids, N, L, masked, { fused: false });
    for (const fused of [true, false]) {
      const part = run(model, ids, N, L, R, { only, fused });
      only.forEach((m, i) => {
        if (m) expect(Math.abs(part.logp[i] - slow.logp[i]), `logp[${i}]`).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(slow.logp[i]));
        else expect(part.logp[i], `logp[${i}] (not wanted)`).toBe(0);
      });
      // R outside the mask must not reach the gradient: it equals that of the masked R
      slow.grads.forEach((g, k) => close(part.grads[k], g, `grad ${k} (fused ${fused})`));
    }
  });

  it('refuses a mask of the wrong length', () => {
    expect(() => tokenLogprobs(model, ids, N, L, { only: new Float32Array(5) })).toThrow(/only has 5 values for \(3, 8\)/);
  });
});

describe('tokenLogprobs: peak live memory of forward + backward', () => {
  // V large against the model (hidden 16): the (rows, V) tensors dominate, as in RL
  const V = 2048, N = 2, L = 17, rng = new T.Rng(8);
  const MV = N * (L - 1) * V * 4; // bytes of one (N*(L-1), V) float32 tensor
  const ids = Int32Array.from({ length: N * L }, () => rng.int(V));
  const only = Float32Array.from({ length: N * (L - 1) }, (_, i) => (i % (L - 1) >= (L - 1) / 2 ? 1 : 0)); // half the positions

  const peak = (be: Backend, model: GPT, o: TokenLogprobsOptions) => {
    const before = be.bytesInUse();
    be.resetPeak();
    T.tidy(() => T.backward(T.sumAll(tokenLogprobs(model, ids, N, L, o))));
    const top = be.peakBytes() - before;
    T.zeroGrad(model.trainableParams().map((p) => p.param));
    return top;
  };

  for (const be of [cpu, wasm] as Backend[]) {
    it(`${be.name}: the fused op keeps >= 4 fewer (rows, V) tensors; only-wanted positions less again`, () => {
      T.setDefaultBackend(be);
      try {
        const model = T.noGrad(() => new GPT(config(V), new T.Rng(1)));
        peak(be, model, {}); // warm-up: the model's first forward caches its RoPE tables
        const composed = peak(be, model, { fused: false }), fused = peak(be, model, {}), part = peak(be, model, { only });
        // composed: x - max, exp and the log-softmax stay alive for the backward, and the
        // backward makes (rows, V) gradients for each; fused keeps the logits and makes dlogits
        expect(composed - fused, `composed ${composed} B, fused ${fused} B, (rows, V) = ${MV} B`).toBeGreaterThanOrEqual(4 * MV);
        // half the rows: the logits and dlogits of the other half are never made
        expect(fused - part, `fused ${fused} B, fused + only ${part} B`).toBeGreaterThanOrEqual(0.4 * MV);
        model.dispose();
      } finally {
        T.setDefaultBackend(cpu);
      }
    });
  }
});
