// Muon: the Newton–Schulz iteration and the optimizer step, checked against float64
// references computed here (singular values by Jacobi eigenvalues of XᵀX; a scalar Muon).
import { describe, expect, it } from 'vitest';
import * as T from '../src/tensor/index.ts';
import { Muon, NS_COEFFS, muonScale, newtonSchulz5 } from '../src/optim/index.ts';

// ---- float64 linear algebra for the references ----
type Mat = { r: number; c: number; d: Float64Array }; // row-major

const mat = (r: number, c: number, d: ArrayLike<number>): Mat => ({ r, c, d: Float64Array.from(d) });
function matmul(a: Mat, b: Mat, transA = false, transB = false): Mat {
  const M = transA ? a.c : a.r, K = transA ? a.r : a.c, N = transB ? b.r : b.c;
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let k = 0; k < K; k++) {
      const av = transA ? a.d[k * a.c + i] : a.d[i * a.c + k];
      for (let j = 0; j < N; j++) out[i * N + j] += av * (transB ? b.d[j * b.c + k] : b.d[k * b.c + j]);
    }
  return { r: M, c: N, d: out };
}

/** Eigenvalues of a symmetric matrix by cyclic Jacobi rotations (float64). */
function symEigenvalues(S: Mat): number[] {
  const n = S.r, a = Float64Array.from(S.d);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        // rotation angle that zeroes a[p][q]: tan(2θ) = 2 a_pq / (a_qq − a_pp)
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const cs = 1 / Math.sqrt(t * t + 1), sn = t * cs;
        for (let k = 0; k < n; k++) {
          // columns p, q
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = cs * akp - sn * akq;
          a[k * n + q] = sn * akp + cs * akq;
        }
        for (let k = 0; k < n; k++) {
          // rows p, q
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = cs * apk - sn * aqk;
          a[q * n + k] = sn * apk + cs * aqk;
        }
      }
  }
  return Array.from({ length: n }, (_, i) => a[i * n + i]).sort((x, y) => x - y);
}

/** Singular values (ascending) via eigenvalues of the smaller Gram matrix. */
function singularValues(X: Mat): number[] {
  const gram = X.r >= X.c ? matmul(X, X, true, false) : matmul(X, X, false, true);
  return symEigenvalues(gram).map((e) => Math.sqrt(Math.max(0, e)));
}

const [qa, qb, qc] = NS_COEFFS;
const quintic = (x: number) => qa * x + qb * x ** 3 + qc * x ** 5;
const quintic5 = (x: number) => [0, 1, 2, 3, 4].reduce(quintic, x);

/** Float64 Newton–Schulz, the reference for the tensor version. */
function ns5Ref(G: Mat, steps = 5): Mat {
  let norm = 0;
  for (const v of G.d) norm += v * v;
  norm = Math.sqrt(norm);
  const tall = G.r > G.c;
  let X = mat(G.r, G.c, G.d.map((v) => v / (norm + 1e-7)));
  if (tall) X = transpose(X);
  for (let i = 0; i < steps; i++) {
    const A = matmul(X, X, false, true);
    const AA = matmul(A, A);
    const B = mat(A.r, A.c, A.d.map((v, k) => qb * v + qc * AA.d[k]));
    const BX = matmul(B, X);
    X = mat(X.r, X.c, X.d.map((v, k) => qa * v + BX.d[k]));
  }
  return tall ? transpose(X) : X;
}
function transpose(X: Mat): Mat {
  const d = new Float64Array(X.d.length);
  for (let i = 0; i < X.r; i++) for (let j = 0; j < X.c; j++) d[j * X.r + i] = X.d[i * X.c + j];
  return { r: X.c, c: X.r, d };
}

const toMat = (t: T.Tensor): Mat => mat(t.shape[0], t.shape[1], t.dataSync());

// The band. Newton–Schulz acts on each singular value separately: σ_out = p⁵(σ / ‖G‖_F).
// Scanning p⁵ on a fine log grid (below) shows: inputs x ≥ X_MIN = 0.0016 land in
// [0.6818, 1.2024] (1.2024 is p's own maximum, hit when an earlier iterate lands at p's
// argmax), and inputs x ≥ 0.01 land in [0.6818, 1.1344] — the "[0.68, 1.13]" usually quoted.
// Inputs below X_MIN have not grown enough in 5 steps (p⁵(x) ≈ 3.4445⁵·x ≈ 490·x).
const X_MIN = 0.0016;
function bandOf(x0: number): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i <= 100000; i++) {
    const y = quintic5(x0 * (1 / x0) ** (i / 100000));
    lo = Math.min(lo, y);
    hi = Math.max(hi, y);
  }
  return [lo, hi];
}

