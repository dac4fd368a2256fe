// gather.wgsl: embedding lookup, out[i, c] = table[idx[i], c].
//
// Layout: table (V, C) float32, idx (N) int32, out (N, C). One thread per output element;
// neighbouring threads read neighbouring columns of the same table row (coalesced).
// A kernel cannot throw: an index outside [0, V) writes 0 and records the first offending
// position in `errors`, which the backend checks at its next read and reports as a
// RangeError naming the position and the index, like the CPU backend does at once.
// Split (a table or output above the binding limit, webgpu-ops.ts): a dispatch may see only
// rows [v0, v1) of the table (bound from v0) and positions n0.. of idx and out; positions
// whose index is outside its table band are left for the dispatch that has their band.

struct Params {
  N: u32,  // rows gathered (by this dispatch)
  C: u32,  // row length
  V: u32,  // rows in the whole table
  v0: u32, // the table rows bound: [v0, v1)
  v1: u32,
  n0: u32, // the position of this dispatch's first row (for the error report)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;   // (v1 - v0, C)
@group(0) @binding(2) var<storage, read> idx: array<i32>;     // (N)
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // (N, C)
// errors[0]: 0 = fine, 1 = gather index out of range; [1] position; [2] the index
@group(0) @binding(4) var<storage, read_write> errors: array<atomic<u32>, 4>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * 256u;
  if (t >= P.N * P.C) { return; }
  let i = t / P.C;
  let c = t % P.C;
  let r = idx[i];
  if (r < 0 || u32(r) >= P.V) {
    out[t] = 0.0;
    if (atomicCompareExchangeWeak(&errors[0], 0u, 1u).exchanged) {
      atomicStore(&errors[1], P.n0 + i);
      atomicStore(&errors[2], bitcast<u32>(r));
    }
    return;
  }
  if (u32(r) < P.v0 || u32(r) >= P.v1) { return; } // another dispatch's table band
  out[t] = table[(u32(r) - P.v0) * P.C + c];
}
