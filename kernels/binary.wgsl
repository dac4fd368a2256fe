// binary.wgsl: out = a (op) b elementwise, with numpy broadcasting, for every BinaryOp.
//
// Layout: out is a flat row-major array of n elements with shape `shape` (rank <= 8).
// a and b are read through strides: their own row-major strides, with 0 on every dimension
// where they are broadcast (size 1 against a larger output dim). One thread per output
// element turns its flat index into coordinates (div/mod by each dim, innermost first) and
// the coordinates into an offset into a and into b.
// `mode` skips the index arithmetic in the two common cases: 1 = a, b and out all have the
// same shape; 2 = a has out's shape and b is a single number.
// The op is a pipeline-overridable constant (OP): one pipeline per op, one file for all.

override OP: u32 = 0u; // 0 add, 1 sub, 2 mul, 3 div, 4 lt, 5 gt, 6 eq (same order as webgpu.ts)

struct Params {
  n: u32,                         // output elements
  rank: u32,                      // number of dims in use in the arrays below
  mode: u32,                      // 0 general, 1 same shapes, 2 b is a scalar
  _pad: u32,
  shape: array<vec4<u32>, 2>,     // output shape, dim d at [d / 4][d % 4]
  aStrides: array<vec4<u32>, 2>,  // a's strides as broadcast to shape (0 = broadcast dim)
  bStrides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn apply(x: f32, y: f32) -> f32 {
  switch OP {
    case 0u: { return x + y; }
    case 1u: { return x - y; }
    case 2u: { return x * y; }
    case 3u: { return x / y; }
    case 4u: { return select(0.0, 1.0, x < y); }
    case 5u: { return select(0.0, 1.0, x > y); }
    default: { return select(0.0, 1.0, x == y); }
  }
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.n) { return; }
  if (P.mode == 1u) { out[i] = apply(a[i], b[i]); return; }
  if (P.mode == 2u) { out[i] = apply(a[i], b[0]); return; }
  // general case: flat index -> coordinates -> offsets into a and b
  var rem = i;
  var ia = 0u;
  var ib = 0u;
  for (var d = i32(P.rank) - 1; d >= 0; d--) {
    let dim = P.shape[d / 4][d % 4];
    let c = rem % dim;
    rem = rem / dim;
    ia += c * P.aStrides[d / 4][d % 4];
    ib += c * P.bStrides[d / 4][d % 4];
  }
  out[i] = apply(a[ia], b[ib]);
}