describe('newtonSchulz5', () => {
  it('the scalar quintic maps [0.0016, 1] into [0.68, 1.21] and [0.01, 1] into [0.68, 1.14]', () => {
    const [lo, hi] = bandOf(X_MIN);
    expect(lo).toBeGreaterThanOrEqual(0.68);
    expect(hi).toBeLessThan(1.21);
    const [lo2, hi2] = bandOf(0.01);
    expect(lo2).toBeGreaterThanOrEqual(0.68);
    expect(hi2).toBeLessThan(1.14);
    expect(quintic5(0.001)).toBeLessThan(0.68); // and the band really needs the lower limit
  });

  for (const [m, n] of [[48, 16], [16, 48], [32, 32]] as const) {
    it(`maps the singular values of a random ${m}×${n} matrix into the band`, () => {
      const rng = new T.Rng(1000 + m * n + m);
      T.tidy(() => {
        const G = T.tensor(rng.normalArray(m * n), [m, n]);
        const O = newtonSchulz5(G);
        expect(O.shape).toEqual([m, n]);
        const sIn = singularValues(toMat(G)), sOut = singularValues(toMat(O));
        const fro = Math.sqrt(sIn.reduce((s, v) => s + v * v, 0));
        const xs = sIn.map((s) => s / fro); // normalised inputs, ascending
        const k = Math.min(m, n);
        // σ_out = p⁵(σ_in/‖G‖_F) singular value by singular value (sorted, since p⁵ need not
        // keep the order). Tolerance 2e-5 absolute: float32 rounding through five iterations
        // (measured: at most 7.4e-7 over these matrices) stays well below it; a wrong
        // coefficient or a missing transpose moves values by 1e-2 or more.
        const predicted = xs.map(quintic5).sort((a, b) => a - b);
        for (let i = 0; i < k; i++) expect(Math.abs(sOut[i] - predicted[i])).toBeLessThan(2e-5);
        // the band, for every singular value whose input was above X_MIN
        const inBand = sOut.filter((_, i) => xs[i] >= X_MIN);
        // A square Gaussian matrix has a tiny σ_min (≈ ‖G‖_F/k^1.5): here 32×32 gives x = 8.6e-4
        // < X_MIN, whose output (0.41) is honestly outside the band (5 steps are not enough).
        expect(inBand.length).toBeGreaterThanOrEqual(k - 1);
        for (const s of inBand) {
          expect(s).toBeGreaterThanOrEqual(0.68 - 2e-5);
          expect(s).toBeLessThanOrEqual(1.21);
        }
      });
    });
  }

  it('orthogonalises an ill-conditioned matrix (condition number 100)', () => {
    // G = P diag(σ) Qᵀ with σ log-spaced from 1 to 0.01 and P (m, n), Q (n, n) with
    // orthonormal columns (Gram–Schmidt on Gaussian vectors).
    const rng = new T.Rng(7);
    const m = 24, n = 12;
    const orth = (r: number, c: number) => {
      const A = Array.from({ length: c }, () => Array.from({ length: r }, () => rng.normal()));
      for (let j = 0; j < c; j++) {
        for (let i = 0; i < j; i++) {
          const dot = A[j].reduce((s, v, k) => s + v * A[i][k], 0);
          A[j] = A[j].map((v, k) => v - dot * A[i][k]);
        }
        const nn = Math.sqrt(A[j].reduce((s, v) => s + v * v, 0));
        A[j] = A[j].map((v) => v / nn);
      }
      const d = new Float64Array(r * c);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) d[i * c + j] = A[j][i];
      return mat(r, c, d); // columns orthonormal
    };
    const P = orth(m, n), Q = orth(n, n);
    const sigma = Array.from({ length: n }, (_, i) => 0.01 ** (i / (n - 1)));
    const PS = mat(m, n, P.d.map((v, k) => v * sigma[k % n]));
    const G = matmul(PS, Q, false, true); // (m, n)
    const polar = matmul(P, Q, false, true); // P Qᵀ: what Muon wants
    T.tidy(() => {
      const O = toMat(newtonSchulz5(T.tensor(Float32Array.from(G.d), [m, n])));
      const sOut = singularValues(O);
      // smallest normalised input: 0.01/‖σ‖ ≈ 0.0075 ≥ X_MIN, so every output is in the band
      for (const s of sOut) {
        expect(s).toBeGreaterThanOrEqual(0.68 - 2e-5);
        expect(s).toBeLessThanOrEqual(1.21);
      }
      // condition number 100 → at most 1.21/0.68 ≈ 1.8
      expect(sOut[n - 1] / sOut[0]).toBeLessThan(1.8);
      // direction: cosine with P Qᵀ. For singular values in [0.68, 1.21] the cosine
      // Σσ/(√n·‖σ‖) is at least 0.96 (Cauchy–Schwarz with the extreme split); the input's is
      // Σσ/(√n‖σ‖) = 0.63 for these σ.
      const cos = (a: Mat, b: Mat) => {
        let ab = 0, aa = 0, bb = 0;
        a.d.forEach((v, k) => ((ab += v * b.d[k]), (aa += v * v), (bb += b.d[k] ** 2)));
        return ab / Math.sqrt(aa * bb);
      };
      expect(cos(G, polar)).toBeLessThan(0.7);
      expect(cos(O, polar)).toBeGreaterThan(0.96);
    });
  });

  it('matches a float64 reference implementation', () => {
    const rng = new T.Rng(3);
    T.tidy(() => {
      for (const [m, n] of [[20, 8], [8, 20]]) {
        const g = rng.normalArray(m * n);
        const got = newtonSchulz5(T.tensor(g, [m, n])).dataSync();
        const want = ns5Ref(mat(m, n, g));
        // 1e-5 absolute on entries of size ~1/√max(m,n) ≈ 0.2: float32 rounding through five
        // iterations measured at most 5.3e-7 on random matrices of these sizes
        for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - want.d[i])).toBeLessThan(1e-5);
      }
    });
  });
});

