// where.wgsl: out = cond != 0 ? a : b elementwise, all three broadcast to out's shape.
//
// Layout and indexing as in binary.wgsl: one thread per output element; each input is read
// through its own strides, 0 on broadcast dims (rank <= 8). cond is float32 (nonzero = true),
// as produced by the comparison ops.

struct Params {
  n: u32,
  rank: u32,
  _pad0: u32,
  _pad1: u32,
  shape: array<vec4<u32>, 2>,     // output shape, dim d at [d / 4][d % 4]
  cStrides: array<vec4<u32>, 2>,  // strides of cond, a, b as broadcast to shape
  aStrides: array<vec4<u32>, 2>,
  bStrides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> cond: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.n) { return; }
  var rem = i;
  var ic = 0u;
  var ia = 0u;
  var ib = 0u;
  for (var d = i32(P.rank) - 1; d >= 0; d--) {
    let dim = P.shape[d / 4][d % 4];
    let c = rem % dim;
    rem = rem / dim;
    ic += c * P.cStrides[d / 4][d % 4];
    ia += c * P.aStrides[d / 4][d % 4];
    ib += c * P.bStrides[d / 4][d % 4];
  }
  // select, not a branch: both reads are cheap and the result does not depend on NaN rules
  out[i] = select(b[ib], a[ia], cond[ic] != 0.0);
}
