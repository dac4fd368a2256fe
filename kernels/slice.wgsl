// slice.wgsl: copy a range of positions along one axis from x into y. One kernel serves
// four ops, which differ only in where the range starts in x and in y:
//   slice(x, axis, start, end): y[o, k, j] = x[o, start + k, j]        (srcOff = start)
//   pad(x, axis, before, after): y cleared to 0, then y[o, before + k, j] = x[o, k, j]
//   concat(xs, axis): one dispatch per input, y[o, off_i + k, j] = x_i[o, k, j]
//   writeSlice(y, x, axis, start): y is an existing tensor (the KV cache), written in place
//                                  at y[o, start + k, j] = x[o, k, j]; the rest of y untouched
//
// Layout: both tensors are viewed as (outer, axisLen, inner): `outer` is the product of the
// dims before the axis, `inner` of those after it, so a position along the axis is a
// contiguous run of `inner` floats. One thread per copied element (outer * count * inner).

struct Params {
  outer: u32,   // product of dims before the axis
  inner: u32,   // product of dims after the axis
  count: u32,   // positions copied along the axis
  xLen: u32,    // x's length along the axis
  yLen: u32,    // y's length along the axis
  srcOff: u32,  // first position read in x
  dstOff: u32,  // first position written in y
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.outer * P.count * P.inner) { return; }
  let j = i % P.inner;        // position inside the contiguous run
  let k = (i / P.inner) % P.count; // position along the axis, from the range's start
  let o = i / (P.inner * P.count); // outer index
  y[(o * P.yLen + P.dstOff + k) * P.inner + j] = x[(o * P.xLen + P.srcOff + k) * P.inner + j];
}
