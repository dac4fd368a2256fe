// The fused kernels of fused.ts as plain loops over Float32Arrays: the reference the WebGPU
// versions are tested against, and what the CPU backend offers when a model asks for them.
//
// Each function follows the maths in fused.ts line by line, with no tiling and no tricks:
// attention materialises one row of scores at a time (the GPU kernel never does), the
// Newton–Schulz iteration is a chain of naive matmuls. Storages are allocated through the
// CPU backend so its live-bytes accounting (bytesInUse) stays right when they are freed.
import type { Storage } from './backend.ts';
import { CpuBackend, cpu } from './cpu.ts';
import {
  type AdamWParams, type AttentionShape, type FusedKernels, NS_COEFFS, NS_EPS, NS_STEPS,
} from './fused.ts';

type F32 = Float32Array;

export class CpuFused implements FusedKernels {
  constructor(private readonly be: CpuBackend = cpu) {}

  private alloc(n: number): F32 {
    return this.be.zeros(n, 'float32') as F32;
  }

  // ---- softmax cross-entropy ----

  crossEntropyForward(logits: Storage, targets: Storage, N: number, V: number): { loss: Storage; lse: Storage } {
    const x = logits as F32, t = targets as Int32Array;
    const lse = this.alloc(N), loss = this.alloc(1);
    let total = 0, count = 0;
    for (let i = 0; i < N; i++) {
      const row = x.subarray(i * V, (i + 1) * V);
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, row[j]);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(row[j] - m);
      lse[i] = m + Math.log(s);
      if (t[i] === -1) continue;
      if (t[i] < 0 || t[i] >= V) throw new RangeError(`crossEntropy: target ${t[i]} at row ${i} is outside [0, ${V})`);
      total += lse[i] - row[t[i]];
      count++;
    }
    loss[0] = total / Math.max(1, count);
    return { loss, lse };
  }

  crossEntropyBackward(logits: Storage, targets: Storage, lseS: Storage, dlossS: Storage, N: number, V: number): Storage {
    const x = logits as F32, t = targets as Int32Array, lse = lseS as F32;
    const dx = this.alloc(N * V);
    let count = 0;
    for (let i = 0; i < N; i++) if (t[i] !== -1) count++;
    const scale = (dlossS as F32)[0] / Math.max(1, count);
    for (let i = 0; i < N; i++) {
      if (t[i] === -1) continue; // ignored rows: zero gradient
      for (let j = 0; j < V; j++) {
        const p = Math.exp(x[i * V + j] - lse[i]);
        dx[i * V + j] = scale * (p - (j === t[i] ? 1 : 0));
      }
    }
    return dx;
  }

  // ---- log-probs of target tokens ----

  targetLogprobsForward(logits: Storage, targets: Storage, M: number, V: number): { logp: Storage; lse: Storage } {
    const x = logits as F32, t = targets as Int32Array;
    const lse = this.alloc(M), logp = this.alloc(M);
    for (let i = 0; i < M; i++) {
      if (!(t[i] >= 0 && t[i] < V)) throw new RangeError(`targetLogprobs: target ${t[i]} at row ${i} is outside [0, ${V})`);
      const row = x.subarray(i * V, (i + 1) * V);
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, row[j]);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(row[j] - m);
      lse[i] = m + Math.log(s);
      logp[i] = row[t[i]] - lse[i];
    }
    return { logp, lse };
  }

  targetLogprobsBackward(logits: Storage, targets: Storage, lseS: Storage, dlogpS: Storage, M: number, V: number): Storage {
    const x = logits as F32, t = targets as Int32Array, lse = lseS as F32, g = dlogpS as F32;
    const dx = this.alloc(M * V);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < V; j++) {
        const p = Math.exp(x[i * V + j] - lse[i]);
        dx[i * V + j] = g[i] * ((j === t[i] ? 1 : 0) - p);
      }
    }
    return dx;
  }

  // ---- RMSNorm ----

  rmsnormForward(xS: Storage, wS: Storage | null, R: number, C: number, eps: number): { y: Storage; rstd: Storage } {
    const x = xS as F32, w = wS as F32 | null;
    const y = this.alloc(R * C), rstd = this.alloc(R);
    for (let r = 0; r < R; r++) {
      let ss = 0;
      for (let c = 0; c < C; c++) ss += x[r * C + c] ** 2;
      rstd[r] = 1 / Math.sqrt(ss / C + eps);
      for (let c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * rstd[r] * (w ? w[c] : 1);
    }
    return { y, rstd };
  }

  rmsnormBackward(dyS: Storage, xS: Storage, wS: Storage | null, rstdS: Storage, R: number, C: number): { dx: Storage; dweight: Storage | null } {
    const dy = dyS as F32, x = xS as F32, w = wS as F32 | null, rstd = rstdS as F32;
    const dx = this.alloc(R * C), dw = w ? this.alloc(C) : null;
    for (let r = 0; r < R; r++) {
      // with xhat = x rstd and g = dy w:  dx = rstd (g - xhat mean(g xhat))
      let dot = 0;
      for (let c = 0; c < C; c++) dot += dy[r * C + c] * (w ? w[c] : 1) * x[r * C + c] * rstd[r];
      const mean = dot / C;
      for (let c = 0; c < C; c++) {
        const i = r * C + c, xhat = x[i] * rstd[r];
        dx[i] = rstd[r] * (dy[i] * (w ? w[c] : 1) - xhat * mean);
        if (dw) dw[c] += dy[i] * xhat;
      }
    }
    return { dx, dweight: dw };
  }

  // ---- SwiGLU ----

  swigluForward(gS: Storage, uS: Storage, n: number): Storage {
    const g = gS as F32, u = uS as F32;
    const y = this.alloc(n);
    for (let i = 0; i < n; i++) {
      const s = 1 / (1 + Math.exp(-g[i])); // sigmoid(g)
      y[i] = g[i] * s * u[i]; // silu(g) u
    }
    return y;
  }

  swigluBackward(dhS: Storage, gS: Storage, uS: Storage, n: number): { dg: Storage; du: Storage } {
    const dh = dhS as F32, g = gS as F32, u = uS as F32;
    const dg = this.alloc(n), du = this.alloc(n);
    for (let i = 0; i < n; i++) {
      const s = 1 / (1 + Math.exp(-g[i]));
      du[i] = dh[i] * g[i] * s; // d/du = silu(g)
      // d silu(g) / dg = s + g s (1 - s)
      const a = dh[i] * u[i];
      dg[i] = a * s + a * g[i] * s * (1 - s);
    }
    return { dg, du };
  }

  // ---- RoPE ----

  rope(xS: Storage, cosS: Storage, sinS: Storage, R: number, T: number, HS: number, inverse: boolean): Storage {
    const x = xS as F32, cos = cosS as F32, sin = sinS as F32;
    const y = this.alloc(R * T * HS);
    const half = HS / 2;
    for (let r = 0; r < R; r++) {
      for (let t = 0; t < T; t++) {
        const o = (r * T + t) * HS, c = t * HS;
        for (let i = 0; i < half; i++) {
          const x1 = x[o + i], x2 = x[o + i + half];
          if (!inverse) {
            // y = x cos + rotate_half(x) sin, rotate_half([x1, x2]) = [-x2, x1]
            y[o + i] = x1 * cos[c + i] - x2 * sin[c + i];
            y[o + i + half] = x2 * cos[c + i + half] + x1 * sin[c + i + half];
          } else {
            // the adjoint (the backward): each sin term goes back to where it came from
            y[o + i] = x1 * cos[c + i] + x2 * sin[c + i + half];
            y[o + i + half] = x2 * cos[c + i + half] - x1 * sin[c + i];
          }
        }
      }
    }
    return y;
  }

  // ---- attention ----

  attentionForward(qS: Storage, kS: Storage, vS: Storage, s: AttentionShape): { out: Storage; lse: Storage } {
    const q = qS as F32, k = kS as F32, v = vS as F32;
    const { B, NH, NKV, T, S, HS } = s;
    const out = this.alloc(B * NH * T * HS), lse = this.alloc(B * NH * T);
    const scale = 1 / Math.sqrt(HS), off = S - T, group = NH / NKV;
    const p = new Float64Array(S);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < NH; h++) {
        const kv = (b * NKV + Math.floor(h / group)) * S * HS;
        for (let t = 0; t < T; t++) {
          const qo = ((b * NH + h) * T + t) * HS;
          const last = s.causal ? Math.min(S - 1, t + off) : S - 1; // last visible key
          let m = -Infinity;
          for (let j = 0; j <= last; j++) {
            let dot = 0;
            for (let d = 0; d < HS; d++) dot += q[qo + d] * k[kv + j * HS + d];
            p[j] = dot * scale;
            m = Math.max(m, p[j]);
          }
          let l = 0;
          for (let j = 0; j <= last; j++) l += (p[j] = Math.exp(p[j] - m));
          for (let d = 0; d < HS; d++) {
            let acc = 0;
            for (let j = 0; j <= last; j++) acc += p[j] * v[kv + j * HS + d];
            out[qo + d] = acc / l;
          }
          lse[(b * NH + h) * T + t] = m + Math.log(l);
        }
      }
    }
    return { out, lse };
  }

  attentionBackward(doS: Storage, qS: Storage, kS: Storage, vS: Storage, outS: Storage, lseS: Storage, s: AttentionShape): { dq: Storage; dk: Storage; dv: Storage } {
    const dout = doS as F32, q = qS as F32, k = kS as F32, v = vS as F32, out = outS as F32, lse = lseS as F32;
    const { B, NH, NKV, T, S, HS } = s;
    const dq = this.alloc(B * NH * T * HS), dk = this.alloc(B * NKV * S * HS), dv = this.alloc(B * NKV * S * HS);
    const scale = 1 / Math.sqrt(HS), off = S - T, group = NH / NKV;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < NH; h++) {
        const kv = (b * NKV + Math.floor(h / group)) * S * HS;
        for (let t = 0; t < T; t++) {
          const qo = ((b * NH + h) * T + t) * HS, L = lse[(b * NH + h) * T + t];
          // D = rowsum(dO * O) = sum_j P_j dP_j: the softmax backward's subtracted term
          let D = 0;
          for (let d = 0; d < HS; d++) D += dout[qo + d] * out[qo + d];
          const last = s.causal ? Math.min(S - 1, t + off) : S - 1;
          for (let j = 0; j <= last; j++) {
            let dot = 0, dp = 0;
            for (let d = 0; d < HS; d++) {
              dot += q[qo + d] * k[kv + j * HS + d];
              dp += dout[qo + d] * v[kv + j * HS + d];
            }
            const P = Math.exp(dot * scale - L); // the probability, recomputed from lse
            const dS = P * (dp - D); // gradient of the scaled score
            for (let d = 0; d < HS; d++) {
              dq[qo + d] += dS * scale * k[kv + j * HS + d];
              dk[kv + j * HS + d] += dS * scale * q[qo + d];
              dv[kv + j * HS + d] += P * dout[qo + d];
            }
          }
        }
      }
    }
    return { dq, dk, dv };
  }

  // ---- optimizers ----

  adamwUpdate(paramS: Storage, gradS: Storage, mS: Storage, vS: Storage, n: number, p: AdamWParams): void {
    const w = paramS as F32, g = gradS as F32, m = mS as F32, v = vS as F32;
    const bc1 = 1 - p.beta1 ** p.step, bc2 = 1 - p.beta2 ** p.step;
    for (let i = 0; i < n; i++) {
      m[i] = p.beta1 * m[i] + (1 - p.beta1) * g[i];
      v[i] = p.beta2 * v[i] + (1 - p.beta2) * g[i] * g[i];
      const update = m[i] / bc1 / (Math.sqrt(v[i] / bc2) + p.eps);
      w[i] = w[i] - p.lr * (p.weightDecay * w[i] + update);
    }
  }

  newtonSchulz(gS: Storage, rows: number, cols: number, steps = NS_STEPS): Storage {
    const g = gS as F32;
    const [a, b, c] = NS_COEFFS;
    // work on the wide orientation (r <= n), so that A = X Xᵀ is the small (r, r) Gram matrix
    const tall = rows > cols;
    const r = tall ? cols : rows, n = tall ? rows : cols;
    let X = new Float32Array(r * n);
    let ss = 0;
    for (let i = 0; i < g.length; i++) ss += g[i] * g[i];
    const inv = 1 / (Math.sqrt(ss) + NS_EPS);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) X[tall ? j * n + i : i * n + j] = g[i * cols + j] * inv;
    }
    for (let it = 0; it < steps; it++) {
      const A = matmulNT(X, X, r, n, r); // X Xᵀ, (r, r)
      const AA = matmulNN(A, A, r, r, r);
      const Bm = A.map((ai, i) => b * ai + c * AA[i]); // b A + c A², (r, r)
      const BX = matmulNN(Bm, X, r, r, n);
      X = X.map((xi, i) => a * xi + BX[i]);
    }
    const out = this.alloc(rows * cols);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) out[i * cols + j] = X[tall ? j * n + i : i * n + j];
    }
    return out;
  }
}

/** (M, K) @ (K, N), naive. */
function matmulNN(a: F32, b: F32, M: number, K: number, N: number): F32 {
  const c = new Float32Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k] * b[k * N + j];
      c[i * N + j] = s;
    }
  }
  return c;
}

/** (M, K) @ (N, K)ᵀ, naive. */
function matmulNT(a: F32, b: F32, M: number, K: number, N: number): F32 {
  const c = new Float32Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k] * b[j * K + k];
      c[i * N + j] = s;
    }
  }
  return c;
}

/** The reference fused kernels over the float32 CPU backend. */
export const cpuFused = new CpuFused(cpu);
