// The WebGPU backend's fused kernels (the FusedKernels of fused.ts; plain-loop references in
// cpu-fused.ts): cross-entropy, per-token log-probs, RMSNorm, RoPE, flash-style attention,
// AdamW and Newton–Schulz, each a few dispatches of its kernel file with no host round trip.
import type { Storage } from './backend.ts';
import { type AdamWParams, type AttentionShape, type FusedKernels, NS_COEFFS, NS_EPS, NS_STEPS } from './fused.ts';
import { type Binding, type GpuStorage, ParamBlock } from './webgpu-dispatch.ts';
import { WebGPUOps } from './webgpu-ops.ts';

export class WebGPUFused extends WebGPUOps implements FusedKernels {
  crossEntropyForward(logits: Storage, targets: Storage, N: number, V: number): { loss: Storage; lse: Storage } {
    const lse = this.alloc(N, 'float32'), loss = this.alloc(1, 'float32'), rowLoss = this.alloc(N, 'float32');
    const p = new ParamBlock().u32(N, V);
    // bindings: 1 logits, 2 targets, 3 lse, 4 rowLoss, 5 loss, 6 dloss, 7 dlogits, 8 errors, 9 count
    this.dispatch('cross_entropy', 'forward', undefined, p, [this.check(logits), this.check(targets), lse, rowLoss, null, null, null, this.errors], this.grid1d(N, 1));
    this.dispatch('cross_entropy', 'finalize', undefined, p, [null, this.check(targets), null, rowLoss, loss], [1, 1, 1]);
    this.errorsMayBeSet = true;
    this.free(rowLoss);
    return { loss, lse };
  }

  crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, dloss: Storage, N: number, V: number): Storage {
    const dx = this.alloc(N * V, 'float32'), count = this.alloc(1, 'float32');
    const p = new ParamBlock().u32(N, V);
    const t = this.check(targets);
    this.dispatch('cross_entropy', 'count_rows', undefined, p, [null, t, null, null, null, null, null, null, count], [1, 1, 1]);
    this.dispatch('cross_entropy', 'backward', undefined, p, [this.check(logits), t, this.check(lse), null, null, this.check(dloss), dx, null, count], this.grid1d(N * V));
    this.free(count);
    return dx;
  }

  // the log-probs of target tokens: the same kernel file, bindings 10 logp and 11 dlogp
  targetLogprobsForward(logits: Storage, targets: Storage, M: number, V: number): { logp: Storage; lse: Storage } {
    const lse = this.alloc(M, 'float32'), logp = this.alloc(M, 'float32');
    const bufs: Binding[] = [this.check(logits), this.check(targets), lse, null, null, null, null, this.errors, null, logp];
    this.dispatch('cross_entropy', 'logprob_forward', undefined, new ParamBlock().u32(M, V), bufs, this.grid1d(M, 1));
    this.errorsMayBeSet = true;
    return { logp, lse };
  }

  targetLogprobsBackward(logits: Storage, targets: Storage, lse: Storage, dlogp: Storage, M: number, V: number): Storage {
    const dx = this.alloc(M * V, 'float32');
    const bufs: Binding[] = [this.check(logits), this.check(targets), this.check(lse), null, null, null, dx, null, null, null, this.check(dlogp)];
    this.dispatch('cross_entropy', 'logprob_backward', undefined, new ParamBlock().u32(M, V), bufs, this.grid1d(M * V));
    return dx;
  }

  rmsnormForward(x: Storage, weight: Storage | null, R: number, C: number, eps: number): { y: Storage; rstd: Storage } {
    const y = this.alloc(R * C, 'float32'), rstd = this.alloc(R, 'float32');
    const xs = this.check(x);
    const p = new ParamBlock().u32(R, C).f32(eps);
    // without a weight, x stands in for the unused binding (read-only aliasing is allowed)
    const w = weight ? this.check(weight) : xs;
    this.dispatch('rmsnorm', 'forward', { HAS_WEIGHT: weight ? 1 : 0 }, p, [xs, w, y, rstd], this.grid1d(R, 1));
    return { y, rstd };
  }

  rmsnormBackward(dy: Storage, x: Storage, weight: Storage | null, rstd: Storage, R: number, C: number): { dx: Storage; dweight: Storage | null } {
    const dx = this.alloc(R * C, 'float32');
    const xs = this.check(x), r = this.check(rstd), d = this.check(dy);
    const w = weight ? this.check(weight) : xs;
    const p = new ParamBlock().u32(R, C).f32(0);
    // bindings: 1 x, 2 w, 3 y, 4 rstd, 5 dy, 6 dx, 7 dw
    this.dispatch('rmsnorm', 'backward_dx', { HAS_WEIGHT: weight ? 1 : 0 }, p, [xs, w, null, r, d, dx], this.grid1d(R, 1));
    let dweight: GpuStorage | null = null;
    if (weight) {
      dweight = this.alloc(C, 'float32');
      this.dispatch('rmsnorm', 'backward_dw', undefined, p, [xs, null, null, r, d, null, dweight], [Math.ceil(C / 256), 1, 1]);
    }
    return { dx, dweight };
  }

  rope(x: Storage, cos: Storage, sin: Storage, R: number, T: number, HS: number, inverse: boolean): Storage {
    const n = R * T * HS;
    const y = this.alloc(n, 'float32');
    const p = new ParamBlock().u32(n, T, HS);
    this.dispatch('rope', 'main', { SIGN: inverse ? -1 : 1 }, p, [this.check(x), this.check(cos), this.check(sin), y], this.grid1d(n));
    return y;
  }

  private attentionParams(s: AttentionShape): ParamBlock {
    if (s.HS > 128) throw new Error(`webgpu attention: head size ${s.HS} is above the kernel's 128`);
    if (s.NH % s.NKV !== 0) throw new Error(`webgpu attention: ${s.NH} query heads is not a multiple of ${s.NKV} KV heads`);
    if (s.S < s.T) throw new Error(`webgpu attention: ${s.S} keys for ${s.T} queries; need S >= T`);
    return new ParamBlock().u32(s.B, s.NH, s.NKV, s.T, s.S, s.HS, s.causal ? 1 : 0).f32(1 / Math.sqrt(s.HS));
  }

  attentionForward(q: Storage, k: Storage, v: Storage, s: AttentionShape): { out: Storage; lse: Storage } {
    const p = this.attentionParams(s);
    const out = this.alloc(s.B * s.NH * s.T * s.HS, 'float32'), lse = this.alloc(s.B * s.NH * s.T, 'float32');
    // bindings: 1 q, 2 k, 3 v, 4 out, 5 lse (6 dout, 7 dq, 8 dk, 9 dv, 10 D: backward)
    this.dispatch('attention', 'forward', undefined, p, [this.check(q), this.check(k), this.check(v), out, lse], [Math.ceil(s.T / 64), s.B * s.NH, 1]);
    return { out, lse };
  }

  attentionBackward(dout: Storage, q: Storage, k: Storage, v: Storage, out: Storage, lse: Storage, s: AttentionShape): { dq: Storage; dk: Storage; dv: Storage } {
    const p = this.attentionParams(s);
    const nq = s.B * s.NH * s.T * s.HS, nkv = s.B * s.NKV * s.S * s.HS;
    const dq = this.alloc(nq, 'float32'), dk = this.alloc(nkv, 'float32'), dv = this.alloc(nkv, 'float32');
    const D = this.alloc(s.B * s.NH * s.T, 'float32');
    const [qs, ks, vs, os, ls, ds] = [q, k, v, out, lse, dout].map((x) => this.check(x));
    this.dispatch('attention', 'backward_d', undefined, p, [null, null, null, os, null, ds, null, null, null, D], this.grid1d(s.B * s.NH * s.T, 64));
    this.dispatch('attention', 'backward_dq', undefined, p, [qs, ks, vs, null, ls, ds, dq, null, null, D], [Math.ceil(s.T / 64), s.B * s.NH, 1]);
    this.dispatch('attention', 'backward_dkv', undefined, p, [qs, ks, vs, null, ls, ds, null, dk, dv, D], [Math.ceil(s.S / 64), s.B * s.NKV, 1]);
    this.free(D);
    return { dq, dk, dv };
  }

  adamwUpdate(param: Storage, grad: Storage, m: Storage, v: Storage, n: number, a: AdamWParams): void {
    const p = new ParamBlock().u32(n).f32(a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, 1 - a.beta1 ** a.step, 1 - a.beta2 ** a.step);
    this.dispatch('adamw', 'main', undefined, p, [this.check(param), this.check(grad), this.check(m), this.check(v)], this.grid1d(n));
  }

  /** y = alpha x + beta z (newton_schulz.wgsl). */
  private axpby(alpha: number, x: GpuStorage, beta: number, z: GpuStorage): GpuStorage {
    const y = this.alloc(x.length, 'float32');
    const p = new ParamBlock().u32(x.length).f32(alpha, beta, 0);
    this.dispatch('newton_schulz', 'axpby', undefined, p, [x, z, y], this.grid1d(x.length));
    return y;
  }

  newtonSchulz(g: Storage, rows: number, cols: number, steps = NS_STEPS): Storage {
    const [a, b, c] = NS_COEFFS;
    const n = rows * cols;
    // the wide orientation: r <= w, so that A = X Xᵀ is the small (r, r) Gram matrix
    const tall = rows > cols;
    const r = tall ? cols : rows, w = tall ? rows : cols;
    const G = tall ? (this.permute(g, [rows, cols], [1, 0]) as GpuStorage) : this.check(g);
    const inv = this.alloc(1, 'float32');
    let X = this.alloc(n, 'float32');
    const p = new ParamBlock().u32(n).f32(0, 0, NS_EPS);
    // bindings: 1 x, 2 z, 3 y, 4 s
    this.dispatch('newton_schulz', 'inv_norm', undefined, p, [G, null, null, inv], [1, 1, 1]);
    this.dispatch('newton_schulz', 'scale', undefined, p, [G, null, X, inv], this.grid1d(n));
    if (tall) this.free(G);
    this.free(inv);
    const mm = (A: GpuStorage, B: GpuStorage, M: number, K: number, N: number, transB: boolean) =>
      this.matmul(A, B, { batchA: [], batchB: [], batch: [], M, K, N, transA: false, transB }) as GpuStorage;
    for (let it = 0; it < steps; it++) {
      const A = mm(X, X, r, w, r, true); // X Xᵀ (r, r)
      const AA = mm(A, A, r, r, r, false);
      const Bm = this.axpby(b, A, c, AA); // b A + c A²
      const BX = mm(Bm, X, r, r, w, false); // (r, w)
      const next = this.axpby(a, X, 1, BX);
      [A, AA, Bm, BX, X].forEach((s) => this.free(s));
      X = next;
    }
    if (!tall) return X;
    const out = this.permute(X, [r, w], [1, 0]); // (r, w) -> (rows, cols)
    this.free(X);
    return out;
  }
}
