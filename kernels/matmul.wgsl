// matmul.wgsl: batched C = op(A) @ op(B), op = identity or transpose (TRANS_A, TRANS_B).
//
// Shapes: op(A) is (M, K), op(B) is (K, N), C is (batch..., M, N). A is stored (M, K), or
// (K, M) when TRANS_A; B is stored (K, N), or (N, K) when TRANS_B. The batch dims of A and B
// broadcast against the result's (a weight without batch dims is shared by every batch).
//
// Tiling. A workgroup of 16 x 16 threads computes a 64 x 64 tile of C. It walks K in steps
// of 16: the threads copy a 64 x 16 slab of A and a 16 x 64 slab of B into workgroup memory
// (each global value is read once per tile instead of once per output), wait at a barrier,
// then every thread multiplies from workgroup memory. Register blocking: each thread owns a
// 4 x 4 block of C in registers, so one vec4 of A (4 rows at one k) and one vec4 of B (4
// columns at one k) feed 16 multiply-adds: 2 workgroup loads per 16 FMAs instead of 2 per 1.
//
// Loads are arranged so that neighbouring threads read neighbouring addresses in every
// layout: the thread -> (row, k) mapping of the copy follows whichever of A's dims is
// contiguous in memory (k when A is (M, K), m when it is (K, M)), likewise for B.
// Vectorised loads (VEC_A, VEC_B): when an operand's contiguous dim is a multiple of 4, its
// buffer is also bound as array<vec4<f32>> (A4, B4) and each thread fetches its 4 values
// with one 16-byte load instead of four 4-byte loads. The backend picks this per operand.
// Ragged shapes: reads outside A or B give 0 and writes outside C are skipped, so M, N, K
// need not be multiples of the tile.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override VEC_A: bool = false; // A's contiguous dim (K, or M when TRANS_A) is a multiple of 4
override VEC_B: bool = false; // B's contiguous dim (N, or K when TRANS_B) is a multiple of 4

const TILE = 64u;   // C tile is TILE x TILE
const TK = 16u;     // K step

