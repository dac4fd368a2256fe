// expand.wgsl: out = x broadcast to out's shape (the copies materialised).
//
// Layout: x has the same rank as out with dims 1 or equal; it is read through strides that
// are 0 on broadcast dims (rank <= 8). One thread per output element. The adjoint (summing
// back) is a reduction, done by reduce.wgsl at the tensor level.

struct Params {
  n: u32,
  rank: u32,
  _pad0: u32,
  _pad1: u32,
  shape: array<vec4<u32>, 2>,     // output shape, dim d at [d / 4][d % 4]
  xStrides: array<vec4<u32>, 2>,  // x's strides as broadcast to shape
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.n) { return; }
  var rem = i;
  var ix = 0u;
  for (var d = i32(P.rank) - 1; d >= 0; d--) {
    let dim = P.shape[d / 4][d % 4];
    ix += (rem % dim) * P.xStrides[d / 4][d % 4];
    rem = rem / dim;
  }
  out[i] = x[ix];
}
