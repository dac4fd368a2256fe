;; ops.wat: the wasm backend's kernels other than matmul (src/backend/wasm.ts), in
;; WebAssembly text with 128-bit SIMD. Read matmul.wat first: it explains lanes, v128 loads
;; and horizontal sums. Each function here computes what a loop of src/backend/cpu.ts or
;; cpu-fused.ts computes (named beside it); test/wasm-backend.test.ts checks every one against
;; that reference on fresh random inputs.
;;
;; Memory. The module imports ONE shared memory, the same one matmul-shared.wasm imports and
;; every tensor of the wasm backend lives in (see src/backend/wasm-memory.ts). So a kernel
;; reads its inputs where they are and writes its output into a storage JS has already
;; allocated: no copy in or out. All pointers are BYTE offsets; all counts are ELEMENTS;
;; every float is float32.
;;
;; Vector loops and tails. A loop body handles four floats (one v128); the last n % 4 are
;; done by a scalar loop. Nothing assumes 16-byte alignment (v128.load does not need it).
;;
;; exp. WebAssembly has no exp instruction, so $exp4 computes it for four lanes at once:
;; e^x = 2^n * e^r with n = round(x / ln 2) and |r| <= ln 2 / 2, e^r by a degree-6
;; polynomial (the coefficients of the Cephes library's expf, relative error ~1e-7), and 2^n
;; made directly in the float's exponent bits. Softmax, cross-entropy, target log-probs,
;; sigmoid and attention use it; results agree with Math.exp to a few float32 ulps, not bit for bit.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; ---------------------------------------------------------------------------------------
  ;; exp
  ;; ---------------------------------------------------------------------------------------

  (func $exp4 (param $x v128) (result v128)
    (local $xc v128) (local $n v128) (local $r v128) (local $p v128) (local $pow2 v128)
    ;; clamp into the range where 2^n is a normal float (fixed up below)
    (local.set $xc (f32x4.max (f32x4.min (local.get $x) (v128.const f32x4 88 88 88 88))
                              (v128.const f32x4 -87 -87 -87 -87)))
    (local.set $n (f32x4.nearest (f32x4.mul (local.get $xc) (v128.const f32x4 1.44269504 1.44269504 1.44269504 1.44269504))))
    ;; r = x - n ln2, with ln2 split in two parts so n * part1 is exact (Cody and Waite)
    (local.set $r (f32x4.sub (local.get $xc) (f32x4.mul (local.get $n) (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375))))
    (local.set $r (f32x4.add (local.get $r) (f32x4.mul (local.get $n) (v128.const f32x4 2.12194440e-4 2.12194440e-4 2.12194440e-4 2.12194440e-4))))
    ;; p = ((((c6 r + c5) r + c4) r + c3) r + c2) r + c1) r^2 + r + 1  (Horner)
    (local.set $p (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))
    (local.set $p (f32x4.add (f32x4.add (f32x4.mul (local.get $p) (f32x4.mul (local.get $r) (local.get $r))) (local.get $r))
                             (v128.const f32x4 1 1 1 1)))
    ;; 2^n: the biased exponent n + 127 shifted into bits 23..30
    (local.set $pow2 (i32x4.shl (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (v128.const i32x4 127 127 127 127)) (i32.const 23)))
    (local.set $p (f32x4.mul (local.get $p) (local.get $pow2)))
    ;; outside the clamp: overflow to +inf, underflow to 0; NaN stays NaN
    (local.set $p (v128.bitselect (v128.const f32x4 inf inf inf inf) (local.get $p)
                    (f32x4.gt (local.get $x) (v128.const f32x4 88.7228 88.7228 88.7228 88.7228))))
    (local.set $p (v128.bitselect (v128.const f32x4 0 0 0 0) (local.get $p)
                    (f32x4.lt (local.get $x) (v128.const f32x4 -87.3365 -87.3365 -87.3365 -87.3365))))
    (v128.bitselect (local.get $x) (local.get $p) (f32x4.ne (local.get $x) (local.get $x))))

  ;; one float's exp, through the vector version (used on scalar tails)
  (func $exp1 (param $x f32) (result f32)
    (f32x4.extract_lane 0 (call $exp4 (f32x4.splat (local.get $x)))))

  ;; horizontal sum of four lanes
  (func $hsum (param $v v128) (result f32)
    (f32.add (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
             (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))

  ;; horizontal max of four lanes
  (func $hmax (param $v v128) (result f32)
    (f32.max (f32.max (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
             (f32.max (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))

  ;; SIMD dot product of two rows of n floats (n % 4 == 0 not required)
  (func $dot (param $a i32) (param $b i32) (param $n i32) (result f32)
    (local $i i32) (local $acc v128) (local $s f32) (local $n4 i32)
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n4)))
      (local.set $acc (f32x4.add (local.get $acc)
        (f32x4.mul (v128.load (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2))))
                   (v128.load (i32.add (local.get $b) (i32.shl (local.get $i) (i32.const 2)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (local.set $s (call $hsum (local.get $acc)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $s (f32.add (local.get $s)
        (f32.mul (f32.load (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2))))
                 (f32.load (i32.add (local.get $b) (i32.shl (local.get $i) (i32.const 2)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $s))

  ;; y[0:n] += alpha * x[0:n]  (axpy)
  (func $axpy (param $y i32) (param $alpha f32) (param $x i32) (param $n i32)
    (local $i i32) (local $av v128) (local $p i32) (local $n4 i32)
    (local.set $av (f32x4.splat (local.get $alpha)))
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n4)))
      (local.set $p (i32.add (local.get $y) (i32.shl (local.get $i) (i32.const 2))))
      (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p))
        (f32x4.mul (local.get $av) (v128.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $p (i32.add (local.get $y) (i32.shl (local.get $i) (i32.const 2))))
      (f32.store (local.get $p) (f32.add (f32.load (local.get $p))
        (f32.mul (local.get $alpha) (f32.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))

  ;; ---------------------------------------------------------------------------------------
  ;; elementwise (cpu.ts: unary, binary)
  ;; ---------------------------------------------------------------------------------------

  ;; The four arithmetic ops on four lanes / one float. op: 0 add, 1 sub, 2 mul, 3 div.
  (func $op4 (param $op i32) (param $a v128) (param $b v128) (result v128)
    (if (result v128) (i32.eqz (local.get $op)) (then (f32x4.add (local.get $a) (local.get $b)))
      (else (if (result v128) (i32.eq (local.get $op) (i32.const 1)) (then (f32x4.sub (local.get $a) (local.get $b)))
        (else (if (result v128) (i32.eq (local.get $op) (i32.const 2)) (then (f32x4.mul (local.get $a) (local.get $b)))
          (else (f32x4.div (local.get $a) (local.get $b)))))))))
  (func $op1 (param $op i32) (param $a f32) (param $b f32) (result f32)
    (f32x4.extract_lane 0 (call $op4 (local.get $op) (f32x4.splat (local.get $a)) (f32x4.splat (local.get $b)))))

  ;; $binary: y (R, C) = a op b, where each operand is read as a (R, C) matrix with a row
  ;; stride and a column stride of 0 or 1 (in elements). That covers, for either operand:
  ;;   same shape      row stride C, column stride 1
  ;;   row broadcast   row stride 0, column stride 1  (b (C) against a (R, C): a norm weight)
  ;;   column bcast    row stride 1, column stride 0  (b (R, 1): one value per row, splatted)
  ;;   scalar          row stride 0, column stride 0
  ;; so the JS side only classifies shapes and never computes an index per element.
  (func $binary (export "binary") (param $op i32)
        (param $a i32) (param $aRow i32) (param $aCol i32)
        (param $b i32) (param $bRow i32) (param $bCol i32)
        (param $y i32) (param $R i32) (param $C i32)
    (local $r i32) (local $j i32) (local $C4 i32)
    (local $pa i32) (local $pb i32) (local $py i32) (local $va v128) (local $vb v128)
    (local.set $C4 (i32.and (local.get $C) (i32.const -4)))
    (block $rows (loop $row
      (br_if $rows (i32.ge_u (local.get $r) (local.get $R)))
      (local.set $pa (i32.add (local.get $a) (i32.shl (i32.mul (local.get $r) (local.get $aRow)) (i32.const 2))))
      (local.set $pb (i32.add (local.get $b) (i32.shl (i32.mul (local.get $r) (local.get $bRow)) (i32.const 2))))
      (local.set $py (i32.add (local.get $y) (i32.shl (i32.mul (local.get $r) (local.get $C)) (i32.const 2))))
      ;; broadcast columns: the one value of this row, splatted once
      (local.set $va (v128.load32_splat (local.get $pa)))
      (local.set $vb (v128.load32_splat (local.get $pb)))
      (local.set $j (i32.const 0))
      ;; one vector loop per op, so each loop body is one arithmetic instruction (as cpu.ts
      ;; specialises its fast path per op); the column-stride tests always go the same way
      (block $done
        (block $div (block $mul (block $sub (block $add
          (br_table $add $sub $mul $div (local.get $op)))
        (block $cols_add (loop $col_add
          (br_if $cols_add (i32.ge_u (local.get $j) (local.get $C4)))
          (v128.store (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))
            (f32x4.add
              (if (result v128) (local.get $aCol) (then (v128.load (i32.add (local.get $pa) (i32.shl (local.get $j) (i32.const 2))))) (else (local.get $va)))
              (if (result v128) (local.get $bCol) (then (v128.load (i32.add (local.get $pb) (i32.shl (local.get $j) (i32.const 2))))) (else (local.get $vb)))))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))
          (br $col_add)))
          (br $done))
        (block $cols_sub (loop $col_sub
          (br_if $cols_sub (i32.ge_u (local.get $j) (local.get $C4)))
          (v128.store (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))
            (f32x4.sub
              (if (result v128) (local.get $aCol) (then (v128.load (i32.add (local.get $pa) (i32.shl (local.get $j) (i32.const 2))))) (else (local.get $va)))
              (if (result v128) (local.get $bCol) (then (v128.load (i32.add (local.get $pb) (i32.shl (local.get $j) (i32.const 2))))) (else (local.get $vb)))))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))
          (br $col_sub)))
          (br $done))
        (block $cols_mul (loop $col_mul
          (br_if $cols_mul (i32.ge_u (local.get $j) (local.get $C4)))
          (v128.store (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))
            (f32x4.mul
              (if (result v128) (local.get $aCol) (then (v128.load (i32.add (local.get $pa) (i32.shl (local.get $j) (i32.const 2))))) (else (local.get $va)))
              (if (result v128) (local.get $bCol) (then (v128.load (i32.add (local.get $pb) (i32.shl (local.get $j) (i32.const 2))))) (else (local.get $vb)))))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))
          (br $col_mul)))
          (br $done))
        (block $cols_div (loop $col_div
          (br_if $cols_div (i32.ge_u (local.get $j) (local.get $C4)))
          (v128.store (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))
            (f32x4.div
              (if (result v128) (local.get $aCol) (then (v128.load (i32.add (local.get $pa) (i32.shl (local.get $j) (i32.const 2))))) (else (local.get $va)))
              (if (result v128) (local.get $bCol) (then (v128.load (i32.add (local.get $pb) (i32.shl (local.get $j) (i32.const 2))))) (else (local.get $vb)))))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))
          (br $col_div)))
      )
      ;; the last C % 4 columns, one float at a time
      (block $cols (loop $col
        (br_if $cols (i32.ge_u (local.get $j) (local.get $C)))
        (f32.store (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))
          (call $op1 (local.get $op)
            (f32.load (i32.add (local.get $pa) (i32.shl (i32.mul (local.get $j) (local.get $aCol)) (i32.const 2))))
            (f32.load (i32.add (local.get $pb) (i32.shl (i32.mul (local.get $j) (local.get $bCol)) (i32.const 2))))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $col)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $row))))

  ;; $unary: y[i] = f(x[i]) for the ops with a SIMD form. op: 0 neg, 1 relu, 2 mulScalar,
  ;; 3 addScalar, 4 exp, 5 sigmoid = 1 / (1 + exp(-x)), 6 sqrt, 7 rsqrt = 1 / sqrt(x).
  ;; (log, tanh and powScalar stay in JS: Math.log etc.)
  (func $unary4 (param $op i32) (param $x v128) (param $p v128) (result v128)
    (block $b7 (block $b6 (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
      (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 (local.get $op)))
      (return (f32x4.neg (local.get $x))))
      (return (f32x4.max (local.get $x) (v128.const f32x4 0 0 0 0))))
      (return (f32x4.mul (local.get $x) (local.get $p))))
      (return (f32x4.add (local.get $x) (local.get $p))))
      (return (call $exp4 (local.get $x))))
      (return (f32x4.div (v128.const f32x4 1 1 1 1)
                (f32x4.add (v128.const f32x4 1 1 1 1) (call $exp4 (f32x4.neg (local.get $x)))))))
      (return (f32x4.sqrt (local.get $x))))
    (f32x4.div (v128.const f32x4 1 1 1 1) (f32x4.sqrt (local.get $x))))

  (func $unary (export "unary") (param $op i32) (param $x i32) (param $y i32) (param $n i32) (param $param f32)
    (local $i i32) (local $n4 i32) (local $p v128) (local $o i32)
    (local.set $p (f32x4.splat (local.get $param)))
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n4)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (v128.store (i32.add (local.get $y) (local.get $o))
        (call $unary4 (local.get $op) (v128.load (i32.add (local.get $x) (local.get $o))) (local.get $p)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (f32.store (i32.add (local.get $y) (local.get $o))
        (f32x4.extract_lane 0 (call $unary4 (local.get $op) (v128.load32_splat (i32.add (local.get $x) (local.get $o))) (local.get $p))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))

  ;; ---------------------------------------------------------------------------------------
  ;; reductions (cpu.ts: reduce). x is (outer, n, inner); y (outer, inner) = sum or max over n.
  ;; op: 0 sum, 1 max. With inner == 1 (the last axis) each output is a SIMD pass over a
  ;; contiguous row; otherwise the inner axis is the SIMD one: y[o, :] accumulates the n rows
  ;; x[o, k, :] four columns at a time.
  ;; max: like the reference, a NaN anywhere makes the result NaN (f32x4.max propagates NaN).
  ;; ---------------------------------------------------------------------------------------

  (func $reduce (export "reduce") (param $op i32) (param $x i32) (param $y i32) (param $outer i32) (param $n i32) (param $inner i32)
    (local $o i32) (local $k i32) (local $j i32) (local $n4 i32) (local $in4 i32)
    (local $px i32) (local $py i32) (local $acc v128) (local $s f32) (local $v f32) (local $rowb i32)
    (local.set $rowb (i32.shl (local.get $inner) (i32.const 2)))  ;; bytes per x[o, k, :]
    (block $outs (loop $out
      (br_if $outs (i32.ge_u (local.get $o) (local.get $outer)))
      (if (i32.eq (local.get $inner) (i32.const 1))
        (then
          ;; one contiguous row of n
          (local.set $px (i32.add (local.get $x) (i32.shl (i32.mul (local.get $o) (local.get $n)) (i32.const 2))))
          (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
          (local.set $acc (if (result v128) (local.get $op) (then (v128.const f32x4 -inf -inf -inf -inf)) (else (v128.const f32x4 0 0 0 0))))
          (local.set $k (i32.const 0))
          (block $d (loop $l
            (br_if $d (i32.ge_u (local.get $k) (local.get $n4)))
            (local.set $acc (if (result v128) (local.get $op)
              (then (f32x4.max (local.get $acc) (v128.load (i32.add (local.get $px) (i32.shl (local.get $k) (i32.const 2))))))
              (else (f32x4.add (local.get $acc) (v128.load (i32.add (local.get $px) (i32.shl (local.get $k) (i32.const 2))))))))
            (local.set $k (i32.add (local.get $k) (i32.const 4)))
            (br $l)))
          (local.set $s (if (result f32) (local.get $op) (then (call $hmax (local.get $acc))) (else (call $hsum (local.get $acc)))))
          (block $d (loop $l
            (br_if $d (i32.ge_u (local.get $k) (local.get $n)))
            (local.set $v (f32.load (i32.add (local.get $px) (i32.shl (local.get $k) (i32.const 2)))))
            (local.set $s (if (result f32) (local.get $op) (then (f32.max (local.get $s) (local.get $v))) (else (f32.add (local.get $s) (local.get $v)))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $l)))
          (f32.store (i32.add (local.get $y) (i32.shl (local.get $o) (i32.const 2))) (local.get $s)))
        (else
          ;; y[o, :] = first row, then combine each further row into it
          (local.set $py (i32.add (local.get $y) (i32.mul (local.get $o) (local.get $rowb))))
          (local.set $px (i32.add (local.get $x) (i32.mul (i32.mul (local.get $o) (local.get $n)) (local.get $rowb))))
          (memory.copy (local.get $py) (local.get $px) (local.get $rowb))
          (local.set $in4 (i32.and (local.get $inner) (i32.const -4)))
          (local.set $k (i32.const 1))
          (block $d (loop $l
            (br_if $d (i32.ge_u (local.get $k) (local.get $n)))
            (local.set $px (i32.add (local.get $px) (local.get $rowb)))
            (local.set $j (i32.const 0))
            (block $dj (loop $lj
              (br_if $dj (i32.ge_u (local.get $j) (local.get $in4)))
              (v128.store (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))
                (if (result v128) (local.get $op)
                  (then (f32x4.max (v128.load (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2))))
                                   (v128.load (i32.add (local.get $px) (i32.shl (local.get $j) (i32.const 2))))))
                  (else (f32x4.add (v128.load (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2))))
                                   (v128.load (i32.add (local.get $px) (i32.shl (local.get $j) (i32.const 2))))))))
              (local.set $j (i32.add (local.get $j) (i32.const 4)))
              (br $lj)))
            (block $dj (loop $lj
              (br_if $dj (i32.ge_u (local.get $j) (local.get $inner)))
              (local.set $v (f32.load (i32.add (local.get $px) (i32.shl (local.get $j) (i32.const 2)))))
              (local.set $s (f32.load (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))))
              (f32.store (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))
                (if (result f32) (local.get $op) (then (f32.max (local.get $s) (local.get $v))) (else (f32.add (local.get $s) (local.get $v)))))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br $lj)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $l)))))
      (local.set $o (i32.add (local.get $o) (i32.const 1)))
      (br $out))))

  ;; ---------------------------------------------------------------------------------------
  ;; RMSNorm (cpu-fused.ts: rmsnormForward / rmsnormBackward). x, y, dy, dx (R, C); w (C) or
  ;; 0 for no weight; rstd (R).
  ;; ---------------------------------------------------------------------------------------

  (func $rmsnorm_forward (export "rmsnorm_forward") (param $x i32) (param $w i32) (param $y i32) (param $rstd i32)
        (param $R i32) (param $C i32) (param $eps f32)
    (local $r i32) (local $j i32) (local $C4 i32) (local $px i32) (local $py i32) (local $rs f32) (local $rv v128) (local $wv f32)
    (local.set $C4 (i32.and (local.get $C) (i32.const -4)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $r) (local.get $R)))
      (local.set $px (i32.add (local.get $x) (i32.shl (i32.mul (local.get $r) (local.get $C)) (i32.const 2))))
      (local.set $py (i32.add (local.get $y) (i32.shl (i32.mul (local.get $r) (local.get $C)) (i32.const 2))))
      (local.set $rs (f32.div (f32.const 1)
        (f32.sqrt (f32.add (f32.div (call $dot (local.get $px) (local.get $px) (local.get $C)) (f32.convert_i32_u (local.get $C)))
                           (local.get $eps)))))
      (f32.store (i32.add (local.get $rstd) (i32.shl (local.get $r) (i32.const 2))) (local.get $rs))
      (local.set $rv (f32x4.splat (local.get $rs)))
      (local.set $j (i32.const 0))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $C4)))
        (v128.store (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))
          (f32x4.mul (f32x4.mul (v128.load (i32.add (local.get $px) (i32.shl (local.get $j) (i32.const 2)))) (local.get $rv))
            (if (result v128) (local.get $w) (then (v128.load (i32.add (local.get $w) (i32.shl (local.get $j) (i32.const 2))))) (else (v128.const f32x4 1 1 1 1)))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $lj)))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $C)))
        (local.set $wv (if (result f32) (local.get $w) (then (f32.load (i32.add (local.get $w) (i32.shl (local.get $j) (i32.const 2))))) (else (f32.const 1))))
        (f32.store (i32.add (local.get $py) (i32.shl (local.get $j) (i32.const 2)))
          (f32.mul (f32.mul (f32.load (i32.add (local.get $px) (i32.shl (local.get $j) (i32.const 2)))) (local.get $rs)) (local.get $wv)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $lj)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $l))))

  ;; with xhat = x rstd and g = dy w:  dx = rstd (g - xhat mean(g xhat));  dw += dy xhat.
  ;; dw must be zero on entry (JS allocates it zeroed); 0 = no weight.
  (func $rmsnorm_backward (export "rmsnorm_backward") (param $dy i32) (param $x i32) (param $w i32) (param $rstd i32)
        (param $dx i32) (param $dw i32) (param $R i32) (param $C i32)
    (local $r i32) (local $j i32) (local $C4 i32) (local $o i32) (local $rs f32) (local $rv v128)
    (local $acc v128) (local $dot f32) (local $mv v128) (local $g v128) (local $xh v128)
    (local $gs f32) (local $xs f32)
    (local.set $C4 (i32.and (local.get $C) (i32.const -4)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $r) (local.get $R)))
      (local.set $o (i32.shl (i32.mul (local.get $r) (local.get $C)) (i32.const 2)))
      (local.set $rs (f32.load (i32.add (local.get $rstd) (i32.shl (local.get $r) (i32.const 2)))))
      (local.set $rv (f32x4.splat (local.get $rs)))
      ;; pass 1: dot = sum_j g_j xhat_j
      (local.set $acc (v128.const f32x4 0 0 0 0))
      (local.set $j (i32.const 0))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $C4)))
        (local.set $g (f32x4.mul (v128.load (i32.add (i32.add (local.get $dy) (local.get $o)) (i32.shl (local.get $j) (i32.const 2))))
          (if (result v128) (local.get $w) (then (v128.load (i32.add (local.get $w) (i32.shl (local.get $j) (i32.const 2))))) (else (v128.const f32x4 1 1 1 1)))))
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $g)
          (f32x4.mul (v128.load (i32.add (i32.add (local.get $x) (local.get $o)) (i32.shl (local.get $j) (i32.const 2)))) (local.get $rv)))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $lj)))
      (local.set $dot (call $hsum (local.get $acc)))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $C)))
        (local.set $gs (f32.mul (f32.load (i32.add (i32.add (local.get $dy) (local.get $o)) (i32.shl (local.get $j) (i32.const 2))))
          (if (result f32) (local.get $w) (then (f32.load (i32.add (local.get $w) (i32.shl (local.get $j) (i32.const 2))))) (else (f32.const 1)))))
        (local.set $dot (f32.add (local.get $dot) (f32.mul (local.get $gs)
          (f32.mul (f32.load (i32.add (i32.add (local.get $x) (local.get $o)) (i32.shl (local.get $j) (i32.const 2)))) (local.get $rs)))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $lj)))
      (local.set $mv (f32x4.splat (f32.div (local.get $dot) (f32.convert_i32_u (local.get $C)))))
      ;; pass 2: dx = rstd (g - xhat mean); dw += dy xhat
      (local.set $j (i32.const 0))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $C4)))
        (local.set $xh (f32x4.mul (v128.load (i32.add (i32.add (local.get $x) (local.get $o)) (i32.shl (local.get $j) (i32.const 2)))) (local.get $rv)))
        (local.set $g (v128.load (i32.add (i32.add (local.get $dy) (local.get $o)) (i32.shl (local.get $j) (i32.const 2)))))
        (if (local.get $w) (then
          (v128.store (i32.add (local.get $dw) (i32.shl (local.get $j) (i32.const 2)))
            (f32x4.add (v128.load (i32.add (local.get $dw) (i32.shl (local.get $j) (i32.const 2)))) (f32x4.mul (local.get $g) (local.get $xh))))
          (local.set $g (f32x4.mul (local.get $g) (v128.load (i32.add (local.get $w) (i32.shl (local.get $j) (i32.const 2))))))))
        (v128.store (i32.add (i32.add (local.get $dx) (local.get $o)) (i32.shl (local.get $j) (i32.const 2)))
          (f32x4.mul (local.get $rv) (f32x4.sub (local.get $g) (f32x4.mul (local.get $xh) (local.get $mv)))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $lj)))
      (block $dj (loop $lj
        (br_if $dj (i32.ge_u (local.get $j) (local.get $C)))
        (local.set $xs (f32.mul (f32.load (i32.add (i32.add (local.get $x) (local.get $o)) (i32.shl (local.get $j) (i32.const 2)))) (local.get $rs)))
        (local.set $gs (f32.load (i32.add (i32.add (local.get $dy) (local.get $o)) (i32.shl (local.get $j) (i32.const 2)))))
        (if (local.get $w) (then
          (f32.store (i32.add (local.get $dw) (i32.shl (local.get $j) (i32.const 2)))
            (f32.add (f32.load (i32.add (local.get $dw) (i32.shl (local.get $j) (i32.const 2)))) (f32.mul (local.get $gs) (local.get $xs))))
          (local.set $gs (f32.mul (local.get $gs) (f32.load (i32.add (local.get $w) (i32.shl (local.get $j) (i32.const 2))))))))
        (f32.store (i32.add (i32.add (local.get $dx) (local.get $o)) (i32.shl (local.get $j) (i32.const 2)))
          (f32.mul (local.get $rs) (f32.sub (local.get $gs) (f32.mul (local.get $xs) (f32x4.extract_lane 0 (local.get $mv))))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $lj)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $l))))

  ;; ---------------------------------------------------------------------------------------
  ;; softmax over a row, in place helpers
  ;; ---------------------------------------------------------------------------------------

  ;; max of row[0:n]
  (func $rowmax (param $p i32) (param $n i32) (result f32)
    (local $k i32) (local $n4 i32) (local $acc v128) (local $m f32)
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (local.set $acc (v128.const f32x4 -inf -inf -inf -inf))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $k) (local.get $n4)))
      (local.set $acc (f32x4.max (local.get $acc) (v128.load (i32.add (local.get $p) (i32.shl (local.get $k) (i32.const 2))))))
      (local.set $k (i32.add (local.get $k) (i32.const 4)))
      (br $l)))
    (local.set $m (call $hmax (local.get $acc)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $k) (local.get $n)))
      (local.set $m (f32.max (local.get $m) (f32.load (i32.add (local.get $p) (i32.shl (local.get $k) (i32.const 2))))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $l)))
    (local.get $m))

  ;; dst[k] = exp(src[k] * scale - shift) for k < n; returns the sum of dst (dst may be src)
  (func $expshift (param $src i32) (param $dst i32) (param $n i32) (param $scale f32) (param $shift f32) (result f32)
    (local $k i32) (local $n4 i32) (local $acc v128) (local $e v128) (local $s f32) (local $es f32)
    (local $sv v128) (local $hv v128)
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (local.set $sv (f32x4.splat (local.get $scale)))
    (local.set $hv (f32x4.splat (local.get $shift)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $k) (local.get $n4)))
      (local.set $e (call $exp4 (f32x4.sub (f32x4.mul (v128.load (i32.add (local.get $src) (i32.shl (local.get $k) (i32.const 2)))) (local.get $sv))
                                           (local.get $hv))))
      (v128.store (i32.add (local.get $dst) (i32.shl (local.get $k) (i32.const 2))) (local.get $e))
      (local.set $acc (f32x4.add (local.get $acc) (local.get $e)))
      (local.set $k (i32.add (local.get $k) (i32.const 4)))
      (br $l)))
    (local.set $s (call $hsum (local.get $acc)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $k) (local.get $n)))
      (local.set $es (call $exp1 (f32.sub (f32.mul (f32.load (i32.add (local.get $src) (i32.shl (local.get $k) (i32.const 2)))) (local.get $scale))
                                          (local.get $shift))))
      (f32.store (i32.add (local.get $dst) (i32.shl (local.get $k) (i32.const 2))) (local.get $es))
      (local.set $s (f32.add (local.get $s) (local.get $es)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $l)))
    (local.get $s))

  ;; @include ops-loss.wat
  ;; @include ops-attention.wat
  ;; ---------------------------------------------------------------------------------------
  ;; SwiGLU (cpu-fused.ts: swigluForward / swigluBackward): the MLP's h = silu(g) u with
  ;; silu(g) = g sigmoid(g), over n elements. One pass instead of the composed graph's
  ;; sigmoid, two muls forward and seven ops backward (each a pass over memory, and two
  ;; intermediates kept for the backward). Each value is computed by the same float32
  ;; operations, in the same order, as the composed ops on the wasm backend (the unary
  ;; kernel's sigmoid, then mul), so fused and composed agree bit for bit.
  ;;   forward:  s = 1 / (1 + exp(-g));  h = (g s) u
  ;;   backward: du = dh (g s);  a = dh u;  dg = a s + (a g) (s ((-s) + 1))
  ;; (the backward's last line is the composed rules of mul(g, s) and sigmoid, written out)
  ;; ---------------------------------------------------------------------------------------

  (func $sigmoid4 (param $x v128) (result v128)
    (f32x4.div (v128.const f32x4 1 1 1 1) (f32x4.add (v128.const f32x4 1 1 1 1) (call $exp4 (f32x4.neg (local.get $x))))))

  (func $swiglu_forward (export "swiglu_forward") (param $g i32) (param $u i32) (param $y i32) (param $n i32)
    (local $i i32) (local $o i32) (local $gv v128)
    ;; four at a time; the last n % 4 through the same vector code on one lane
    (block $done (loop $l
      (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $n)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (local.set $gv (v128.load (i32.add (local.get $g) (local.get $o))))
      (v128.store (i32.add (local.get $y) (local.get $o))
        (f32x4.mul (f32x4.mul (local.get $gv) (call $sigmoid4 (local.get $gv))) (v128.load (i32.add (local.get $u) (local.get $o)))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (local.set $gv (v128.load32_splat (i32.add (local.get $g) (local.get $o))))
      (f32.store (i32.add (local.get $y) (local.get $o)) (f32x4.extract_lane 0
        (f32x4.mul (f32x4.mul (local.get $gv) (call $sigmoid4 (local.get $gv))) (v128.load32_splat (i32.add (local.get $u) (local.get $o))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))

  ;; dg and du for four lanes: writes du at $pdu and returns dg
  (func $swiglu_bwd4 (param $dh v128) (param $gv v128) (param $uv v128) (param $pdu i32) (param $lanes i32) (result v128)
    (local $s v128) (local $a v128)
    (local.set $s (call $sigmoid4 (local.get $gv)))
    (if (i32.eq (local.get $lanes) (i32.const 4))
      (then (v128.store (local.get $pdu) (f32x4.mul (local.get $dh) (f32x4.mul (local.get $gv) (local.get $s)))))
      (else (f32.store (local.get $pdu) (f32x4.extract_lane 0 (f32x4.mul (local.get $dh) (f32x4.mul (local.get $gv) (local.get $s)))))))
    (local.set $a (f32x4.mul (local.get $dh) (local.get $uv)))
    (f32x4.add (f32x4.mul (local.get $a) (local.get $s))
               (f32x4.mul (f32x4.mul (local.get $a) (local.get $gv))
                          (f32x4.mul (local.get $s) (f32x4.add (f32x4.neg (local.get $s)) (v128.const f32x4 1 1 1 1))))))

  (func $swiglu_backward (export "swiglu_backward") (param $dh i32) (param $g i32) (param $u i32) (param $dg i32) (param $du i32) (param $n i32)
    (local $i i32) (local $o i32)
    (block $done (loop $l
      (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $n)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (v128.store (i32.add (local.get $dg) (local.get $o))
        (call $swiglu_bwd4 (v128.load (i32.add (local.get $dh) (local.get $o))) (v128.load (i32.add (local.get $g) (local.get $o)))
          (v128.load (i32.add (local.get $u) (local.get $o))) (i32.add (local.get $du) (local.get $o)) (i32.const 4)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (f32.store (i32.add (local.get $dg) (local.get $o)) (f32x4.extract_lane 0
        (call $swiglu_bwd4 (v128.load32_splat (i32.add (local.get $dh) (local.get $o))) (v128.load32_splat (i32.add (local.get $g) (local.get $o)))
          (v128.load32_splat (i32.add (local.get $u) (local.get $o))) (i32.add (local.get $du) (local.get $o)) (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))

  ;; ---------------------------------------------------------------------------------------
  ;; RoPE, rotate-half layout (cpu-fused.ts: rope). x, y (R, T, HS) with R = batch x heads;
  ;; cos, sin (T, HS); half = HS / 2. With x1 = x[:half], x2 = x[half:]:
  ;;   forward:  y1 = x1 c1 + (-x2) s1;       y2 = x2 c2 + x1 s2
  ;;   inverse (the backward, the forward's exact adjoint for any tables):
  ;;             y1 = x1 c1 + x2 s2;          y2 = x2 c2 + -(x1 s1)
  ;; (c1 = cos[:half] etc.). The forward is the composed rope's mul, mul, add in the same
  ;; order, and the inverse the sums its backward accumulates (its other terms are exact
  ;; zeros), so both agree with the composed op bit for bit. Four at a time while four fit
  ;; in a half, then one.
  ;; ---------------------------------------------------------------------------------------

  (func $rope (export "rope") (param $x i32) (param $cos i32) (param $sin i32) (param $y i32) (param $R i32) (param $T i32) (param $HS i32) (param $inverse i32)
    (local $r i32) (local $t i32) (local $i i32) (local $half i32) (local $hb i32) (local $row i32) (local $tab i32)
    (local $p1 i32) (local $p2 i32) (local $c1 i32) (local $c2 i32) (local $s1 i32) (local $s2 i32) (local $y1 i32) (local $y2 i32)
    (local $a v128) (local $b v128)
    (local.set $half (i32.shr_u (local.get $HS) (i32.const 1)))
    (local.set $hb (i32.shl (local.get $half) (i32.const 2)))
    (block $dr (loop $lr
      (br_if $dr (i32.ge_u (local.get $r) (local.get $R)))
      (local.set $t (i32.const 0))
      (block $dt (loop $lt
        (br_if $dt (i32.ge_u (local.get $t) (local.get $T)))
        (local.set $row (i32.shl (i32.mul (i32.add (i32.mul (local.get $r) (local.get $T)) (local.get $t)) (local.get $HS)) (i32.const 2)))
        (local.set $tab (i32.shl (i32.mul (local.get $t) (local.get $HS)) (i32.const 2)))
        (local.set $i (i32.const 0))
        (block $di (loop $li
          (br_if $di (i32.ge_u (local.get $i) (local.get $half)))
          (local.set $p1 (i32.add (i32.add (local.get $x) (local.get $row)) (i32.shl (local.get $i) (i32.const 2))))
          (local.set $p2 (i32.add (local.get $p1) (local.get $hb)))
          (local.set $c1 (i32.add (i32.add (local.get $cos) (local.get $tab)) (i32.shl (local.get $i) (i32.const 2))))
          (local.set $c2 (i32.add (local.get $c1) (local.get $hb)))
          (local.set $s1 (i32.add (i32.add (local.get $sin) (local.get $tab)) (i32.shl (local.get $i) (i32.const 2))))
          (local.set $s2 (i32.add (local.get $s1) (local.get $hb)))
          (local.set $y1 (i32.add (i32.add (local.get $y) (local.get $row)) (i32.shl (local.get $i) (i32.const 2))))
          (local.set $y2 (i32.add (local.get $y1) (local.get $hb)))
          (if (i32.le_u (i32.add (local.get $i) (i32.const 4)) (local.get $half))
            (then
              (if (local.get $inverse)
                (then
                  (local.set $a (f32x4.add (f32x4.mul (v128.load (local.get $p1)) (v128.load (local.get $c1))) (f32x4.mul (v128.load (local.get $p2)) (v128.load (local.get $s2)))))
                  (local.set $b (f32x4.add (f32x4.mul (v128.load (local.get $p2)) (v128.load (local.get $c2))) (f32x4.neg (f32x4.mul (v128.load (local.get $p1)) (v128.load (local.get $s1)))))))
                (else
                  (local.set $a (f32x4.add (f32x4.mul (v128.load (local.get $p1)) (v128.load (local.get $c1))) (f32x4.mul (f32x4.neg (v128.load (local.get $p2))) (v128.load (local.get $s1)))))
                  (local.set $b (f32x4.add (f32x4.mul (v128.load (local.get $p2)) (v128.load (local.get $c2))) (f32x4.mul (v128.load (local.get $p1)) (v128.load (local.get $s2)))))))
              (v128.store (local.get $y1) (local.get $a))
              (v128.store (local.get $y2) (local.get $b))
              (local.set $i (i32.add (local.get $i) (i32.const 4))))
            (else
              (if (local.get $inverse)
                (then
                  (f32.store (local.get $y1) (f32.add (f32.mul (f32.load (local.get $p1)) (f32.load (local.get $c1))) (f32.mul (f32.load (local.get $p2)) (f32.load (local.get $s2)))))
                  (f32.store (local.get $y2) (f32.add (f32.mul (f32.load (local.get $p2)) (f32.load (local.get $c2))) (f32.neg (f32.mul (f32.load (local.get $p1)) (f32.load (local.get $s1)))))))
                (else
                  (f32.store (local.get $y1) (f32.add (f32.mul (f32.load (local.get $p1)) (f32.load (local.get $c1))) (f32.mul (f32.neg (f32.load (local.get $p2))) (f32.load (local.get $s1)))))
                  (f32.store (local.get $y2) (f32.add (f32.mul (f32.load (local.get $p2)) (f32.load (local.get $c2))) (f32.mul (f32.load (local.get $p1)) (f32.load (local.get $s2)))))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))))
          (br $li)))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $lt)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $lr))))

  ;; @include ops-adamw-copy.wat
)
