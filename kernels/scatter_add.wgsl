// scatter_add.wgsl: the adjoint of gather, out[v, c] = sum over i with idx[i] == v of src[i, c].
//
// Deterministic without float atomics. WGSL has atomics only for integers, and adding floats
// with atomics would make the sum's order (so its last bits) change from run to run. Instead
// the rows are sorted by index with integer work only, then each output element sums its
// rows in increasing i, the CPU's order, so the result matches the CPU backend bit for bit:
//
//   1. count       one thread per i:        counts[idx[i]] += 1          (integer atomics)
//   2. scan        one workgroup:           offsets = exclusive prefix sum of counts (V + 1)
//   3. place       one thread per i:        rank = #{j < i : idx[j] == idx[i]}
//                                           list[offsets[idx[i]] + rank] = i
//                  (the rank makes the placement stable: rows of one index stay in order)
//   4. accumulate  one thread per (v, c):   out[v, c] = sum of src[list[k], c],
//                                           k from offsets[v] to offsets[v + 1]
//
// Costs: step 3 compares each i with every earlier index, N^2 / 2 integer compares
// (8M for N = 4096 tokens: well under a millisecond on a GPU); step 4 reads src once.
// Layout: src (N, C) float32, idx (N) int32, out (V, C); counts (V), offsets (V + 1) and
// list (N) are u32 scratch buffers.
// Split (webgpu-ops.ts): accumulate may run on output rows [v0, v1) only (out bound from v0)
// and on src rows [n0, n1) only (src bound from n0), adding to out (acc = 1) what the
// earlier src bands wrote. count, scan and place always see all of idx.

struct Params {
  N: u32,  // rows of src (positions)
  C: u32,  // row length
  V: u32,  // rows of out (table size)
  v0: u32, // accumulate: the output rows bound, [v0, v1)
  v1: u32,
  n0: u32, // accumulate: the src rows bound, [n0, n1)
  n1: u32,
  acc: u32, // accumulate: 1 = add to out, 0 = overwrite it
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;          // (N, C)
@group(0) @binding(2) var<storage, read> idx: array<i32>;          // (N)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;    // (V, C)
@group(0) @binding(4) var<storage, read_write> counts: array<atomic<u32>>; // (V), zeroed
@group(0) @binding(5) var<storage, read_write> offsets: array<u32>; // (V + 1)
@group(0) @binding(6) var<storage, read_write> list: array<u32>;    // (N)
// errors[0]: 0 = fine, 2 = scatterAdd index out of range; [1] position; [2] the index
@group(0) @binding(7) var<storage, read_write> errors: array<atomic<u32>, 4>;

fn flatIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn count(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= P.N) { return; }
  let r = idx[i];
  if (r < 0 || u32(r) >= P.V) {
    if (atomicCompareExchangeWeak(&errors[0], 0u, 2u).exchanged) {
      atomicStore(&errors[1], i);
      atomicStore(&errors[2], bitcast<u32>(r));
    }
    return;
  }
  atomicAdd(&counts[u32(r)], 1u);
}

var<workgroup> partial: array<u32, 256>;

// One workgroup of 256 threads: each sums a contiguous chunk of counts, thread 0 scans the
// 256 chunk totals, then each thread writes the running offsets of its chunk.
@compute @workgroup_size(256)
fn scan(@builtin(local_invocation_index) t: u32) {
  let chunk = (P.V + 255u) / 256u;
  let lo = min(P.V, t * chunk);
  let hi = min(P.V, lo + chunk);
  var s = 0u;
  for (var v = lo; v < hi; v++) { s += atomicLoad(&counts[v]); }
  partial[t] = s;
  workgroupBarrier();
  if (t == 0u) {
    var run = 0u;
    for (var k = 0u; k < 256u; k++) {
      let c = partial[k];
      partial[k] = run;
      run += c;
    }
    offsets[P.V] = run;
  }
  workgroupBarrier();
  var run = partial[t];
  for (var v = lo; v < hi; v++) {
    offsets[v] = run;
    run += atomicLoad(&counts[v]);
  }
}

@compute @workgroup_size(256)
fn place(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(gid, nwg);
  if (i >= P.N) { return; }
  let r = idx[i];
  if (r < 0 || u32(r) >= P.V) { return; }
  var rank = 0u;
  for (var j = 0u; j < i; j++) {
    if (idx[j] == r) { rank++; }
  }
  list[offsets[u32(r)] + rank] = i;
}

@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flatIndex(gid, nwg);
  if (t >= (P.v1 - P.v0) * P.C) { return; }
  let v = P.v0 + t / P.C;
  let c = t % P.C;
  var acc = 0.0;
  if (P.acc == 1u) { acc = out[t]; }
  for (var k = offsets[v]; k < offsets[v + 1u]; k++) {
    let i = list[k];
    if (i >= P.n0 && i < P.n1) { acc += src[(i - P.n0) * P.C + c]; }
  }
  out[t] = acc;
}
