// attention.wgsl: causal, grouped-query, flash-style attention, forward and backward.
//   q (B, NH, T, HS); k, v (B, NKV, S, HS); out (B, NH, T, HS); lse (B, NH, T)
//   out = softmax(q kᵀ * scale, causal) v,  scale = 1 / sqrt(HS)
// Query head h reads KV head h / (NH / NKV). With `causal`, query t sees keys s <= t + S - T.
//
// The (T, S) score matrix is never stored (Dao et al., FlashAttention, 2022). Each thread
// owns one query row; a workgroup of 64 rows walks the keys in tiles of 16 that it copies
// into workgroup memory, and each thread keeps a running max m, a running sum l and an
// unnormalised output o for its row ("online softmax", Milakov & Gimelshein, 2018). When a
// tile raises the max from m to m', the old sum and output are rescaled by exp(m - m').
// The forward saves lse = m + log(l) per row, from which the backward recomputes every
// probability P = exp(s - lse) exactly, instead of storing them.
//
// Backward, with dP = dO vᵀ and D = rowsum(dO * O) = rowsum(P * dP):
//   dS = P (dP - D);  dq = scale dS k;  dk = scale dSᵀ q;  dv = Pᵀ dO
//   backward_d    one thread per query row: D.
//   backward_dq   like the forward, one thread per query row, looping over key tiles.
//   backward_dkv  one thread per key row, looping over the query rows of every query head
//                 that shares this KV head, in tiles: each dk, dv row has one writer, so no
//                 atomics and a fixed summation order.
// Rows and head sizes: per-thread arrays are sized for HS <= 128 (MAX_HS); the backend checks.

const MAX_HS = 128u;
const BQ = 64u;  // query (or key) rows per workgroup, one per thread
const BK = 16u;  // keys per tile (forward, backward_dq)
const BKQ = 8u;  // queries per tile (backward_dkv: two tiles, q and dO, share workgroup memory)
const NEG = -1.0e30; // "minus infinity" that stays finite (exp(NEG - m) = 0, no NaN from inf - inf)

struct Params {
  B: u32,
  NH: u32,
  NKV: u32,
  T: u32,
  S: u32,
  HS: u32,
  causal: u32,  // 1 = causal
  scale: f32,   // 1 / sqrt(HS)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;          // (B, NH, T, HS)
@group(0) @binding(2) var<storage, read> k: array<f32>;          // (B, NKV, S, HS)
@group(0) @binding(3) var<storage, read> v: array<f32>;          // (B, NKV, S, HS)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // (B, NH, T, HS)
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;  // (B, NH, T)
@group(0) @binding(6) var<storage, read> dout: array<f32>;       // (B, NH, T, HS)
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;   // (B, NH, T, HS)
@group(0) @binding(8) var<storage, read_write> dk: array<f32>;   // (B, NKV, S, HS)
@group(0) @binding(9) var<storage, read_write> dv: array<f32>;   // (B, NKV, S, HS)
@group(0) @binding(10) var<storage, read_write> Dsum: array<f32>; // (B, NH, T): rowsum(dO * O)

var<workgroup> Kt: array<f32, 2048>; // BK x MAX_HS: a tile of keys (or of queries, in dkv)
var<workgroup> Vt: array<f32, 2048>; // BK x MAX_HS: the matching values (or dO rows)
var<workgroup> Lt: array<f32, 8>;    // BKQ: lse of the query tile (dkv)
var<workgroup> Dt: array<f32, 8>;    // BKQ: D of the query tile (dkv)

fn visible(t: u32, j: u32) -> bool {
  return j < P.S && (P.causal == 0u || j + P.T <= t + P.S); // j <= t + (S - T), in unsigned form
}

/** Keys [0, end) that some row of the query block starting at t0 can see. */
fn keyEnd(t0: u32) -> u32 {
  if (P.causal == 0u) { return P.S; }
  let tLast = min(P.T, t0 + BQ) - 1u;
  return min(P.S, tLast + P.S - P.T + 1u);
}

/** Copy keys/values [k0, k0 + BK) of one KV head into Kt / Vt (zeros past S). */
fn loadKV(l: u32, kvBase: u32, k0: u32) {
  for (var e = l; e < BK * P.HS; e += BQ) {
    let j = k0 + e / P.HS;
    var kk = 0.0;
    var vv = 0.0;
    if (j < P.S) {
      kk = k[kvBase + j * P.HS + e % P.HS];
      vv = v[kvBase + j * P.HS + e % P.HS];
    }
    Kt[e] = kk;
    Vt[e] = vv;
  }
}

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let bh = wid.y;                     // (b, h) flattened
  let b = bh / P.NH;
  let g = (bh % P.NH) / (P.NH / P.NKV); // the KV head this query head reads
  let kvBase = (b * P.NKV + g) * P.S * P.HS;
  let t0 = wid.x * BQ;
  let t = t0 + l;                     // this thread's query row
  let live = t < P.T;
  let qBase = (bh * P.T + t) * P.HS;