describe('Muon', () => {
  it('one step equals W − lr·(wd·W + s·NS5(G + μ·B)) against a float64 reference', async () => {
    const rng = new T.Rng(11);
    const out = 12, inp = 20, lr = 0.02, wd = 0.1, mu = 0.95;
    const w0 = rng.normalArray(out * inp, 0.1);
    const W = T.tensor(w0, [out, inp], { requiresGrad: true });
    const opt = new Muon([{ name: 'model.layers.0.mlp.up_proj.weight', param: W, role: 'matrix' }], { weightDecay: wd });
    const grads = [rng.normalArray(out * inp), rng.normalArray(out * inp)];
    // reference: B ← μB + G; U = G + μB; W ← W(1 − lr·wd) − lr·0.2·√max(out,in)·NS5(U)
    let w = Float64Array.from(w0), B = new Float64Array(out * inp);
    const scale = 0.2 * Math.sqrt(Math.max(out, inp));
    expect(muonScale(out, inp)).toBeCloseTo(scale, 12);
    for (const g of grads) {
      W.grad = T.keep(T.tensor(g, [out, inp]));
      opt.step(lr);
      opt.zeroGrad();
      B = B.map((b, k) => mu * b + g[k]);
      const O = ns5Ref(mat(out, inp, g.map((v, k) => v + mu * B[k])));
      w = w.map((v, k) => v * (1 - lr * wd) - lr * scale * O.d[k]);
    }
    const got = W.dataSync();
    // 1e-5 absolute: the update lr·s·O has entries ~0.02·0.9·0.2 ≈ 4e-3, and NS5 agrees with
    // float64 to ~1e-6 relative (previous test), so the difference is a few 1e-8; 1e-5 is
    // far below the smallest algorithmic slip (e.g. dropping Nesterov changes W by ~1e-3).
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - w[i])).toBeLessThan(1e-5);
    expect(opt.t).toBe(2);
    const sd = opt.stateDict();
    expect(Object.keys(sd).sort()).toEqual(['model.layers.0.mlp.up_proj.weight.momentum_buffer', 'muon.step']);
    expect(sd['muon.step'].itemSync()).toBe(2);
    const buf = sd['model.layers.0.mlp.up_proj.weight.momentum_buffer'].dataSync();
    for (let i = 0; i < buf.length; i++) expect(Math.abs(buf[i] - B[i])).toBeLessThan(1e-5);
    W.dispose();
  });

  it("Keller Jordan's scaling is √max(1, out/in)", () => {
    expect(muonScale(64, 16, 'keller')).toBe(2);
    expect(muonScale(16, 64, 'keller')).toBe(1);
    expect(muonScale(16, 64, 'moonlight')).toBeCloseTo(1.6, 12);
  });

  it('rejects non-matrix parameters', () => {
    const g = T.zeros([4], { requiresGrad: true });
    expect(() => new Muon([{ name: 'model.norm.weight', param: g, role: 'gain' }])).toThrow(/2-D/);
    g.dispose();
  });
});
