// adamw.wgsl: one AdamW step for a whole parameter, in place, one thread per element.
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g²
//   p = p - lr * (wd * p + (m / bc1) / (sqrt(v / bc2) + eps)),   bc = 1 - beta^step
// (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019). The bias corrections
// are computed on the host, so the kernel reads nothing but its four arrays.

struct Params {
  n: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  wd: f32,
  bc1: f32,  // 1 - beta1^step
  bc2: f32,  // 1 - beta2^step
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.n) { return; }
  let g = grad[i];
  let mi = P.beta1 * m[i] + (1.0 - P.beta1) * g;
  let vi = P.beta2 * v[i] + (1.0 - P.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  let update = (mi / P.bc1) / (sqrt(vi / P.bc2) + P.eps);
  param[i] = param[i] - P.lr * (P.wd * param[i] + update);
}
