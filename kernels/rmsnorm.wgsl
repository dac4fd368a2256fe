// rmsnorm.wgsl: RMSNorm over the last axis, forward and backward.
//   y = x * rstd * w,   rstd = 1 / sqrt(mean(x²) + eps)            x, y (R, C); w (C); rstd (R)
//
//   forward      one workgroup per row: tree-reduce sum(x²), then scale the row.
//   backward_dx  one workgroup per row: with xhat = x rstd and g = dy w,
//                dx = rstd (g - xhat mean(g xhat))   (one reduction for mean(g xhat)).
//   backward_dw  one thread per column: dw[c] = sum over rows of dy xhat, rows in order
//                (deterministic; no atomics). Neighbouring threads read neighbouring columns.
// HAS_WEIGHT = false gives the weightless norm (QK-norm without a learned scale).

override HAS_WEIGHT: bool = true;

struct Params {
  R: u32,    // rows
  C: u32,    // row length (normalised axis)
  eps: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (R, C)
@group(0) @binding(2) var<storage, read> w: array<f32>;          // (C) (a dummy when !HAS_WEIGHT)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;    // (R, C) forward output
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>; // (R)
@group(0) @binding(5) var<storage, read> dy: array<f32>;         // (R, C)
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;   // (R, C)
@group(0) @binding(7) var<storage, read_write> dw: array<f32>;   // (C)

var<workgroup> red: array<f32, 256>;

fn weight(c: u32) -> f32 {
  if (HAS_WEIGHT) { return w[c]; }
  return 1.0;
}

/** Sum of `v` over the workgroup's 256 threads (everyone gets the result). */
fn workgroupSum(l: u32, v: f32) -> f32 {
  red[l] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (l < s) { red[l] += red[l + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) l: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= P.R) { return; } // uniform per workgroup
  let base = row * P.C;
  var ss = 0.0;
  for (var c = l; c < P.C; c += 256u) { ss += x[base + c] * x[base + c]; }
  let r = inverseSqrt(workgroupSum(l, ss) / f32(P.C) + P.eps);
  if (l == 0u) { rstd[row] = r; }
  for (var c = l; c < P.C; c += 256u) { y[base + c] = x[base + c] * r * weight(c); }
}

@compute @workgroup_size(256)
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) l: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= P.R) { return; }
  let base = row * P.C;
  let r = rstd[row];
  var dot = 0.0;
  for (var c = l; c < P.C; c += 256u) { dot += dy[base + c] * weight(c) * x[base + c] * r; }
  let mean = workgroupSum(l, dot) / f32(P.C);
  for (var c = l; c < P.C; c += 256u) {
    dx[base + c] = r * (dy[base + c] * weight(c) - x[base + c] * r * mean);
  }
}

@compute @workgroup_size(256)
fn backward_dw(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= P.C) { return; }
  var acc = 0.0;
  for (var row = 0u; row < P.R; row++) { acc += dy[row * P.C + c] * x[row * P.C + c] * rstd[row]; }
  dw[c] = acc;
}
