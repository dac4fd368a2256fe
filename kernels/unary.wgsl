// unary.wgsl: y = f(x) elementwise, for every UnaryOp of src/backend/backend.ts.
//
// Layout: x and y are flat float32 arrays of n elements; one thread per element.
// The op is a pipeline-overridable constant (OP), so each op compiles to its own pipeline
// with the switch folded away, from this one file. `param` is the scalar of the
// powScalar / mulScalar / addScalar ops.
//
// Precision: WGSL's exp, log, tanh, pow are allowed a few ULP of error (more for pow, which is
// exp2(p * log2(x))), so the parity test compares with a small relative tolerance.

override OP: u32 = 0u; // 0 neg, 1 exp, 2 log, 3 sqrt, 4 rsqrt, 5 tanh, 6 sigmoid, 7 relu,
                       // 8 powScalar, 9 mulScalar, 10 addScalar (same order as webgpu.ts)

struct Params {
  n: u32,       // number of elements
  param: f32,   // the scalar of powScalar / mulScalar / addScalar
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// Infinity and NaN as runtime values: WGSL rejects them in constant expressions, so they are
// made by bitcasting private variables, which the compiler does not fold.
var<private> POS_INF_BITS: u32 = 0x7f800000u;
var<private> NAN_BITS: u32 = 0x7fc00000u;

// x ** p with the CPU's (JavaScript's) meaning for zero and negative x: WGSL's pow is
// exp2(p * log2(x)), undefined for x <= 0. An integer exponent is applied to |x| and the sign
// restored when it is odd; zero keeps its sign under odd powers ((-0) ** -1 = -infinity).
fn powScalar(v: f32, p: f32) -> f32 {
  if (p == 2.0) { return v * v; } // the common case, exact
  if (p == 1.0) { return v; }
  if (p == 0.0) { return 1.0; }
  let oddInt = floor(p) == p && (abs(p) % 2.0) == 1.0;
  let negative = (bitcast<u32>(v) >> 31u) == 1u; // the sign bit: true for -0 too
  if (v == 0.0) {
    let mag = select(0.0, bitcast<f32>(POS_INF_BITS), p < 0.0);
    return select(mag, -mag, oddInt && negative);
  }
  if (v > 0.0) { return pow(v, p); }
  if (floor(p) != p) { return bitcast<f32>(NAN_BITS); } // negative ** fraction = NaN
  let r = pow(-v, p);
  return select(r, -r, oddInt);
}

fn apply(v: f32) -> f32 {
  switch OP {
    case 0u: { return -v; }
    case 1u: { return exp(v); }
    case 2u: { return log(v); }
    case 3u: { return sqrt(v); }
    case 4u: { return inverseSqrt(v); }
    // tanh saturates to +-1 long before |v| = 15; clamping avoids exp overflow inside tanh
    // on implementations that compute it as (e^2v - 1) / (e^2v + 1).
    case 5u: { return tanh(clamp(v, -15.0, 15.0)); }
    case 6u: { return 1.0 / (1.0 + exp(-v)); }
    case 7u: { return max(v, 0.0); }
    case 8u: { return powScalar(v, P.param); }
    case 9u: { return v * P.param; }
    default: { return v + P.param; }
  }
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  // Large arrays use a 2-D grid of workgroups (at most 65535 per dimension): flatten it.
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= P.n) { return; }
  y[i] = apply(x[i]);
}
