// newton_schulz.wgsl: the elementwise and reduction steps of Muon's Newton–Schulz iteration;
// the matrix products in between run on matmul.wgsl. With (a, b, c) = (3.4445, -4.7750, 2.0315):
//   X = G / (|G|_F + 1e-7)                    inv_norm, then scale
//   5 times:  A = X Xᵀ;  B = b A + c A A;  X = a X + B X     (axpby for the two sums)
// Nothing is read back to the host: the norm stays on the GPU in a one-float buffer.

struct Params {
  n: u32,       // elements
  alpha: f32,   // axpby: y = alpha x + beta z
  beta: f32,
  eps: f32,     // inv_norm: added to the norm
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> s: array<f32>; // (1): 1 / (|x|_F + eps)

var<workgroup> red: array<f32, 256>;

// One workgroup: s[0] = 1 / (sqrt(sum x²) + eps), a strided sum then a tree reduction.
@compute @workgroup_size(256)
fn inv_norm(@builtin(local_invocation_index) l: u32) {
  var acc = 0.0;
  for (var i = l; i < P.n; i += 256u) { acc += x[i] * x[i]; }
  red[l] = acc;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k >>= 1u) {
    if (l < k) { red[l] += red[l + k]; }
    workgroupBarrier();
  }
  if (l == 0u) { s[0] = 1.0 / (sqrt(red[0]) + P.eps); }
}

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 256u;
}

// y = x * s[0]
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= P.n) { return; }
  y[i] = x[i] * s[0];
}

// y = alpha x + beta z
@compute @workgroup_size(256)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= P.n) { return; }
  y[i] = P.alpha * x[i] + P.beta * z[i];
}
