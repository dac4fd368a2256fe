// reduce.wgsl: sum or max along one axis; the result has that axis removed.
//
// Layout: x viewed as (outer, n, inner), n being the reduced axis; y is (outer, inner).
// Two shapes of work, two entry points:
//   reduce_rows (inner == 1, e.g. a sum over the last axis): the n values of an output are
//     contiguous. One workgroup of 256 threads per output: each thread accumulates a strided
//     share (thread t reads t, t + 256, ...: neighbouring threads read neighbouring floats),
//     then a tree reduction in workgroup memory halves the 256 partials 8 times.
//   reduce_cols (inner > 1, e.g. a bias gradient summed over the batch axis): the values of
//     one output are `inner` floats apart, but neighbouring outputs are neighbours in memory.
//     A workgroup is 16 columns x 16 row-groups: the 16 threads of a row-group read 16
//     adjacent columns at once, each row-group takes every 16th row, then the 16 partials of
//     each column are tree-reduced in workgroup memory.
// The op is an overridable constant. max propagates NaN like the CPU reference.
// The summation order differs from the CPU's left-to-right loop, so sums agree to rounding.

override OP: u32 = 0u; // 0 sum, 1 max

struct Params {
  outer: u32,  // product of dims before the axis
  n: u32,      // length of the reduced axis
  inner: u32,  // product of dims after the axis
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // (outer, n, inner)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // (outer, inner)

// -infinity as a runtime value (WGSL rejects infinities in constant expressions)
var<private> NEG_INF_BITS: u32 = 0xff800000u;

fn identity() -> f32 {
  if (OP == 0u) { return 0.0; }
  return bitcast<f32>(NEG_INF_BITS);
}

// NaN tested on the bits: `v != v` may be folded to false by compilers that assume no NaNs.
fn isNan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn combine(acc: f32, v: f32) -> f32 {
  if (OP == 0u) { return acc + v; }
  if (isNan(acc)) { return acc; } // NaN wins, as in the CPU reference
  return select(acc, v, v > acc || isNan(v));
}

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn reduce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
  let row = wid.x + wid.y * nwg.x; // output index (outer may exceed 65535: 2-D grid)
  // `row` is uniform across the workgroup, so returning here keeps barriers uniform
  if (row >= P.outer) { return; }
  let base = row * P.n;
  var acc = identity();
  for (var k = t; k < P.n; k += 256u) { acc = combine(acc, x[base + k]); }
  part[t] = acc;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (t < s) { part[t] = combine(part[t], part[t + s]); }
    workgroupBarrier();
  }
  if (t == 0u) { y[row] = part[0]; }
}

var<workgroup> tile: array<array<f32, 16>, 16>; // [row-group][column]

@compute @workgroup_size(16, 16)
fn reduce_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
  let colBlocks = (P.inner + 15u) / 16u;
  let blk = wid.x + wid.y * nwg.x;
  if (blk >= P.outer * colBlocks) { return; } // uniform across the workgroup
  let o = blk / colBlocks;
  let j = (blk % colBlocks) * 16u + lid.x; // this thread's column
  var acc = identity();
  if (j < P.inner) {
    for (var k = lid.y; k < P.n; k += 16u) { acc = combine(acc, x[(o * P.n + k) * P.inner + j]); }
  }
  tile[lid.y][lid.x] = acc;
  workgroupBarrier();
  for (var s = 8u; s > 0u; s >>= 1u) {
    if (lid.y < s) { tile[lid.y][lid.x] = combine(tile[lid.y][lid.x], tile[lid.y + s][lid.x]); }
    workgroupBarrier();
  }
  if (lid.y == 0u && j < P.inner) { y[o * P.inner + j] = tile[0][lid.x]; }
}