  var qr: array<f32, MAX_HS>;
  var o: array<f32, MAX_HS>;
  if (live) {
    for (var d = 0u; d < P.HS; d++) { qr[d] = q[qBase + d] * P.scale; } // scale folded into q
  }
  var m = NEG;
  var lsum = 0.0;
  let kEnd = keyEnd(t0);
  for (var k0 = 0u; k0 < kEnd; k0 += BK) {
    loadKV(l, kvBase, k0);
    workgroupBarrier();
    if (live) {
      var sc: array<f32, BK>;
      var tileMax = NEG;
      for (var jj = 0u; jj < BK; jj++) {
        var s = NEG;
        if (visible(t, k0 + jj)) {
          s = 0.0;
          for (var d = 0u; d < P.HS; d++) { s += qr[d] * Kt[jj * P.HS + d]; }
        }
        sc[jj] = s;
        tileMax = max(tileMax, s);
      }
      if (tileMax > NEG) {
        let mNew = max(m, tileMax);
        let corr = exp(m - mNew); // rescale what was summed under the old max
        lsum *= corr;
        for (var d = 0u; d < P.HS; d++) { o[d] *= corr; }
        for (var jj = 0u; jj < BK; jj++) {
          if (sc[jj] > NEG) {
            let p = exp(sc[jj] - mNew);
            lsum += p;
            for (var d = 0u; d < P.HS; d++) { o[d] += p * Vt[jj * P.HS + d]; }
          }
        }
        m = mNew;
      }
    }
    workgroupBarrier(); // the tile is read by everyone before the next copy overwrites it
  }
  if (live) {
    for (var d = 0u; d < P.HS; d++) { out[qBase + d] = o[d] / lsum; }
    lse[bh * P.T + t] = m + log(lsum);
  }
}

@compute @workgroup_size(64)
fn backward_d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = gid.x + gid.y * nwg.x * 64u; // (b, h, t) flattened
  if (row >= P.B * P.NH * P.T) { return; }
  var acc = 0.0;
  for (var d = 0u; d < P.HS; d++) { acc += dout[row * P.HS + d] * out[row * P.HS + d]; }
  Dsum[row] = acc;
}

