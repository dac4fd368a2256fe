// permute.wgsl: out = x with its dimensions reordered, out.shape[i] = x.shape[perm[i]].
//
// Layout: one thread per output element, row-major over out's shape (rank <= 8). The output
// coordinates are turned into an input offset with `strides`: for each output dim i, the
// stride of input dim perm[i]. Writes are contiguous and reads are strided; a tiled
// transpose through workgroup memory would make both contiguous, at the price of a second
// kernel for the 2-D case. Matmul reads transposed operands through its flags instead, so the
// hot path never needs a permute of a weight.

struct Params {
  n: u32,
  rank: u32,
  _pad0: u32,
  _pad1: u32,
  shape: array<vec4<u32>, 2>,    // output shape, dim d at [d / 4][d % 4]
  strides: array<vec4<u32>, 2>,  // input stride of the input dim that output dim d reads
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.n) { return; }
  var rem = i;
  var src = 0u;
  for (var d = i32(P.rank) - 1; d >= 0; d--) {
    let dim = P.shape[d / 4][d % 4];
    src += (rem % dim) * P.strides[d / 4][d % 4];
    rem = rem / dim;
  }
  out[i] = x[src];
}
