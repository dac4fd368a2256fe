;; matmul.wat: the CPU backend's fast matmul, in WebAssembly text with 128-bit SIMD.
;;
;;   c[i*N + j] = sum over k of a[i*K + k] * bt[j*K + k]      i < M, j < N, k < K
;;
;; It is the same computation as `matmulKernel` in src/backend/cpu.ts (read that first): the
;; caller packs both operands row-major with k contiguous, A as (M, K) and B transposed as
;; Bt (N, K), so every output is a dot product of two contiguous rows. C is (M, N) row-major.
;; All pointers are BYTE offsets into this module's memory; every value is a 4-byte float32.
;; Build: `npm run build:wasm` (scripts/build-wasm.ts) turns this file into matmul.wasm.
;;
;; Why SIMD helps. A v128 register holds four float32 lanes, and one f32x4.mul or f32x4.add
;; does four multiplies or adds at once. Because k is contiguous in both operands, one
;; 16-byte load brings four consecutive k of a row, so we can give each LANE its own share of
;; k: lane l of an accumulator sums the products for k = l, l+4, l+8, ... Only at the end of
;; the row are the four lanes added together (a "horizontal sum"). JavaScript has no SIMD
;; and works one float at a time; V8 compiles this module to SSE/AVX instructions instead.
;;
;; The tile (register blocking). As in the JS kernel, we compute a 2 x 4 block of C at once:
;; rows i, i+1 of A against rows j..j+3 of Bt. Per step of four k we load 2 + 4 = 6 vectors
;; and do 8 vector multiply-adds (64 flops; each is a mul then an add: standard WASM SIMD
;; has no fused multiply-add), so each loaded vector is used 2-4 times.
;;
;; The relaxed build. Every multiply-add of the vector loops is written in ONE form,
;;   acc = f32x4.add(acc, f32x4.mul(x, y))       with acc, x, y plain local.get's
;; which scripts/build-wasm.ts rewrites into the relaxed-SIMD instruction
;;   acc = f32x4.relaxed_madd(x, y, acc)
;; for matmul-relaxed-shared.wasm. relaxed_madd lets the engine use the CPU's fused
;; multiply-add (x86 FMA3: one instruction, one rounding) or a mul then an add (two
;; roundings): it is "relaxed" because the result may differ by that rounding from machine to
;; machine. Both are within the float32 dot-product bound the tests use. Eight
;; accumulators + 2 A vectors + 1 Bt vector + 1 temporary fit in the 16 SIMD registers of
;; x86-64. Bigger tiles (4 x 4: 16 accumulators) measured SLOWER on this machine, because the
;; register allocator has to spill accumulators to the stack; 2 x 4 and 4 x 2 were best.
;; At the end of a tile, each row's four accumulators are folded into four neighbouring
;; outputs with a few shuffles and adds (a "horizontal sum"), and stored with one 16-byte store.
;;
;; Cache blocking. The columns of C are processed in blocks of nb columns, nb chosen so that
;; the block's nb rows of Bt take ~128 KiB and stay in the L2 cache while every row pair of A
;; passes over them.
;;
;; Loop nest:   for each column block [jb, jEnd)           (cache blocking)
;;                for each row pair i, i+1                  (2 rows of the tile)
;;                  for each 4 columns j..j+3 in the block  (4 columns of the tile)
;;                    for k in steps of 4                   (the hot loop, SIMD)
;;
;; Remainders (shapes that are not multiples of the tile):
;;   - K not a multiple of 4: the SIMD loops cover k < K4 = K rounded down to a multiple of 4;
;;     a last scalar pass ($add_k_tail) adds the remaining 1-3 values of k to every output.
;;   - N not a multiple of 4: the last 1-3 columns of each row pair use $dot (one row against
;;     one row, one accumulator). nb is a multiple of 4, so only the last block has them.
;;   - M odd: the last row uses $dot for every column.
;; Summation order therefore differs from the JS kernel (lanes, then horizontal sum, then the
;; k tail), so results agree to float32 rounding, not bit for bit.
;;
;; Memory. The module exports its memory; the JS side (src/backend/wasm-matmul.ts) grows it
;; to fit the operands, copies A and Bt in, calls $matmul, and copies C out.
(module
  (memory (export "memory") 1)          ;; 1 page = 64 KiB to start; JS grows it on demand

  ;; $dot: the SIMD dot product of two rows over k in [0, K4), as a float32.
  ;; $pa, $pb: byte addresses of the two rows; $kb4: K4 * 4, the byte length covered.
  (func $dot (param $pa i32) (param $pb i32) (param $kb4 i32) (result f32)
    (local $kb i32)                     ;; byte offset of the current k within the rows
    (local $acc v128)                   ;; four partial sums, one per lane
    (local $x v128) (local $y v128)     ;; four k of each row
    (local.set $acc (v128.const f32x4 0 0 0 0))
    (local.set $kb (i32.const 0))
    (block $done
      (loop $k
        (br_if $done (i32.ge_u (local.get $kb) (local.get $kb4)))
        (local.set $x (v128.load (i32.add (local.get $pa) (local.get $kb))))
        (local.set $y (v128.load (i32.add (local.get $pb) (local.get $kb))))
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $x) (local.get $y))))
        (local.set $kb (i32.add (local.get $kb) (i32.const 16)))   ;; 4 floats = 16 bytes
        (br $k)))
    ;; horizontal sum of the four lanes: (l0 + l1) + (l2 + l3)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))

  ;; $add_k_tail: for K not a multiple of 4, add the products for k in [K4, K) to every
  ;; c[i, j]. Plain scalar code: it touches at most 3 values of k per output.
  (func $add_k_tail (param $a i32) (param $bt i32) (param $c i32)
                    (param $M i32) (param $K i32) (param $N i32) (param $K4 i32)
    (local $i i32) (local $j i32) (local $k i32)
    (local $pa i32) (local $pb i32) (local $pc i32)
    (local $acc f32)
    (local.set $pc (local.get $c))      ;; walks C in order: c[i, j] at $c + 4 (i N + j)
    (local.set $i (i32.const 0))
    (block $rows_done (loop $row
      (br_if $rows_done (i32.ge_u (local.get $i) (local.get $M)))
      (local.set $pa (i32.add (local.get $a) (i32.shl (i32.mul (local.get $i) (local.get $K)) (i32.const 2))))
      (local.set $j (i32.const 0))
      (block $cols_done (loop $col
        (br_if $cols_done (i32.ge_u (local.get $j) (local.get $N)))
        (local.set $pb (i32.add (local.get $bt) (i32.shl (i32.mul (local.get $j) (local.get $K)) (i32.const 2))))
        (local.set $acc (f32.load (local.get $pc)))
        (local.set $k (local.get $K4))
        (block $k_done (loop $kk
          (br_if $k_done (i32.ge_u (local.get $k) (local.get $K)))
          (local.set $acc (f32.add (local.get $acc)
            (f32.mul (f32.load (i32.add (local.get $pa) (i32.shl (local.get $k) (i32.const 2))))
                     (f32.load (i32.add (local.get $pb) (i32.shl (local.get $k) (i32.const 2)))))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $kk)))
        (f32.store (local.get $pc) (local.get $acc))
        (local.set $pc (i32.add (local.get $pc) (i32.const 4)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $col)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $row))))

  ;; $matmul: c (M, N) = a (M, K) . bt (N, K)^T. a, bt, c are byte addresses; C must not
  ;; overlap A or Bt.
  (func $matmul (export "matmul")
        (param $a i32) (param $bt i32) (param $c i32) (param $M i32) (param $K i32) (param $N i32)
    (local $Kb i32)                     ;; K * 4: bytes per row of A and of Bt
    (local $kb4 i32)                    ;; K4 * 4: bytes of each row the SIMD loops cover
    (local $Nb i32)                     ;; N * 4: bytes per row of C
    (local $nb i32)                     ;; columns per cache block (a multiple of 4)
    (local $jb i32) (local $jEnd i32)   ;; this block's columns: [jb, jEnd)
    (local $i i32) (local $j i32)       ;; the tile's first row of A (of C) and row of Bt (column of C)
    (local $kb i32)                     ;; byte offset of the current k within a row
    (local $pa0 i32) (local $pa1 i32)   ;; rows i, i+1 of A
    (local $pb0 i32) (local $pb1 i32) (local $pb2 i32) (local $pb3 i32)  ;; rows j..j+3 of Bt
    (local $pc i32)                     ;; address of c[i, j]
    (local $x0 v128) (local $x1 v128)   ;; A rows i, i+1 at k..k+3
    (local $y v128)                     ;; one Bt row at k..k+3
    ;; c<r><s>: the accumulator for c[i + r, j + s]; lane l sums the products for k = l mod 4
    (local $c00 v128) (local $c01 v128) (local $c02 v128) (local $c03 v128)
    (local $c10 v128) (local $c11 v128) (local $c12 v128) (local $c13 v128)
    (local $lo v128) (local $hi v128)   ;; temporaries of the horizontal sums

    (local.set $Kb (i32.shl (local.get $K) (i32.const 2)))
    (local.set $kb4 (i32.and (local.get $Kb) (i32.const -16)))   ;; round down to 16 bytes
    (local.set $Nb (i32.shl (local.get $N) (i32.const 2)))

    ;; ---- cache blocking: columns of C in blocks whose rows of Bt fill ~128 KiB ----
    ;; Every row pair of A is multiplied with ALL of the block's Bt rows before moving on, so
    ;; the block is read M/2 times. When it fits in the L2 cache (256 KiB-1 MiB on current
    ;; x86) those reads are cheap; without blocking, a large Bt (the LM head's (2048, 128) is
    ;; 1 MiB) streams from L3 for every row pair. Measured: 23 -> 30 GFLOP/s on the LM-head
    ;; shape; 64-256 KiB all did about as well. nb = (128 KiB / row bytes), a multiple of 4,
    ;; at least 4.
    (local.set $nb (i32.and (i32.div_u (i32.const 131072) (select (local.get $Kb) (i32.const 1) (local.get $Kb)))
                            (i32.const -4)))
    (if (i32.lt_u (local.get $nb) (i32.const 4)) (then (local.set $nb (i32.const 4))))
    (local.set $jb (i32.const 0))
    (block $blocks_done (loop $block
      (br_if $blocks_done (i32.ge_u (local.get $jb) (local.get $N)))
      (local.set $jEnd (i32.add (local.get $jb) (local.get $nb)))
      (if (i32.gt_u (local.get $jEnd) (local.get $N)) (then (local.set $jEnd (local.get $N))))

      ;; ---- row pairs: i = 0, 2, 4, ... while i + 2 <= M ----
      (local.set $i (i32.const 0))
      (block $pairs_done (loop $pair
        (br_if $pairs_done (i32.gt_u (i32.add (local.get $i) (i32.const 2)) (local.get $M)))
        (local.set $pa0 (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $Kb))))
        (local.set $pa1 (i32.add (local.get $pa0) (local.get $Kb)))

        ;; -- full 2 x 4 tiles: j = jb, jb+4, ... while j + 4 <= jEnd --
        (local.set $j (local.get $jb))
        (block $tiles_done (loop $tile
          (br_if $tiles_done (i32.gt_u (i32.add (local.get $j) (i32.const 4)) (local.get $jEnd)))
          (local.set $pb0 (i32.add (local.get $bt) (i32.mul (local.get $j) (local.get $Kb))))
          (local.set $pb1 (i32.add (local.get $pb0) (local.get $Kb)))
          (local.set $pb2 (i32.add (local.get $pb1) (local.get $Kb)))
          (local.set $pb3 (i32.add (local.get $pb2) (local.get $Kb)))
          (local.set $c00 (v128.const f32x4 0 0 0 0)) (local.set $c01 (v128.const f32x4 0 0 0 0))
          (local.set $c02 (v128.const f32x4 0 0 0 0)) (local.set $c03 (v128.const f32x4 0 0 0 0))
          (local.set $c10 (v128.const f32x4 0 0 0 0)) (local.set $c11 (v128.const f32x4 0 0 0 0))
          (local.set $c12 (v128.const f32x4 0 0 0 0)) (local.set $c13 (v128.const f32x4 0 0 0 0))

          ;; the hot loop: four k per step, 6 loads, 8 multiplies, 8 adds (64 flops)
          (local.set $kb (i32.const 0))
          (block $k_done (loop $k
            (br_if $k_done (i32.ge_u (local.get $kb) (local.get $kb4)))
            (local.set $x0 (v128.load (i32.add (local.get $pa0) (local.get $kb))))
            (local.set $x1 (v128.load (i32.add (local.get $pa1) (local.get $kb))))
            ;; column j + 0
            (local.set $y (v128.load (i32.add (local.get $pb0) (local.get $kb))))
            (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $x0) (local.get $y))))
            (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $x1) (local.get $y))))
            ;; column j + 1
            (local.set $y (v128.load (i32.add (local.get $pb1) (local.get $kb))))
            (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $x0) (local.get $y))))
            (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $x1) (local.get $y))))
            ;; column j + 2
            (local.set $y (v128.load (i32.add (local.get $pb2) (local.get $kb))))
            (local.set $c02 (f32x4.add (local.get $c02) (f32x4.mul (local.get $x0) (local.get $y))))
            (local.set $c12 (f32x4.add (local.get $c12) (f32x4.mul (local.get $x1) (local.get $y))))
            ;; column j + 3
            (local.set $y (v128.load (i32.add (local.get $pb3) (local.get $kb))))
            (local.set $c03 (f32x4.add (local.get $c03) (f32x4.mul (local.get $x0) (local.get $y))))
            (local.set $c13 (f32x4.add (local.get $c13) (f32x4.mul (local.get $x1) (local.get $y))))
            (local.set $kb (i32.add (local.get $kb) (i32.const 16)))
            (br $k)))

          ;; -- horizontal sums: fold row r's accumulators (w, x, y, z) = c<r>0..c<r>3 into
          ;; ONE vector [sum(w), sum(x), sum(y), sum(z)] = c[i + r, j..j+3], stored with one
          ;; 16-byte store. It is a 4 x 4 transpose folded into the additions:
          ;;   lo = [w0, x0, w1, x1] + [w2, x2, w3, x3]   = [w0+w2, x0+x2, w1+w3, x1+x3]
          ;;   hi = the same for y, z                     = [y0+y2, z0+z2, y1+y3, z1+z3]
          ;;   out = [lo0, lo1, hi0, hi1] + [lo2, lo3, hi2, hi3]
          ;; i8x16.shuffle takes BYTE indices: float lane L is bytes 4L..4L+3, and the second
          ;; operand's bytes are numbered 16-31. (Written out for both rows rather than put in
          ;; a helper function: V8 in Node 20 does not inline WASM calls, and the call cost
          ;; ~20% at K = 32, where each tile runs only 8 steps of the hot loop.)
          (local.set $pc (i32.add (local.get $c)
            (i32.add (i32.mul (local.get $i) (local.get $Nb)) (i32.shl (local.get $j) (i32.const 2)))))
          ;; row i
          (local.set $lo (f32x4.add
            (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c00) (local.get $c01))
            (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c00) (local.get $c01))))
          (local.set $hi (f32x4.add
            (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c02) (local.get $c03))
            (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c02) (local.get $c03))))
          (v128.store (local.get $pc) (f32x4.add
            (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $lo) (local.get $hi))
            (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $lo) (local.get $hi))))
          ;; row i + 1, the same with c1*
          (local.set $lo (f32x4.add
            (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c10) (local.get $c11))
            (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c10) (local.get $c11))))
          (local.set $hi (f32x4.add
            (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c12) (local.get $c13))
            (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c12) (local.get $c13))))
          (v128.store (i32.add (local.get $pc) (local.get $Nb)) (f32x4.add
            (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $lo) (local.get $hi))
            (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $lo) (local.get $hi))))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))
          (br $tile)))

        ;; -- the block's last 1-3 columns (only the last block has them: nb is a multiple
        ;; of 4): one dot product each, for both rows --
        (block $cols_done (loop $col
          (br_if $cols_done (i32.ge_u (local.get $j) (local.get $jEnd)))
          (local.set $pb0 (i32.add (local.get $bt) (i32.mul (local.get $j) (local.get $Kb))))
          (local.set $pc (i32.add (local.get $c)
            (i32.add (i32.mul (local.get $i) (local.get $Nb)) (i32.shl (local.get $j) (i32.const 2)))))
          (f32.store (local.get $pc) (call $dot (local.get $pa0) (local.get $pb0) (local.get $kb4)))
          (f32.store (i32.add (local.get $pc) (local.get $Nb))
            (call $dot (local.get $pa1) (local.get $pb0) (local.get $kb4)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $col)))

        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $pair)))

      ;; ---- the last row when M is odd: one dot product per column of the block ----
      (if (i32.lt_u (local.get $i) (local.get $M))
        (then
          (local.set $pa0 (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $Kb))))
          (local.set $j (local.get $jb))
          (block $last_done (loop $last
            (br_if $last_done (i32.ge_u (local.get $j) (local.get $jEnd)))
            (f32.store
              (i32.add (local.get $c) (i32.add (i32.mul (local.get $i) (local.get $Nb)) (i32.shl (local.get $j) (i32.const 2))))
              (call $dot (local.get $pa0)
                (i32.add (local.get $bt) (i32.mul (local.get $j) (local.get $Kb))) (local.get $kb4)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $last)))))

      (local.set $jb (local.get $jEnd))
      (br $block)))

    ;; ---- K mod 4: the SIMD loops stopped at K4; add the last 1-3 k to every output ----
    (if (i32.ne (local.get $kb4) (local.get $Kb))
      (then
        (call $add_k_tail (local.get $a) (local.get $bt) (local.get $c)
          (local.get $M) (local.get $K) (local.get $N) (i32.shr_u (local.get $kb4) (i32.const 2)))))))
