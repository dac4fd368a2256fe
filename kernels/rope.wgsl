// rope.wgsl: rotary position embedding, rotate-half layout (GPT-NeoX, Llama, Qwen3):
//   y = x * cos + rotate_half(x) * sin,   rotate_half([x1, x2]) = [-x2, x1]
// i.e. for i < HS/2 the pair (x[i], x[i + HS/2]) is rotated by the angle of frequency i.
// x, y (R, T, HS) with R = batch * heads; cos, sin (T, HS) (composed.ts ropeTables).
// SIGN = -1 rotates by minus the angle: the backward (a rotation's adjoint is its inverse).
// One thread per element.

override SIGN: f32 = 1.0;

struct Params {
  n: u32,   // R * T * HS
  T: u32,
  HS: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cosT: array<f32>;
@group(0) @binding(3) var<storage, read> sinT: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = gid.x + gid.y * nwg.x * 256u;
  if (e >= P.n) { return; }
  let half = P.HS / 2u;
  let i = e % P.HS;                 // position in the head
  let t = (e / P.HS) % P.T;         // sequence position
  let rowStart = e - i;
  var rot: f32;
  if (i < half) { rot = -x[rowStart + i + half]; } else { rot = x[rowStart + i - half]; }
  let tab = t * P.HS + i;
  y[e] = x[e] * cosT[tab] + SIGN * rot * sinT[tab];
}
