;; ops-adamw-copy.wat: the AdamW update, and the kernels that only move data (permute4, transpose, zero).
;; A piece of the ops module: scripts/build-wasm.ts splices it into kernels/cpu/ops.wat at its
;; `;; @include ops-adamw-copy.wat` line (one module, one ops.wasm; the header, the memory and the shared
;; helpers — $exp4, $hsum, $dot, $axpy, $rowmax, $expshift, ... — are in ops.wat).

  ;; ---------------------------------------------------------------------------------------
  ;; AdamW (cpu-fused.ts: adamwUpdate), in place on w, m, v over n elements:
  ;;   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²
  ;;   w -= lr (wd w + (m / bc1) / (sqrt(v / bc2) + eps))
  ;; ---------------------------------------------------------------------------------------

  (func $adamw (export "adamw") (param $w i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
        (param $lr f32) (param $b1 f32) (param $b2 f32) (param $eps f32) (param $wd f32) (param $bc1 f32) (param $bc2 f32)
    (local $i i32) (local $n4 i32) (local $o i32)
    (local $gv v128) (local $mv v128) (local $vv v128) (local $wv v128)
    (local $gs f32) (local $ms f32) (local $vs f32) (local $ws f32)
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $n4)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (local.set $gv (v128.load (i32.add (local.get $g) (local.get $o))))
      (local.set $mv (f32x4.add (f32x4.mul (f32x4.splat (local.get $b1)) (v128.load (i32.add (local.get $m) (local.get $o))))
                                (f32x4.mul (f32x4.splat (f32.sub (f32.const 1) (local.get $b1))) (local.get $gv))))
      (local.set $vv (f32x4.add (f32x4.mul (f32x4.splat (local.get $b2)) (v128.load (i32.add (local.get $v) (local.get $o))))
                                (f32x4.mul (f32x4.splat (f32.sub (f32.const 1) (local.get $b2))) (f32x4.mul (local.get $gv) (local.get $gv)))))
      (v128.store (i32.add (local.get $m) (local.get $o)) (local.get $mv))
      (v128.store (i32.add (local.get $v) (local.get $o)) (local.get $vv))
      (local.set $wv (v128.load (i32.add (local.get $w) (local.get $o))))
      (v128.store (i32.add (local.get $w) (local.get $o))
        (f32x4.sub (local.get $wv) (f32x4.mul (f32x4.splat (local.get $lr))
          (f32x4.add (f32x4.mul (f32x4.splat (local.get $wd)) (local.get $wv))
            (f32x4.div (f32x4.div (local.get $mv) (f32x4.splat (local.get $bc1)))
                       (f32x4.add (f32x4.sqrt (f32x4.div (local.get $vv) (f32x4.splat (local.get $bc2)))) (f32x4.splat (local.get $eps))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (local.set $gs (f32.load (i32.add (local.get $g) (local.get $o))))
      (local.set $ms (f32.add (f32.mul (local.get $b1) (f32.load (i32.add (local.get $m) (local.get $o))))
                              (f32.mul (f32.sub (f32.const 1) (local.get $b1)) (local.get $gs))))
      (local.set $vs (f32.add (f32.mul (local.get $b2) (f32.load (i32.add (local.get $v) (local.get $o))))
                              (f32.mul (f32.sub (f32.const 1) (local.get $b2)) (f32.mul (local.get $gs) (local.get $gs)))))
      (f32.store (i32.add (local.get $m) (local.get $o)) (local.get $ms))
      (f32.store (i32.add (local.get $v) (local.get $o)) (local.get $vs))
      (local.set $ws (f32.load (i32.add (local.get $w) (local.get $o))))
      (f32.store (i32.add (local.get $w) (local.get $o))
        (f32.sub (local.get $ws) (f32.mul (local.get $lr)
          (f32.add (f32.mul (local.get $wd) (local.get $ws))
            (f32.div (f32.div (local.get $ms) (local.get $bc1))
                     (f32.add (f32.sqrt (f32.div (local.get $vs) (local.get $bc2))) (local.get $eps)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))

  ;; $permute4: y (d0, d1, d2, d3), contiguous, = x read at x + 4 (i0 s0 + i1 s1 + i2 s2 + i3 s3)
  ;; (element strides of x for each OUTPUT axis): a permutation of up to four axes (cpu.ts:
  ;; permute, whose odometer computes the same offsets one element at a time). When the last
  ;; axis stays last (s3 = 1, as when attention splits and merges heads) each innermost run
  ;; is one memory.copy of d3 floats.
  (func $permute4 (export "permute4") (param $x i32) (param $y i32)
        (param $d0 i32) (param $d1 i32) (param $d2 i32) (param $d3 i32)
        (param $s0 i32) (param $s1 i32) (param $s2 i32) (param $s3 i32)
    (local $i0 i32) (local $i1 i32) (local $i2 i32) (local $i3 i32) (local $src i32) (local $py i32)
    (local.set $py (local.get $y))
    (block $d0d (loop $l0
      (br_if $d0d (i32.ge_u (local.get $i0) (local.get $d0)))
      (local.set $i1 (i32.const 0))
      (block $d1d (loop $l1
        (br_if $d1d (i32.ge_u (local.get $i1) (local.get $d1)))
        (local.set $i2 (i32.const 0))
        (block $d2d (loop $l2
          (br_if $d2d (i32.ge_u (local.get $i2) (local.get $d2)))
          ;; byte address of x[i0, i1, i2, 0]
          (local.set $src (i32.add (local.get $x) (i32.shl (i32.add (i32.add
            (i32.mul (local.get $i0) (local.get $s0)) (i32.mul (local.get $i1) (local.get $s1))) (i32.mul (local.get $i2) (local.get $s2)))
            (i32.const 2))))
          (if (i32.eq (local.get $s3) (i32.const 1))
            (then
              (memory.copy (local.get $py) (local.get $src) (i32.shl (local.get $d3) (i32.const 2)))
              (local.set $py (i32.add (local.get $py) (i32.shl (local.get $d3) (i32.const 2)))))
            (else
              (local.set $i3 (i32.const 0))
              (block $d3d (loop $l3
                (br_if $d3d (i32.ge_u (local.get $i3) (local.get $d3)))
                (f32.store (local.get $py) (f32.load (i32.add (local.get $src) (i32.shl (i32.mul (local.get $i3) (local.get $s3)) (i32.const 2)))))
                (local.set $py (i32.add (local.get $py) (i32.const 4)))
                (local.set $i3 (i32.add (local.get $i3) (i32.const 1)))
                (br $l3)))))
          (local.set $i2 (i32.add (local.get $i2) (i32.const 1)))
          (br $l2)))
        (local.set $i1 (i32.add (local.get $i1) (i32.const 1)))
        (br $l1)))
      (local.set $i0 (i32.add (local.get $i0) (i32.const 1)))
      (br $l0))))

  ;; $transpose: dst (cols, rows) = src (rows, cols)ᵀ, in 4 x 4 blocks where possible (four
  ;; rows loaded as vectors, transposed with shuffles, stored as four columns), scalar at the
  ;; edges. Used by matmul to pack operands in the layout its kernel reads. The loop over
  ;; source rows is the inner one, so each destination row is written front to back: with
  ;; the other order, the four stores of a block land a power-of-two stride apart (rows x 4
  ;; bytes) in the same cache set, and a 2048-row transpose ran ~5x slower.
  (func $transpose (export "transpose") (param $src i32) (param $dst i32) (param $rows i32) (param $cols i32)
    (local $i i32) (local $j i32) (local $R4 i32) (local $C4 i32)
    (local $r0 v128) (local $r1 v128) (local $r2 v128) (local $r3 v128) (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local $ps i32) (local $pd i32) (local $rb i32) (local $cb i32)
    (local.set $R4 (i32.and (local.get $rows) (i32.const -4)))
    (local.set $C4 (i32.and (local.get $cols) (i32.const -4)))
    (local.set $cb (i32.shl (local.get $cols) (i32.const 2)))  ;; bytes per src row
    (local.set $rb (i32.shl (local.get $rows) (i32.const 2)))  ;; bytes per dst row
    (block $dj (loop $lj
      (br_if $dj (i32.ge_u (local.get $j) (local.get $C4)))
      (local.set $i (i32.const 0))
      (block $di (loop $li
        (br_if $di (i32.ge_u (local.get $i) (local.get $R4)))
        (local.set $ps (i32.add (local.get $src) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $cols)) (local.get $j)) (i32.const 2))))
        (local.set $r0 (v128.load (local.get $ps)))
        (local.set $r1 (v128.load (i32.add (local.get $ps) (local.get $cb))))
        (local.set $r2 (v128.load (i32.add (local.get $ps) (i32.shl (local.get $cb) (i32.const 1)))))
        (local.set $r3 (v128.load (i32.add (local.get $ps) (i32.mul (local.get $cb) (i32.const 3)))))
        ;; interleave pairs, then halves: column c of the block gathers lane c of each row
        (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $r0) (local.get $r1)))    ;; a0 b0 a1 b1
        (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $r0) (local.get $r1))) ;; a2 b2 a3 b3
        (local.set $t2 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $r2) (local.get $r3)))    ;; c0 d0 c1 d1
        (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $r2) (local.get $r3))) ;; c2 d2 c3 d3
        (local.set $pd (i32.add (local.get $dst) (i32.shl (i32.add (i32.mul (local.get $j) (local.get $rows)) (local.get $i)) (i32.const 2))))
        (v128.store (local.get $pd) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t2)))
        (v128.store (i32.add (local.get $pd) (local.get $rb)) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t2)))
        (v128.store (i32.add (local.get $pd) (i32.shl (local.get $rb) (i32.const 1))) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t1) (local.get $t3)))
        (v128.store (i32.add (local.get $pd) (i32.mul (local.get $rb) (i32.const 3))) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t1) (local.get $t3)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $li)))
      (local.set $j (i32.add (local.get $j) (i32.const 4)))
      (br $lj)))
    ;; edges: rows [R4, rows) x all columns, and rows [0, R4) x columns [C4, cols)
    (local.set $i (i32.const 0))
    (block $di (loop $li
      (br_if $di (i32.ge_u (local.get $i) (local.get $rows)))
      (local.set $j (if (result i32) (i32.lt_u (local.get $i) (local.get $R4)) (then (local.get $C4)) (else (i32.const 0))))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $cols)))
        (f32.store (i32.add (local.get $dst) (i32.shl (i32.add (i32.mul (local.get $j) (local.get $rows)) (local.get $i)) (i32.const 2)))
          (f32.load (i32.add (local.get $src) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $cols)) (local.get $j)) (i32.const 2)))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $lj)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $li))))

  ;; ---- zero: n bytes from y set to 0 ----
  ;; For every output that must start at zero (newFloat: accumulating kernels, the reference
  ;; loops' outputs). JavaScript's TypedArray.fill on a view of SHARED memory runs element by
  ;; element in V8 (measured ~0.1 GB/s, against memory.fill's memset); bulk memory does it in one
  ;; instruction.
  (func $zero (export "zero") (param $y i32) (param $n i32)
    (memory.fill (local.get $y) (i32.const 0) (local.get $n)))