@compute @workgroup_size(64)
fn backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let bh = wid.y;
  let b = bh / P.NH;
  let g = (bh % P.NH) / (P.NH / P.NKV);
  let kvBase = (b * P.NKV + g) * P.S * P.HS;
  let t0 = wid.x * BQ;
  let t = t0 + l;
  let live = t < P.T;
  let qBase = (bh * P.T + t) * P.HS;

  var qr: array<f32, MAX_HS>;
  var dor: array<f32, MAX_HS>;
  var acc: array<f32, MAX_HS>;
  var L = 0.0;
  var D = 0.0;
  if (live) {
    for (var d = 0u; d < P.HS; d++) {
      qr[d] = q[qBase + d];
      dor[d] = dout[qBase + d];
    }
    L = lse[bh * P.T + t];
    D = Dsum[bh * P.T + t];
  }
  let kEnd = keyEnd(t0);
  for (var k0 = 0u; k0 < kEnd; k0 += BK) {
    loadKV(l, kvBase, k0);
    workgroupBarrier();
    if (live) {
      for (var jj = 0u; jj < BK; jj++) {
        if (!visible(t, k0 + jj)) { continue; }
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < P.HS; d++) {
          s += qr[d] * Kt[jj * P.HS + d];
          dp += dor[d] * Vt[jj * P.HS + d];
        }
        let p = exp(s * P.scale - L);
        let ds = p * (dp - D) * P.scale;
        for (var d = 0u; d < P.HS; d++) { acc[d] += ds * Kt[jj * P.HS + d]; }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    for (var d = 0u; d < P.HS; d++) { dq[qBase + d] = acc[d]; }
  }
}

@compute @workgroup_size(64)
fn backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let bg = wid.y;                   // (b, KV head) flattened
  let b = bg / P.NKV;
  let g = bg % P.NKV;
  let group = P.NH / P.NKV;         // query heads per KV head
  let j0 = wid.x * BQ;
  let j = j0 + l;                   // this thread's key row
  let live = j < P.S;
  let kvRow = (bg * P.S + j) * P.HS;

  var kr: array<f32, MAX_HS>;
  var vr: array<f32, MAX_HS>;
  var dkr: array<f32, MAX_HS>;
  var dvr: array<f32, MAX_HS>;
  if (live) {
    for (var d = 0u; d < P.HS; d++) {
      kr[d] = k[kvRow + d];
      vr[d] = v[kvRow + d];
    }
  }
  // causal: query t sees key j when t >= j - (S - T): skip the query tiles before that
  var tStart = 0u;
  if (P.causal == 1u && j0 + P.T > P.S) { tStart = ((j0 + P.T - P.S) / BKQ) * BKQ; }
  for (var hh = 0u; hh < group; hh++) {
    let bh = b * P.NH + g * group + hh;
    for (var t0 = tStart; t0 < P.T; t0 += BKQ) {
      // copy BKQ query rows and their dO rows, lse and D
      for (var e = l; e < BKQ * P.HS; e += BQ) {
        let t = t0 + e / P.HS;
        var qq = 0.0;
        var dd = 0.0;
        if (t < P.T) {
          qq = q[(bh * P.T + t) * P.HS + e % P.HS];
          dd = dout[(bh * P.T + t) * P.HS + e % P.HS];
        }
        Kt[e] = qq;
        Vt[e] = dd;
      }
      if (l < BKQ) {
        let t = t0 + l;
        Lt[l] = select(0.0, lse[bh * P.T + min(t, P.T - 1u)], t < P.T);
        Dt[l] = select(0.0, Dsum[bh * P.T + min(t, P.T - 1u)], t < P.T);
      }
      workgroupBarrier();
      if (live) {
        for (var tt = 0u; tt < BKQ; tt++) {
          let t = t0 + tt;
          if (t >= P.T || !visible(t, j)) { continue; }
          var s = 0.0;
          var dp = 0.0;
          for (var d = 0u; d < P.HS; d++) {
            s += Kt[tt * P.HS + d] * kr[d];
            dp += Vt[tt * P.HS + d] * vr[d];
          }
          let p = exp(s * P.scale - Lt[tt]);
          let ds = p * (dp - Dt[tt]) * P.scale;
          for (var d = 0u; d < P.HS; d++) {
            dvr[d] += p * Vt[tt * P.HS + d];
            dkr[d] += ds * Kt[tt * P.HS + d];
          }
        }
      }
      workgroupBarrier();
    }
  }
  if (live) {
    for (var d = 0u; d < P.HS; d++) {
      dk[kvRow + d] = dkr[d];
      dv[kvRow + d] = dvr[d];
    }
  }
}
