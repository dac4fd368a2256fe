// The WebGPU backend's fused kernels (the FusedKernels of fused.ts; plain-loop references in
// cpu-fused.ts): cross-entropy, per-token log-probs, RMSNorm, RoPE, flash-style attention,
// AdamW and Newton–Schulz, each a few dispatches of its kernel file with no host round trip.
// Operands above the binding limit are split into bands (webgpu-split.ts): rows for
// cross-entropy, log-probs, RMSNorm and RoPE, KV heads for attention, elements for AdamW.
import type { Storage } from './backend.ts';
import { type AdamWParams, type AttentionShape, type FusedKernels, NS_COEFFS, NS_EPS, NS_STEPS } from './fused.ts';
import { type Binding, type GpuStorage, ParamBlock } from './webgpu-dispatch.ts';
import { WebGPUOps } from './webgpu-ops.ts';

export class WebGPUFused extends WebGPUOps implements FusedKernels {
  crossEntropyForward(logits: Storage, targets: Storage, N: number, V: number): { loss: Storage; lse: Storage } {
    const lse = this.alloc(N, 'float32'), loss = this.alloc(1, 'float32'), rowLoss = this.alloc(N, 'float32');
    const [x, t] = [this.check(logits), this.check(targets)];
    // bindings: 1 logits, 2 targets, 3 lse, 4 rowLoss, 5 loss, 6 dloss, 7 dlogits, 8 errors, 9 count
    for (const [r0, r1] of this.bands(N, [V, 1, 1, 1], 'crossEntropy', 'one row of the logits')) {
      const p = new ParamBlock().u32(r1 - r0, V, r0), n = r1 - r0;
      const bufs = [this.in(x, r0 * V, n * V), this.in(t, r0, n), this.out(lse, r0, n), this.out(rowLoss, r0, n), null, null, null, this.errors];
      this.dispatchViews('cross_entropy', 'forward', undefined, p, bufs, this.grid1d(n, 1));
    }
    this.dispatch('cross_entropy', 'finalize', undefined, new ParamBlock().u32(N, V, 0), [null, t, null, rowLoss, loss], [1, 1, 1]);
    this.errorsMayBeSet = true;
    this.free(rowLoss);
    return { loss, lse };
  }

  crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, dloss: Storage, N: number, V: number): Storage {
    const dx = this.alloc(N * V, 'float32', `the logits gradient [${N}, ${V}]`), count = this.alloc(1, 'float32');
    const [x, t, l, d] = [this.check(logits), this.check(targets), this.check(lse), this.check(dloss)];
    this.dispatch('cross_entropy', 'count_rows', undefined, new ParamBlock().u32(N, V, 0), [null, t, null, null, null, null, null, null, count], [1, 1, 1]);
    for (const [r0, r1] of this.bands(N, [V, 1, 1, V], 'crossEntropy', 'one row of the logits')) {
      const n = r1 - r0;
      const bufs = [this.in(x, r0 * V, n * V), this.in(t, r0, n), this.in(l, r0, n), null, null, d, this.out(dx, r0 * V, n * V), null, count];
      this.dispatchViews('cross_entropy', 'backward', undefined, new ParamBlock().u32(n, V, r0), bufs, this.grid1d(n * V));
    }
    this.free(count);
    return dx;
  }

  // the log-probs of target tokens: the same kernel file, bindings 10 logp and 11 dlogp
  targetLogprobsForward(logits: Storage, targets: Storage, M: number, V: number): { logp: Storage; lse: Storage } {
    const lse = this.alloc(M, 'float32'), logp = this.alloc(M, 'float32');
    const [x, t] = [this.check(logits), this.check(targets)];
    for (const [r0, r1] of this.bands(M, [V, 1, 1, 1], 'targetLogprobs', 'one row of the logits')) {
      const n = r1 - r0;
      const bufs = [this.in(x, r0 * V, n * V), this.in(t, r0, n), this.out(lse, r0, n), null, null, null, null, this.errors, null, this.out(logp, r0, n)];
      this.dispatchViews('cross_entropy', 'logprob_forward', undefined, new ParamBlock().u32(n, V, r0), bufs, this.grid1d(n, 1));
    }
    this.errorsMayBeSet = true;
    return { logp, lse };
  }

  targetLogprobsBackward(logits: Storage, targets: Storage, lse: Storage, dlogp: Storage, M: number, V: number): Storage {
    const dx = this.alloc(M * V, 'float32', `the logits gradient [${M}, ${V}]`);
    const [x, t, l, g] = [this.check(logits), this.check(targets), this.check(lse), this.check(dlogp)];
    for (const [r0, r1] of this.bands(M, [V, 1, 1, V, 1], 'targetLogprobs', 'one row of the logits')) {
      const n = r1 - r0;
      const bufs = [this.in(x, r0 * V, n * V), this.in(t, r0, n), this.in(l, r0, n), null, null, null, this.out(dx, r0 * V, n * V), null, null, null, this.in(g, r0, n)];
      this.dispatchViews('cross_entropy', 'logprob_backward', undefined, new ParamBlock().u32(n, V, r0), bufs, this.grid1d(n * V));
    }
    return dx;
  }

  rmsnormForward(x: Storage, weight: Storage | null, R: number, C: number, eps: number): { y: Storage; rstd: Storage } {
    const y = this.alloc(R * C, 'float32'), rstd = this.alloc(R, 'float32');
    const xs = this.check(x);
    for (const [r0, r1] of this.bands(R, [C, C, 1], 'rmsnorm')) {
      const n = r1 - r0, vx = this.in(xs, r0 * C, n * C);
      const p = new ParamBlock().u32(n, C).f32(eps);
      // without a weight, x stands in for the unused binding (read-only aliasing is allowed)
      const w = weight ? this.check(weight) : vx;
      this.dispatchViews('rmsnorm', 'forward', { HAS_WEIGHT: weight ? 1 : 0 }, p, [vx, w, this.out(y, r0 * C, n * C), this.out(rstd, r0, n)], this.grid1d(n, 1));
    }
    return { y, rstd };
  }

  rmsnormBackward(dy: Storage, x: Storage, weight: Storage | null, rstd: Storage, R: number, C: number): { dx: Storage; dweight: Storage | null } {
    const dx = this.alloc(R * C, 'float32');
    const xs = this.check(x), r = this.check(rstd), d = this.check(dy);
    let dweight: GpuStorage | null = null;
    // bindings: 1 x, 2 w, 3 y, 4 rstd, 5 dy, 6 dx, 7 dw; with row bands, dw is the sum of
    // each band's partial dw
    for (const [r0, r1] of this.bands(R, [C, 1, C, C], 'rmsnorm')) {
      const n = r1 - r0, vx = this.in(xs, r0 * C, n * C), vr = this.in(r, r0, n);
      const vdy = this.in(d, r0 * C, n * C);
      const w = weight ? this.check(weight) : vx;
      const p = new ParamBlock().u32(n, C).f32(0);
      this.dispatchViews('rmsnorm', 'backward_dx', { HAS_WEIGHT: weight ? 1 : 0 }, p, [vx, w, null, vr, vdy, this.out(dx, r0 * C, n * C)], this.grid1d(n, 1));
      if (weight) {
        const part = this.alloc(C, 'float32');
        this.dispatchViews('rmsnorm', 'backward_dw', undefined, p, [vx, null, null, vr, vdy, null, part], [Math.ceil(C / 256), 1, 1]);
        if (dweight) {
          const sum = this.binary('add', dweight, [C], part, [C], [C]) as GpuStorage;
          this.free(dweight);
          this.free(part);
          dweight = sum;
        } else dweight = part;
      }
    }
    if (weight && !dweight) dweight = this.zeros(C, 'float32') as GpuStorage; // R = 0
    return { dx, dweight };
  }

  rope(x: Storage, cos: Storage, sin: Storage, R: number, T: number, HS: number, inverse: boolean): Storage {
    const y = this.alloc(R * T * HS, 'float32');
    const xs = this.check(x), row = T * HS;
    for (const [r0, r1] of this.bands(R, [row, row], 'rope')) {
      const n = (r1 - r0) * row;
      const p = new ParamBlock().u32(n, T, HS);
      this.dispatchViews('rope', 'main', { SIGN: inverse ? -1 : 1 }, p, [this.in(xs, r0 * row, n), this.check(cos), this.check(sin), this.out(y, r0 * row, n)], this.grid1d(n));
    }
    return y;
  }

  private attentionParams(s: AttentionShape): ParamBlock {
    if (s.HS > 128) throw new Error(`webgpu attention: head size ${s.HS} is above the kernel's 128`);
    if (s.NH % s.NKV !== 0) throw new Error(`webgpu attention: ${s.NH} query heads is not a multiple of ${s.NKV} KV heads`);
    if (s.S < s.T) throw new Error(`webgpu attention: ${s.S} keys for ${s.T} queries; need S >= T`);
    return new ParamBlock().u32(s.B, s.NH, s.NKV, s.T, s.S, s.HS, s.causal ? 1 : 0).f32(1 / Math.sqrt(s.HS));
  }

  /**
   * Bands of KV heads (b, kv head flattened): KV head j is read by query heads [j g, (j + 1) g)
   * (g = NH / NKV), so a band of KV heads is a contiguous range of every tensor, and runs as
   * a problem of its own with B = the band's KV heads, NH = g, NKV = 1.
   */
  private attentionBands(s: AttentionShape): { sub: AttentionShape; j0: number; j1: number }[] {
    this.attentionParams(s); // the shape checks first
    const g = s.NH / s.NKV;
    const bands = this.bands(s.B * s.NKV, [g * s.T * s.HS, s.S * s.HS, g * s.T], 'attention', 'one KV group');
    if (bands.length === 1) return [{ sub: s, j0: 0, j1: s.B * s.NKV }];
    return bands.map(([j0, j1]) => ({ sub: { ...s, B: j1 - j0, NH: g, NKV: 1 }, j0, j1 }));
  }

  attentionForward(q: Storage, k: Storage, v: Storage, s: AttentionShape): { out: Storage; lse: Storage } {
    const out = this.alloc(s.B * s.NH * s.T * s.HS, 'float32'), lse = this.alloc(s.B * s.NH * s.T, 'float32');
    const [qs, ks, vs] = [q, k, v].map((x) => this.check(x));
    const g = s.NH / s.NKV, qRows = g * s.T * s.HS, kRows = s.S * s.HS, lRows = g * s.T;
    for (const { sub, j0, j1 } of this.attentionBands(s)) {
      const n = j1 - j0;
      // bindings: 1 q, 2 k, 3 v, 4 out, 5 lse (6 dout, 7 dq, 8 dk, 9 dv, 10 D: backward)
      const bufs = [this.in(qs, j0 * qRows, n * qRows), this.in(ks, j0 * kRows, n * kRows), this.in(vs, j0 * kRows, n * kRows), this.out(out, j0 * qRows, n * qRows), this.out(lse, j0 * lRows, n * lRows)];
      this.dispatchViews('attention', 'forward', undefined, this.attentionParams(sub), bufs, [Math.ceil(s.T / 64), sub.B * sub.NH, 1]);
    }
    return { out, lse };
  }

  attentionBackward(dout: Storage, q: Storage, k: Storage, v: Storage, out: Storage, lse: Storage, s: AttentionShape): { dq: Storage; dk: Storage; dv: Storage } {
    const nq = s.B * s.NH * s.T * s.HS, nkv = s.B * s.NKV * s.S * s.HS;
    const dq = this.alloc(nq, 'float32'), dk = this.alloc(nkv, 'float32'), dv = this.alloc(nkv, 'float32');
    const D = this.alloc(s.B * s.NH * s.T, 'float32');
    const [qs, ks, vs, os, ls, ds] = [q, k, v, out, lse, dout].map((x) => this.check(x));
    const g = s.NH / s.NKV, qRows = g * s.T * s.HS, kRows = s.S * s.HS, lRows = g * s.T;
    for (const { sub, j0, j1 } of this.attentionBands(s)) {
      const n = j1 - j0, p = this.attentionParams(sub);
      const [vq, vo, vdo] = [qs, os, ds].map((x) => this.in(x, j0 * qRows, n * qRows));
      const [vk, vv] = [ks, vs].map((x) => this.in(x, j0 * kRows, n * kRows));
      const vl = this.in(ls, j0 * lRows, n * lRows), vD = this.inout(D, j0 * lRows, n * lRows);
      const vdq = this.out(dq, j0 * qRows, n * qRows), vdk = this.out(dk, j0 * kRows, n * kRows), vdv = this.out(dv, j0 * kRows, n * kRows);
      this.dispatchViews('attention', 'backward_d', undefined, p, [null, null, null, vo, null, vdo, null, null, null, vD], this.grid1d(sub.B * sub.NH * s.T, 64));
      this.dispatchViews('attention', 'backward_dq', undefined, p, [vq, vk, vv, null, vl, vdo, vdq, null, null, vD], [Math.ceil(s.T / 64), sub.B * sub.NH, 1]);
      this.dispatchViews('attention', 'backward_dkv', undefined, p, [vq, vk, vv, null, vl, vdo, null, vdk, vdv, vD], [Math.ceil(s.S / 64), sub.B * sub.NKV, 1]);
    }
    this.free(D);
    return { dq, dk, dv };
  }

  adamwUpdate(param: Storage, grad: Storage, m: Storage, v: Storage, n: number, a: AdamWParams): void {
    const [ps, gs, ms, vs] = [param, grad, m, v].map((x) => this.check(x));
    for (const [i0, i1] of this.bands(n, [1, 1, 1, 1], 'adamw')) {
      const c = i1 - i0;
      const p = new ParamBlock().u32(c).f32(a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, 1 - a.beta1 ** a.step, 1 - a.beta2 ** a.step);
      this.dispatchViews('adamw', 'main', undefined, p, [this.inout(ps, i0, c), this.in(gs, i0, c), this.inout(ms, i0, c), this.inout(vs, i0, c)], this.grid1d(c));
    }
  }

  /** y = alpha x + beta z (newton_schulz.wgsl). */
  private axpby(alpha: number, x: GpuStorage, beta: number, z: GpuStorage): GpuStorage {
    const y = this.alloc(x.length, 'float32');
    for (const [i0, i1] of this.bands(x.length, [1, 1, 1], 'newtonSchulz')) {
      const p = new ParamBlock().u32(i1 - i0).f32(alpha, beta, 0);
      this.dispatchViews('newton_schulz', 'axpby', undefined, p, [this.in(x, i0, i1 - i0), this.in(z, i0, i1 - i0), this.out(y, i0, i1 - i0)], this.grid1d(i1 - i0));
    }
    return y;
  }

  /** A one-float storage: 1 / (|G|_F + eps). */
  private invNorm(G: GpuStorage, n: number): GpuStorage {
    const inv = this.alloc(1, 'float32');
    if (!this.big(G)) {
      // bindings: 1 x, 2 z, 3 y, 4 s
      this.dispatch('newton_schulz', 'inv_norm', undefined, new ParamBlock().u32(n).f32(0, 0, NS_EPS), [G, null, null, inv], [1, 1, 1]);
      return inv;
    }
    // too big for one workgroup's binding: the same formula from split ops
    const sq = this.binary('mul', G, [n], G, [n], [n]);
    const ss = this.reduce('sum', sq, [n], 0);
    const norm = this.unary('sqrt', ss, 0);
    const den = this.unary('addScalar', norm, NS_EPS);
    const one = this.upload([1], 'float32');
    const r = this.binary('div', one, [1], den, [1], [1]) as GpuStorage;
    [sq, ss, norm, den, one, inv].forEach((t) => this.free(t));
    return r;
  }

  newtonSchulz(g: Storage, rows: number, cols: number, steps = NS_STEPS): Storage {
    const [a, b, c] = NS_COEFFS;
    const n = rows * cols;
    // the wide orientation: r <= w, so that A = X Xᵀ is the small (r, r) Gram matrix
    const tall = rows > cols;
    const r = tall ? cols : rows, w = tall ? rows : cols;
    const G = tall ? (this.permute(g, [rows, cols], [1, 0]) as GpuStorage) : this.check(g);
    const inv = this.invNorm(G, n);
    let X = this.alloc(n, 'float32');
    for (const [i0, i1] of this.bands(n, [1, 1], 'newtonSchulz')) {
      const p = new ParamBlock().u32(i1 - i0).f32(0, 0, NS_EPS);
      this.dispatchViews('newton_schulz', 'scale', undefined, p, [this.in(G, i0, i1 - i0), null, this.out(X, i0, i1 - i0), inv], this.grid1d(i1 - i0));
    }
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