struct Params {
  M: u32,
  N: u32,
  K: u32,
  batchRank: u32,                  // dims in use below (<= 4)
  batchShape: vec4<u32>,           // result batch dims
  aBatchStrides: vec4<u32>,        // in matrices; 0 where A is broadcast over that batch dim
  bBatchStrides: vec4<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<storage, read> A4: array<vec4<f32>>; // the same buffer as A
@group(0) @binding(5) var<storage, read> B4: array<vec4<f32>>; // the same buffer as B

// As[k * 16 + r]: rows 4r..4r+3 of the A slab at step k; Bs[k * 16 + c]: columns 4c..4c+3.
var<workgroup> As: array<vec4<f32>, 256>; // TK x (TILE / 4)
var<workgroup> Bs: array<vec4<f32>, 256>;

fn readA(m: u32, k: u32, off: u32) -> f32 {
  if (m >= P.M || k >= P.K) { return 0.0; }
  if (TRANS_A) { return A[off + k * P.M + m]; }
  return A[off + m * P.K + k];
}

fn readB(k: u32, n: u32, off: u32) -> f32 {
  if (k >= P.K || n >= P.N) { return 0.0; }
  if (TRANS_B) { return B[off + n * P.K + k]; }
  return B[off + k * P.N + n];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  // which matrices of the batch: decompose wid.z over the batch shape, innermost first
  var rem = wid.z;
  var aMat = 0u;
  var bMat = 0u;
  for (var d = i32(P.batchRank) - 1; d >= 0; d--) {
    let c = rem % P.batchShape[d];
    rem = rem / P.batchShape[d];
    aMat += c * P.aBatchStrides[d];
    bMat += c * P.bBatchStrides[d];
  }
  let aOff = aMat * P.M * P.K;
  let bOff = bMat * P.K * P.N;
  let row0 = wid.y * TILE; // first row of this C tile
  let col0 = wid.x * TILE; // first column

  var acc: array<vec4<f32>, 4>; // acc[i] = C[4 ty + i, 4 tx .. 4 tx + 3], zero-initialised
  for (var k0 = 0u; k0 < P.K; k0 += TK) {
    // copy the A slab (64 x 16 values = 256 vec4s): one vec4 per thread
    if (VEC_A && !TRANS_A) {
      // A is (M, K), k contiguous: one 16-byte load gives 4 k's of one row; they go to 4
      // different k-rows of As, one component each
      let m = t / 4u;
      let kq = (t % 4u) * 4u;
      var val = vec4<f32>(0.0);
      if (row0 + m < P.M && k0 + kq < P.K) { val = A4[(aOff + (row0 + m) * P.K + k0 + kq) / 4u]; }
      for (var i = 0u; i < 4u; i++) { As[(kq + i) * 16u + m / 4u][m % 4u] = val[i]; }
    } else if (VEC_A && TRANS_A) {
      // A is (K, M), m contiguous: one 16-byte load is exactly one vec4 of As
      let r4 = t % 16u;
      let k = t / 16u;
      var val = vec4<f32>(0.0);
      if (row0 + r4 * 4u < P.M && k0 + k < P.K) { val = A4[(aOff + (k0 + k) * P.M + row0 + r4 * 4u) / 4u]; }
      As[k * 16u + r4] = val;
    } else {
      var r4: u32;
      var k: u32;
      if (TRANS_A) { r4 = t % 16u; k = t / 16u; } // m contiguous in memory: threads walk m
      else { r4 = t / 16u; k = t % 16u; }        // k contiguous: threads walk k
      let m = row0 + r4 * 4u;
      As[k * 16u + r4] = vec4<f32>(readA(m, k0 + k, aOff), readA(m + 1u, k0 + k, aOff),
                                   readA(m + 2u, k0 + k, aOff), readA(m + 3u, k0 + k, aOff));
    }
    // copy the B slab (16 x 64 values = 256 vec4s): one vec4 per thread
    if (VEC_B && !TRANS_B) {
      // B is (K, N), n contiguous: one 16-byte load is exactly one vec4 of Bs
      let c4 = t % 16u;
      let k = t / 16u;
      var val = vec4<f32>(0.0);
      if (k0 + k < P.K && col0 + c4 * 4u < P.N) { val = B4[(bOff + (k0 + k) * P.N + col0 + c4 * 4u) / 4u]; }
      Bs[k * 16u + c4] = val;
    } else if (VEC_B && TRANS_B) {
      // B is (N, K), k contiguous: 4 k's of one column, spread over 4 k-rows of Bs
      let n = t / 4u;
      let kq = (t % 4u) * 4u;
      var val = vec4<f32>(0.0);
      if (col0 + n < P.N && k0 + kq < P.K) { val = B4[(bOff + (col0 + n) * P.K + k0 + kq) / 4u]; }
      for (var i = 0u; i < 4u; i++) { Bs[(kq + i) * 16u + n / 4u][n % 4u] = val[i]; }
    } else {
      var c4: u32;
      var k: u32;
      if (TRANS_B) { c4 = t / 16u; k = t % 16u; } // k contiguous: threads walk k
      else { c4 = t % 16u; k = t / 16u; }        // n contiguous: threads walk n
      let n = col0 + c4 * 4u;
      Bs[k * 16u + c4] = vec4<f32>(readB(k0 + k, n, bOff), readB(k0 + k, n + 1u, bOff),
                                   readB(k0 + k, n + 2u, bOff), readB(k0 + k, n + 3u, bOff));
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      let a = As[k * 16u + lid.y]; // rows 4 ty .. 4 ty + 3
      let b = Bs[k * 16u + lid.x]; // columns 4 tx .. 4 tx + 3
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }

  let cOff = wid.z * P.M * P.N;
  for (var i = 0u; i < 4u; i++) {
    let m = row0 + lid.y * 4u + i;
    if (m >= P.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = col0 + lid.x * 4u + j;
      if (n < P.N) { C[cOff + m * P.N + n] = acc[i][j]; }
    }
  }
}
