// cross_entropy.wgsl: softmax + cross-entropy, and the log-probs of target tokens, forward
// and backward, never materialising the softmax. logits (N, V) float32, targets (N) int32
// with -1 = ignore the row (cross-entropy only).
//
//   forward   one workgroup per row: a tree reduction finds the row's max, a second one sums
//             exp(x - max); lse = max + log(sum) (the max keeps exp from overflowing);
//             rowLoss = lse - x[target], or 0 for an ignored row.
//   finalize  one workgroup: loss = sum(rowLoss) / max(1, #rows not ignored), in a fixed
//             tree order (deterministic).
//   count     one workgroup: count = #rows not ignored (the backward's first pass; the
//             forward's results are not passed to the backward, only lse).
//   backward  one thread per logit: dlogits = dloss / count * (exp(x - lse) - [j == target]),
//             0 on ignored rows. Only lse (N floats) is kept between the passes.
// The log-probs of target tokens (RL's policy loss) share the row reduction:
//   logprob_forward   one workgroup per row: lse as above; logp = x[target] - lse.
//   logprob_backward  one thread per logit: dlogits = dlogp[row] (onehot - exp(x - lse)).
// A target outside [0, V) (other than -1 for cross-entropy) is recorded in `errors` (reported
// at the next read) and its row ignored.
// Split (logits above the binding limit, webgpu-fused.ts): forward, backward and the
// log-prob passes run on bands of rows, each bound from its first row; finalize and count
// see all N rows' rowLoss / targets.

struct Params {
  N: u32,    // rows (of this dispatch: a band of rows when the logits are split)
  V: u32,    // vocabulary (row length)
  row0: u32, // the first row's index in the whole batch (for the error report)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;        // (N, V)
@group(0) @binding(2) var<storage, read> targets: array<i32>;       // (N)
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;     // (N)
@group(0) @binding(4) var<storage, read_write> rowLoss: array<f32>; // (N) scratch
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;    // (1): the mean loss
@group(0) @binding(6) var<storage, read> dloss: array<f32>;         // (1)
@group(0) @binding(7) var<storage, read_write> dlogits: array<f32>; // (N, V)
// errors[0]: 3 = target out of range; [1] row; [2] the target
@group(0) @binding(8) var<storage, read_write> errors: array<atomic<u32>, 4>;
@group(0) @binding(9) var<storage, read_write> count: array<f32>;   // (1): rows not ignored
@group(0) @binding(10) var<storage, read_write> logp: array<f32>;   // (N): target log-probs
@group(0) @binding(11) var<storage, read> dlogp: array<f32>;        // (N)

var<workgroup> red: array<f32, 256>;

fn valid(t: i32) -> bool {
  return t >= 0 && u32(t) < P.V;
}

// The log-sum-exp of the row starting at `base`, by the whole workgroup (thread l of 256):
// a tree reduction finds the max, a second one sums exp(x - max). Every thread gets it.
fn rowLse(base: u32, l: u32) -> f32 {
  var m = -3.0e38;
  for (var j = l; j < P.V; j += 256u) { m = max(m, logits[base + j]); }
  red[l] = m;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (l < s) { red[l] = max(red[l], red[l + s]); }
    workgroupBarrier();
  }
  let rowMax = red[0];
  workgroupBarrier(); // everyone has read red[0] before it is reused
  var acc = 0.0;
  for (var j = l; j < P.V; j += 256u) { acc += exp(logits[base + j] - rowMax); }
  red[l] = acc;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (l < s) { red[l] += red[l + s]; }
    workgroupBarrier();
  }
  return rowMax + log(red[0]);
}

fn recordBadTarget(code: u32, row: u32, t: i32) {
  if (atomicCompareExchangeWeak(&errors[0], 0u, code).exchanged) {
    atomicStore(&errors[1], P.row0 + row);
    atomicStore(&errors[2], bitcast<u32>(t));
  }
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) l: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= P.N) { return; } // uniform per workgroup
  let base = row * P.V;
  let L = rowLse(base, l);
  if (l == 0u) {
    lse[row] = L;
    let t = targets[row];
    if (valid(t)) {
      rowLoss[row] = L - logits[base + u32(t)];
    } else {
      rowLoss[row] = 0.0;
      if (t != -1) { recordBadTarget(3u, row, t); }
    }
  }
}

var<workgroup> cnt: array<u32, 256>;

@compute @workgroup_size(256)
fn finalize(@builtin(local_invocation_index) l: u32) {
  var acc = 0.0;
  var c = 0u;
  for (var i = l; i < P.N; i += 256u) {
    acc += rowLoss[i];
    c += select(0u, 1u, valid(targets[i]));
  }
  red[l] = acc;
  cnt[l] = c;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (l < s) {
      red[l] += red[l + s];
      cnt[l] += cnt[l + s];
    }
    workgroupBarrier();
  }
  if (l == 0u) { loss[0] = red[0] / f32(max(1u, cnt[0])); }
}

@compute @workgroup_size(256)
fn count_rows(@builtin(local_invocation_index) l: u32) {
  var c = 0u;
  for (var i = l; i < P.N; i += 256u) { c += select(0u, 1u, valid(targets[i])); }
  cnt[l] = c;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (l < s) { cnt[l] += cnt[l + s]; }
    workgroupBarrier();
  }
  if (l == 0u) { count[0] = f32(cnt[0]); }
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.N * P.V) { return; }
  let row = i / P.V;
  let j = i % P.V;
  let t = targets[row];
  if (!valid(t)) { dlogits[i] = 0.0; return; }
  let scale = dloss[0] / max(1.0, count[0]);
  let p = exp(logits[i] - lse[row]);
  dlogits[i] = scale * (p - select(0.0, 1.0, j == u32(t)));
}

@compute @workgroup_size(256)
fn logprob_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) l: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= P.N) { return; } // uniform per workgroup
  let base = row * P.V;
  let L = rowLse(base, l);
  if (l == 0u) {
    lse[row] = L;
    let t = targets[row];
    if (valid(t)) {
      logp[row] = logits[base + u32(t)] - L;
    } else {
      logp[row] = 0.0;
      recordBadTarget(4u, row, t);
    }
  }
}

@compute @workgroup_size(256)
fn logprob_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.N * P.V) { return; }
  let row = i / P.V;
  let t = targets[row];
  if (!valid(t)) { dlogits[i] = 0.0; return; }
  let p = exp(logits[i] - lse[row]);
  dlogits[i] = dlogp[row] * (select(0.0, 1.0, i % P.V == u32(t)) - p);
}
