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

  ;; ---------------------------------------------------------------------------------------
  ;; softmax cross-entropy (cpu-fused.ts). logits (N, V), targets int32 (N) with -1 = ignore.
  ;; forward: lse (N); returns the SUM of (lse - logit[target]) over kept rows (JS divides by
  ;; the count and checks the targets' range before calling). The forward does not write into
  ;; the logits; it uses scratch (V floats) for the exponentials.
  ;; backward: dx (N, V) = scale (exp(x - lse) - onehot); 0 on ignored rows (written here: JS
  ;; does not clear dx, which for an LM head is N x V floats).
  ;; ---------------------------------------------------------------------------------------

  (func $cross_entropy_forward (export "cross_entropy_forward") (param $x i32) (param $t i32) (param $lse i32) (param $scratch i32)
        (param $N i32) (param $V i32) (result f64)
    (local $i i32) (local $row i32) (local $m f32) (local $l f32) (local $tgt i32) (local $total f64)
    (block $d (loop $lp
      (br_if $d (i32.ge_u (local.get $i) (local.get $N)))
      (local.set $row (i32.add (local.get $x) (i32.shl (i32.mul (local.get $i) (local.get $V)) (i32.const 2))))
      (local.set $m (call $rowmax (local.get $row) (local.get $V)))
      (local.set $l (f32.add (local.get $m)
        (f32.demote_f64 (call $log (f64.promote_f32 (call $expshift (local.get $row) (local.get $scratch) (local.get $V) (f32.const 1) (local.get $m)))))))
      (f32.store (i32.add (local.get $lse) (i32.shl (local.get $i) (i32.const 2))) (local.get $l))
      (local.set $tgt (i32.load (i32.add (local.get $t) (i32.shl (local.get $i) (i32.const 2)))))
      (if (i32.ge_s (local.get $tgt) (i32.const 0)) (then
        (local.set $total (f64.add (local.get $total) (f64.promote_f32
          (f32.sub (local.get $l) (f32.load (i32.add (local.get $row) (i32.shl (local.get $tgt) (i32.const 2))))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $lp)))
    (local.get $total))

  (func $cross_entropy_backward (export "cross_entropy_backward") (param $x i32) (param $t i32) (param $lse i32) (param $dx i32)
        (param $N i32) (param $V i32) (param $scale f32)
    (local $i i32) (local $k i32) (local $V4 i32) (local $row i32) (local $drow i32) (local $tgt i32)
    (local $lv v128) (local $sv v128) (local $p i32)
    (local.set $V4 (i32.and (local.get $V) (i32.const -4)))
    (local.set $sv (f32x4.splat (local.get $scale)))
    (block $d (loop $lp
      (br_if $d (i32.ge_u (local.get $i) (local.get $N)))
      (local.set $tgt (i32.load (i32.add (local.get $t) (i32.shl (local.get $i) (i32.const 2)))))
      (if (i32.ge_s (local.get $tgt) (i32.const 0)) (then
        (local.set $row (i32.add (local.get $x) (i32.shl (i32.mul (local.get $i) (local.get $V)) (i32.const 2))))
        (local.set $drow (i32.add (local.get $dx) (i32.shl (i32.mul (local.get $i) (local.get $V)) (i32.const 2))))
        (local.set $lv (f32x4.splat (f32.load (i32.add (local.get $lse) (i32.shl (local.get $i) (i32.const 2))))))
        (local.set $k (i32.const 0))
        (block $dk (loop $lk
          (br_if $dk (i32.ge_u (local.get $k) (local.get $V4)))
          (local.set $p (i32.shl (local.get $k) (i32.const 2)))
          (v128.store (i32.add (local.get $drow) (local.get $p))
            (f32x4.mul (local.get $sv) (call $exp4 (f32x4.sub (v128.load (i32.add (local.get $row) (local.get $p))) (local.get $lv)))))
          (local.set $k (i32.add (local.get $k) (i32.const 4)))
          (br $lk)))
        (block $dk (loop $lk
          (br_if $dk (i32.ge_u (local.get $k) (local.get $V)))
          (local.set $p (i32.shl (local.get $k) (i32.const 2)))
          (f32.store (i32.add (local.get $drow) (local.get $p))
            (f32.mul (local.get $scale) (call $exp1 (f32.sub (f32.load (i32.add (local.get $row) (local.get $p))) (f32x4.extract_lane 0 (local.get $lv))))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $lk)))
        ;; the one-hot term
        (local.set $p (i32.add (local.get $drow) (i32.shl (local.get $tgt) (i32.const 2))))
        (f32.store (local.get $p) (f32.sub (f32.load (local.get $p)) (local.get $scale))))
      (else
        ;; an ignored row: zero gradient (dx is not cleared beforehand)
        (memory.fill (i32.add (local.get $dx) (i32.shl (i32.mul (local.get $i) (local.get $V)) (i32.const 2))) (i32.const 0)
                     (i32.shl (local.get $V) (i32.const 2)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $lp))))

  ;; ---------------------------------------------------------------------------------------
  ;; log-probs of target tokens (cpu-fused.ts: targetLogprobsForward / Backward). logits
  ;; (M, V), targets int32 (M), every one in [0, V) (JS checks before calling).
  ;; forward: lse (M) and logp (M) = logit[target] - lse, with the exponentials in scratch
  ;; (V floats), as cross_entropy_forward.
  ;; backward: dx (M, V) = g_i (onehot - exp(x - lse)), g = dlogp (M); every element written.
  ;; ---------------------------------------------------------------------------------------

  (func $target_logprobs_forward (export "target_logprobs_forward") (param $x i32) (param $t i32) (param $lse i32) (param $logp i32)
        (param $scratch i32) (param $M i32) (param $V i32)
    (local $i i32) (local $row i32) (local $m f32) (local $l f32) (local $off i32)
    (block $d (loop $lp
      (br_if $d (i32.ge_u (local.get $i) (local.get $M)))
      (local.set $row (i32.add (local.get $x) (i32.shl (i32.mul (local.get $i) (local.get $V)) (i32.const 2))))
      (local.set $m (call $rowmax (local.get $row) (local.get $V)))
      (local.set $l (f32.add (local.get $m)
        (f32.demote_f64 (call $log (f64.promote_f32 (call $expshift (local.get $row) (local.get $scratch) (local.get $V) (f32.const 1) (local.get $m)))))))
      (local.set $off (i32.shl (local.get $i) (i32.const 2)))
      (f32.store (i32.add (local.get $lse) (local.get $off)) (local.get $l))
      (f32.store (i32.add (local.get $logp) (local.get $off))
        (f32.sub (f32.load (i32.add (local.get $row) (i32.shl (i32.load (i32.add (local.get $t) (local.get $off))) (i32.const 2)))) (local.get $l)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $lp))))

  (func $target_logprobs_backward (export "target_logprobs_backward") (param $x i32) (param $t i32) (param $lse i32) (param $g i32)
        (param $dx i32) (param $M i32) (param $V i32)
    (local $i i32) (local $k i32) (local $V4 i32) (local $row i32) (local $drow i32) (local $p i32)
    (local $gi f32) (local $li f32) (local $lv v128) (local $nv v128)
    (local.set $V4 (i32.and (local.get $V) (i32.const -4)))
    (block $d (loop $lp
      (br_if $d (i32.ge_u (local.get $i) (local.get $M)))
      (local.set $row (i32.add (local.get $x) (i32.shl (i32.mul (local.get $i) (local.get $V)) (i32.const 2))))
      (local.set $drow (i32.add (local.get $dx) (i32.shl (i32.mul (local.get $i) (local.get $V)) (i32.const 2))))
      (local.set $gi (f32.load (i32.add (local.get $g) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $li (f32.load (i32.add (local.get $lse) (i32.shl (local.get $i) (i32.const 2)))))
      (local.set $lv (f32x4.splat (local.get $li)))
      (local.set $nv (f32x4.splat (f32.neg (local.get $gi))))
      ;; dx = -g exp(x - lse), four at a time, then the tail
      (local.set $k (i32.const 0))
      (block $dk (loop $lk
        (br_if $dk (i32.ge_u (local.get $k) (local.get $V4)))
        (local.set $p (i32.shl (local.get $k) (i32.const 2)))
        (v128.store (i32.add (local.get $drow) (local.get $p))
          (f32x4.mul (local.get $nv) (call $exp4 (f32x4.sub (v128.load (i32.add (local.get $row) (local.get $p))) (local.get $lv)))))
        (local.set $k (i32.add (local.get $k) (i32.const 4)))
        (br $lk)))
      (block $dk (loop $lk
        (br_if $dk (i32.ge_u (local.get $k) (local.get $V)))
        (local.set $p (i32.shl (local.get $k) (i32.const 2)))
        (f32.store (i32.add (local.get $drow) (local.get $p))
          (f32.mul (f32.neg (local.get $gi)) (call $exp1 (f32.sub (f32.load (i32.add (local.get $row) (local.get $p))) (local.get $li)))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $lk)))
      ;; the one-hot term: + g at the target
      (local.set $p (i32.add (local.get $drow) (i32.shl (i32.load (i32.add (local.get $t) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 2))))
      (f32.store (local.get $p) (f32.add (f32.load (local.get $p)) (local.get $gi)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $lp))))

  ;; natural log in float64, for the per-row log-sum-exp only (one call per row, so a simple
  ;; method is fine): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log x = e ln2 + 2 atanh(s),
  ;; s = (m - 1) / (m + 1), atanh by its odd series (|s| < 0.172: 12 terms reach 1e-17).
  (func $log (param $x f64) (result f64)
    (local $e i32) (local $bits i64) (local $m f64) (local $s f64) (local $s2 f64) (local $term f64) (local $sum f64) (local $k i32)
    (if (f64.le (local.get $x) (f64.const 0)) (then
      (return (select (f64.const -inf) (f64.const nan) (f64.eq (local.get $x) (f64.const 0))))))
    (if (f64.eq (local.get $x) (f64.const inf)) (then (return (local.get $x))))
    (if (f64.ne (local.get $x) (local.get $x)) (then (return (local.get $x))))
    ;; split the exponent off (inputs here are sums of exps >= 1, so normal numbers)
    (local.set $bits (i64.reinterpret_f64 (local.get $x)))
    (local.set $e (i32.sub (i32.wrap_i64 (i64.shr_u (local.get $bits) (i64.const 52))) (i32.const 1023)))
    (local.set $m (f64.reinterpret_i64 (i64.or (i64.and (local.get $bits) (i64.const 0x000fffffffffffff)) (i64.const 0x3ff0000000000000))))
    (if (f64.gt (local.get $m) (f64.const 1.4142135623730951)) (then
      (local.set $m (f64.mul (local.get $m) (f64.const 0.5)))
      (local.set $e (i32.add (local.get $e) (i32.const 1)))))
    (local.set $s (f64.div (f64.sub (local.get $m) (f64.const 1)) (f64.add (local.get $m) (f64.const 1))))
    (local.set $s2 (f64.mul (local.get $s) (local.get $s)))
    (local.set $term (local.get $s))
    (local.set $k (i32.const 1))
    (block $d (loop $l
      (br_if $d (i32.gt_u (local.get $k) (i32.const 25)))
      (local.set $sum (f64.add (local.get $sum) (f64.div (local.get $term) (f64.convert_i32_u (local.get $k)))))
      (local.set $term (f64.mul (local.get $term) (local.get $s2)))
      (local.set $k (i32.add (local.get $k) (i32.const 2)))
      (br $l)))
    (f64.add (f64.mul (f64.convert_i32_s (local.get $e)) (f64.const 0.6931471805599453)) (f64.mul (f64.const 2) (local.get $sum))))

  ;; ---------------------------------------------------------------------------------------
  ;; causal attention (cpu-fused.ts: attentionForward / attentionBackward). q (B, NH, T, HS);
  ;; k, v (B, NKV, S, HS); query head h reads KV head h / G (G = NH / NKV query heads per KV
  ;; head); query t sees keys j <= t + (S - T) when causal. Scores are never stored as a
  ;; (T, S) matrix: the forward keeps one row of them in `scratch`, the backward one block of
  ;; ATT_BK = 64 keys for the rows of one KV head.
  ;;
  ;; The work is a loop over UNITS, one per (batch entry, KV head): the G query heads of a KV
  ;; head are adjacent in q, so a unit's G·T query rows are one contiguous (G·T, HS) block and
  ;; its keys and values one (S, HS) block each. (The wasm backend hands each thread a band of
  ;; units; a unit is computed by the same instructions whichever band it is in.)
  ;;
  ;; Speed. The reference's inner step, one dot product or one axpy of HS floats per
  ;; (query, key) pair, spends most of its time on loop overhead, horizontal sums and
  ;; re-loading/re-storing the row it accumulates into. Two helpers do the same sums in
  ;; register-sized tiles:
  ;;   $dot4      four dot products of one row against four rows (the row is loaded once per
  ;;              four multiply-adds, one horizontal reduction per four results);
  ;;   $acc_rows  y += sum_i c_i x_i over many rows x_i, with 16 floats of y held in four
  ;;              registers for the whole sum (one load of y per 16 floats per call, not per i).
  ;; Every sum runs over its terms in a fixed order, so the result does not depend on how the
  ;; units are split over threads; it differs from the reference loops by float32 rounding.
  ;; ---------------------------------------------------------------------------------------

  ;; four dot products: lane i = a[0:n] . (b + i bs)[0:n]  (bs: bytes between the four rows)
  (func $dot4 (param $a i32) (param $b i32) (param $bs i32) (param $n i32) (result v128)
    (local $i i32) (local $n4 i32) (local $o i32) (local $va v128)
    (local $b1 i32) (local $b2 i32) (local $b3 i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $s01 v128) (local $s23 v128) (local $r v128)
    (local $x f32)
    (local.set $b1 (i32.add (local.get $b) (local.get $bs)))
    (local.set $b2 (i32.add (local.get $b1) (local.get $bs)))
    (local.set $b3 (i32.add (local.get $b2) (local.get $bs)))
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n4)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (local.set $va (v128.load (i32.add (local.get $a) (local.get $o))))
      (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $va) (v128.load (i32.add (local.get $b) (local.get $o))))))
      (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $va) (v128.load (i32.add (local.get $b1) (local.get $o))))))
      (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $va) (v128.load (i32.add (local.get $b2) (local.get $o))))))
      (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $va) (v128.load (i32.add (local.get $b3) (local.get $o))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    ;; reduce the four accumulators at once: interleave pairs and add (lanes 0+2 and 1+3 of
    ;; two accumulators), then gather the halves and add again
    (local.set $s01 (f32x4.add (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a0) (local.get $a1))
                               (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a0) (local.get $a1))))
    (local.set $s23 (f32x4.add (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a2) (local.get $a3))
                               (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a2) (local.get $a3))))
    (local.set $r (f32x4.add (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $s01) (local.get $s23))
                             (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $s01) (local.get $s23))))
    ;; the last n % 4 elements, one at a time into each lane
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (local.set $x (f32.load (i32.add (local.get $a) (local.get $o))))
      (local.set $r (f32x4.add (local.get $r) (f32x4.mul (f32x4.splat (local.get $x))
        (f32x4.replace_lane 3 (f32x4.replace_lane 2 (f32x4.replace_lane 1
          (v128.load32_splat (i32.add (local.get $b) (local.get $o)))
          (f32.load (i32.add (local.get $b1) (local.get $o))))
          (f32.load (i32.add (local.get $b2) (local.get $o))))
          (f32.load (i32.add (local.get $b3) (local.get $o)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $r))

  ;; dst[j] = a . (b + j bs) for j < cnt (bs: bytes between rows of b): four at a time by $dot4
  (func $dots (param $dst i32) (param $a i32) (param $b i32) (param $bs i32) (param $cnt i32) (param $n i32)
    (local $j i32)
    (block $done (loop $l
      (br_if $done (i32.gt_u (i32.add (local.get $j) (i32.const 4)) (local.get $cnt)))
      (v128.store (i32.add (local.get $dst) (i32.shl (local.get $j) (i32.const 2)))
        (call $dot4 (local.get $a) (i32.add (local.get $b) (i32.mul (local.get $j) (local.get $bs))) (local.get $bs) (local.get $n)))
      (local.set $j (i32.add (local.get $j) (i32.const 4)))
      (br $l)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $j) (local.get $cnt)))
      (f32.store (i32.add (local.get $dst) (i32.shl (local.get $j) (i32.const 2)))
        (call $dot (local.get $a) (i32.add (local.get $b) (i32.mul (local.get $j) (local.get $bs))) (local.get $n)))
      (local.set $j (i32.add (local.get $j) (i32.const 1)))
      (br $l))))

  ;; y[0:n] += sum_{i < cnt} c_i x_i[0:n], with c_i the float at c + i cs and x_i the row at
  ;; x + i xs (cs, xs in bytes). Sixteen floats of y at a time stay in registers while i runs
  ;; over all cnt rows; then four at a time; then one.
  (func $acc_rows (param $y i32) (param $c i32) (param $cs i32) (param $x i32) (param $xs i32) (param $cnt i32) (param $n i32)
    (local $d i32) (local $i i32) (local $py i32) (local $pc i32) (local $px i32) (local $s v128)
    (local $y0 v128) (local $y1 v128) (local $y2 v128) (local $y3 v128) (local $ys f32)
    (block $done16 (loop $l16
      (br_if $done16 (i32.gt_u (i32.add (local.get $d) (i32.const 16)) (local.get $n)))
      (local.set $py (i32.add (local.get $y) (i32.shl (local.get $d) (i32.const 2))))
      (local.set $y0 (v128.load (local.get $py)))
      (local.set $y1 (v128.load offset=16 (local.get $py)))
      (local.set $y2 (v128.load offset=32 (local.get $py)))
      (local.set $y3 (v128.load offset=48 (local.get $py)))
      (local.set $pc (local.get $c))
      (local.set $px (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2))))
      (local.set $i (i32.const 0))
      (block $di (loop $li
        (br_if $di (i32.ge_u (local.get $i) (local.get $cnt)))
        (local.set $s (v128.load32_splat (local.get $pc)))
        (local.set $y0 (f32x4.add (local.get $y0) (f32x4.mul (local.get $s) (v128.load (local.get $px)))))
        (local.set $y1 (f32x4.add (local.get $y1) (f32x4.mul (local.get $s) (v128.load offset=16 (local.get $px)))))
        (local.set $y2 (f32x4.add (local.get $y2) (f32x4.mul (local.get $s) (v128.load offset=32 (local.get $px)))))
        (local.set $y3 (f32x4.add (local.get $y3) (f32x4.mul (local.get $s) (v128.load offset=48 (local.get $px)))))
        (local.set $pc (i32.add (local.get $pc) (local.get $cs)))
        (local.set $px (i32.add (local.get $px) (local.get $xs)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $li)))
      (v128.store (local.get $py) (local.get $y0))
      (v128.store offset=16 (local.get $py) (local.get $y1))
      (v128.store offset=32 (local.get $py) (local.get $y2))
      (v128.store offset=48 (local.get $py) (local.get $y3))
      (local.set $d (i32.add (local.get $d) (i32.const 16)))
      (br $l16)))
    (block $done4 (loop $l4
      (br_if $done4 (i32.gt_u (i32.add (local.get $d) (i32.const 4)) (local.get $n)))
      (local.set $py (i32.add (local.get $y) (i32.shl (local.get $d) (i32.const 2))))
      (local.set $y0 (v128.load (local.get $py)))
      (local.set $pc (local.get $c))
      (local.set $px (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2))))
      (local.set $i (i32.const 0))
      (block $di (loop $li
        (br_if $di (i32.ge_u (local.get $i) (local.get $cnt)))
        (local.set $y0 (f32x4.add (local.get $y0) (f32x4.mul (v128.load32_splat (local.get $pc)) (v128.load (local.get $px)))))
        (local.set $pc (i32.add (local.get $pc) (local.get $cs)))
        (local.set $px (i32.add (local.get $px) (local.get $xs)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $li)))
      (v128.store (local.get $py) (local.get $y0))
      (local.set $d (i32.add (local.get $d) (i32.const 4)))
      (br $l4)))
    (block $done1 (loop $l1
      (br_if $done1 (i32.ge_u (local.get $d) (local.get $n)))
      (local.set $py (i32.add (local.get $y) (i32.shl (local.get $d) (i32.const 2))))
      (local.set $ys (f32.load (local.get $py)))
      (local.set $pc (local.get $c))
      (local.set $px (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2))))
      (local.set $i (i32.const 0))
      (block $di (loop $li
        (br_if $di (i32.ge_u (local.get $i) (local.get $cnt)))
        (local.set $ys (f32.add (local.get $ys) (f32.mul (f32.load (local.get $pc)) (f32.load (local.get $px)))))
        (local.set $pc (i32.add (local.get $pc) (local.get $cs)))
        (local.set $px (i32.add (local.get $px) (local.get $xs)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $li)))
      (f32.store (local.get $py) (local.get $ys))
      (local.set $d (i32.add (local.get $d) (i32.const 1)))
      (br $l1))))

  ;; Forward, per query row r of a unit (t = r mod T): the scores s_j = q_r . k_j of its
  ;; visible keys into scratch (S floats) by $dots; p_j = exp(scale s_j - scale max) and
  ;; l = sum p_j by $expshift; out_r = (sum_j p_j v_j) / l by $acc_rows; lse_r = scale max + log l.
  (func $attention_forward (export "attention_forward") (param $q i32) (param $k i32) (param $v i32) (param $out i32) (param $lse i32)
        (param $scratch i32) (param $B i32) (param $NH i32) (param $NKV i32) (param $T i32) (param $S i32) (param $HS i32)
        (param $causal i32)
    (local $u i32) (local $units i32) (local $GT i32) (local $r i32) (local $cnt i32) (local $HSb i32) (local $scale f32)
    (local $qb i32) (local $kb i32) (local $vb i32) (local $ob i32) (local $lb i32) (local $orow i32) (local $m f32) (local $l f32)
    (local $d i32) (local $inv v128)
    (local.set $HSb (i32.shl (local.get $HS) (i32.const 2)))
    (local.set $scale (f32.div (f32.const 1) (f32.sqrt (f32.convert_i32_u (local.get $HS)))))
    (local.set $units (i32.mul (local.get $B) (local.get $NKV)))
    (local.set $GT (i32.mul (i32.div_u (local.get $NH) (local.get $NKV)) (local.get $T)))
    (block $du (loop $lu
      (br_if $du (i32.ge_u (local.get $u) (local.get $units)))
      (local.set $qb (i32.add (local.get $q) (i32.mul (i32.mul (local.get $u) (local.get $GT)) (local.get $HSb))))
      (local.set $ob (i32.add (local.get $out) (i32.mul (i32.mul (local.get $u) (local.get $GT)) (local.get $HSb))))
      (local.set $lb (i32.add (local.get $lse) (i32.shl (i32.mul (local.get $u) (local.get $GT)) (i32.const 2))))
      (local.set $kb (i32.add (local.get $k) (i32.mul (i32.mul (local.get $u) (local.get $S)) (local.get $HSb))))
      (local.set $vb (i32.add (local.get $v) (i32.mul (i32.mul (local.get $u) (local.get $S)) (local.get $HSb))))
      (local.set $r (i32.const 0))
      (block $dr (loop $lr
        (br_if $dr (i32.ge_u (local.get $r) (local.get $GT)))
        ;; visible keys: j <= t + (S - T), t = r mod T
        (local.set $cnt (if (result i32) (local.get $causal)
          (then (i32.add (i32.rem_u (local.get $r) (local.get $T)) (i32.add (i32.sub (local.get $S) (local.get $T)) (i32.const 1))))
          (else (local.get $S))))
        (call $dots (local.get $scratch) (i32.add (local.get $qb) (i32.mul (local.get $r) (local.get $HSb))) (local.get $kb) (local.get $HSb)
          (local.get $cnt) (local.get $HS))
        (local.set $m (f32.mul (local.get $scale) (call $rowmax (local.get $scratch) (local.get $cnt))))
        (local.set $l (call $expshift (local.get $scratch) (local.get $scratch) (local.get $cnt) (local.get $scale) (local.get $m)))
        (local.set $orow (i32.add (local.get $ob) (i32.mul (local.get $r) (local.get $HSb))))
        (memory.fill (local.get $orow) (i32.const 0) (local.get $HSb))
        (call $acc_rows (local.get $orow) (local.get $scratch) (i32.const 4) (local.get $vb) (local.get $HSb) (local.get $cnt) (local.get $HS))
        ;; out_r /= l (as a multiplication by 1 / l)
        (local.set $inv (f32x4.splat (f32.div (f32.const 1) (local.get $l))))
        (local.set $d (i32.const 0))
        (block $dd (loop $ld
          (br_if $dd (i32.gt_u (i32.add (local.get $d) (i32.const 4)) (local.get $HS)))
          (v128.store (i32.add (local.get $orow) (i32.shl (local.get $d) (i32.const 2)))
            (f32x4.mul (v128.load (i32.add (local.get $orow) (i32.shl (local.get $d) (i32.const 2)))) (local.get $inv)))
          (local.set $d (i32.add (local.get $d) (i32.const 4)))
          (br $ld)))
        (block $dd (loop $ld
          (br_if $dd (i32.ge_u (local.get $d) (local.get $HS)))
          (f32.store (i32.add (local.get $orow) (i32.shl (local.get $d) (i32.const 2)))
            (f32.mul (f32.load (i32.add (local.get $orow) (i32.shl (local.get $d) (i32.const 2)))) (f32x4.extract_lane 0 (local.get $inv))))
          (local.set $d (i32.add (local.get $d) (i32.const 1)))
          (br $ld)))
        (f32.store (i32.add (local.get $lb) (i32.shl (local.get $r) (i32.const 2)))
          (f32.add (local.get $m) (f32.demote_f64 (call $log (f64.promote_f32 (local.get $l))))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $lr)))
      (local.set $u (i32.add (local.get $u) (i32.const 1)))
      (br $lu))))

  ;; Backward. dq (B, NH, T, HS); dk, dv (B, NKV, S, HS), all zero on entry (JS allocates them
  ;; zeroed). With P_rj = exp(scale q_r.k_j - lse_r), D_r = dout_r . out_r and
  ;; dS_rj = scale P_rj (dout_r . v_j - D_r):
  ;;   dq_r = sum_j dS_rj k_j;   dk_j = sum_r dS_rj q_r;   dv_j = sum_r P_rj dout_r
  ;; (r over the unit's G·T query rows that see key j). Per unit, keys go in blocks of
  ;; ATT_BK = 64: first, per query row, P and dS against the block's visible keys into two
  ;; (G·T, 64) scratch tiles, and dq_r += its part; then, per key of the block, dk_j and dv_j
  ;; summed down the tiles' column j. So every gradient row is summed in registers by
  ;; $acc_rows. scratch: G·T (D) + 2 · G·T · 64 floats per thread (wasm.ts allocates it).
  (func $attention_backward (export "attention_backward") (param $dout i32) (param $q i32) (param $k i32) (param $v i32) (param $out i32) (param $lse i32)
        (param $dq i32) (param $dk i32) (param $dv i32)
        (param $scratch i32) (param $B i32) (param $NH i32) (param $NKV i32) (param $T i32) (param $S i32) (param $HS i32)
        (param $causal i32)
    (local $u i32) (local $units i32) (local $G i32) (local $GT i32) (local $r i32) (local $g i32) (local $j i32) (local $j0 i32) (local $j1 i32)
    (local $cnt i32) (local $t0 i32) (local $r0 i32) (local $HSb i32) (local $scale f32) (local $off i32)
    (local $ub i32) (local $kb i32) (local $Dp i32) (local $Pp i32) (local $Sp i32) (local $prow i32) (local $srow i32) (local $qrow i32)
    (local $i i32) (local $dv4 v128) (local $sv v128) (local $Dr f32)
    (local.set $HSb (i32.shl (local.get $HS) (i32.const 2)))
    (local.set $scale (f32.div (f32.const 1) (f32.sqrt (f32.convert_i32_u (local.get $HS)))))
    (local.set $sv (f32x4.splat (local.get $scale)))
    (local.set $units (i32.mul (local.get $B) (local.get $NKV)))
    (local.set $G (i32.div_u (local.get $NH) (local.get $NKV)))
    (local.set $GT (i32.mul (local.get $G) (local.get $T)))
    (local.set $off (i32.sub (local.get $S) (local.get $T)))
    (local.set $Dp (local.get $scratch))
    (local.set $Pp (i32.add (local.get $Dp) (i32.shl (local.get $GT) (i32.const 2))))
    (local.set $Sp (i32.add (local.get $Pp) (i32.shl (i32.mul (local.get $GT) (i32.const 64)) (i32.const 2))))
    (block $du (loop $lu
      (br_if $du (i32.ge_u (local.get $u) (local.get $units)))
      (local.set $ub (i32.mul (i32.mul (local.get $u) (local.get $GT)) (local.get $HSb)))  ;; byte offset of the unit's query rows
      (local.set $kb (i32.mul (i32.mul (local.get $u) (local.get $S)) (local.get $HSb)))   ;; ... and of its keys / values
      ;; D_r for every row of the unit
      (local.set $r (i32.const 0))
      (block $dr (loop $lr
        (br_if $dr (i32.ge_u (local.get $r) (local.get $GT)))
        (f32.store (i32.add (local.get $Dp) (i32.shl (local.get $r) (i32.const 2)))
          (call $dot (i32.add (i32.add (local.get $dout) (local.get $ub)) (i32.mul (local.get $r) (local.get $HSb)))
                     (i32.add (i32.add (local.get $out) (local.get $ub)) (i32.mul (local.get $r) (local.get $HSb))) (local.get $HS)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $lr)))
      (local.set $j0 (i32.const 0))
      (block $dblk (loop $lblk
        (br_if $dblk (i32.ge_u (local.get $j0) (local.get $S)))
        (local.set $j1 (select (local.get $S) (i32.add (local.get $j0) (i32.const 64)) (i32.lt_u (local.get $S) (i32.add (local.get $j0) (i32.const 64)))))
        ;; 1. per query row: P and dS against keys [j0, j0 + cnt) (its visible part of the block)
        (local.set $r (i32.const 0))
        (block $dr (loop $lr
          (br_if $dr (i32.ge_u (local.get $r) (local.get $GT)))
          ;; cnt = min(j1, last + 1) - j0, last = t + off (causal) or S - 1; may be <= 0
          (local.set $cnt (i32.sub
            (if (result i32) (local.get $causal)
              (then (select (local.get $j1) (i32.add (i32.add (i32.rem_u (local.get $r) (local.get $T)) (local.get $off)) (i32.const 1))
                      (i32.lt_s (local.get $j1) (i32.add (i32.add (i32.rem_u (local.get $r) (local.get $T)) (local.get $off)) (i32.const 1)))))
              (else (local.get $j1)))
            (local.get $j0)))
          (if (i32.gt_s (local.get $cnt) (i32.const 0)) (then
            (local.set $qrow (i32.add (local.get $ub) (i32.mul (local.get $r) (local.get $HSb))))
            (local.set $prow (i32.add (local.get $Pp) (i32.shl (i32.mul (local.get $r) (i32.const 64)) (i32.const 2))))
            (local.set $srow (i32.add (local.get $Sp) (i32.shl (i32.mul (local.get $r) (i32.const 64)) (i32.const 2))))
            ;; P_j = exp(scale q.k_j - lse_r)
            (call $dots (local.get $prow) (i32.add (local.get $q) (local.get $qrow))
              (i32.add (i32.add (local.get $k) (local.get $kb)) (i32.mul (local.get $j0) (local.get $HSb))) (local.get $HSb) (local.get $cnt) (local.get $HS))
            (drop (call $expshift (local.get $prow) (local.get $prow) (local.get $cnt) (local.get $scale)
              (f32.load (i32.add (local.get $lse) (i32.add (i32.shl (i32.mul (local.get $u) (local.get $GT)) (i32.const 2)) (i32.shl (local.get $r) (i32.const 2)))))))
            ;; dS_j = scale P_j (dout.v_j - D_r)
            (call $dots (local.get $srow) (i32.add (local.get $dout) (local.get $qrow))
              (i32.add (i32.add (local.get $v) (local.get $kb)) (i32.mul (local.get $j0) (local.get $HSb))) (local.get $HSb) (local.get $cnt) (local.get $HS))
            (local.set $Dr (f32.load (i32.add (local.get $Dp) (i32.shl (local.get $r) (i32.const 2)))))
            (local.set $dv4 (f32x4.splat (local.get $Dr)))
            (local.set $i (i32.const 0))
            (block $di (loop $li
              (br_if $di (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $cnt)))
              (v128.store (i32.add (local.get $srow) (i32.shl (local.get $i) (i32.const 2)))
                (f32x4.mul (local.get $sv) (f32x4.mul (v128.load (i32.add (local.get $prow) (i32.shl (local.get $i) (i32.const 2))))
                  (f32x4.sub (v128.load (i32.add (local.get $srow) (i32.shl (local.get $i) (i32.const 2)))) (local.get $dv4)))))
              (local.set $i (i32.add (local.get $i) (i32.const 4)))
              (br $li)))
            (block $di (loop $li
              (br_if $di (i32.ge_u (local.get $i) (local.get $cnt)))
              (f32.store (i32.add (local.get $srow) (i32.shl (local.get $i) (i32.const 2)))
                (f32.mul (local.get $scale) (f32.mul (f32.load (i32.add (local.get $prow) (i32.shl (local.get $i) (i32.const 2))))
                  (f32.sub (f32.load (i32.add (local.get $srow) (i32.shl (local.get $i) (i32.const 2)))) (local.get $Dr)))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $li)))
            ;; dq_r += sum_j dS_j k_j
            (call $acc_rows (i32.add (local.get $dq) (local.get $qrow)) (local.get $srow) (i32.const 4)
              (i32.add (i32.add (local.get $k) (local.get $kb)) (i32.mul (local.get $j0) (local.get $HSb))) (local.get $HSb) (local.get $cnt) (local.get $HS))))
          (local.set $r (i32.add (local.get $r) (i32.const 1)))
          (br $lr)))
        ;; 2. per key j of the block: dk_j += sum_r dS_rj q_r, dv_j += sum_r P_rj dout_r over
        ;; the rows that see it: per head g, t from max(0, j - off) (causal) to T
        (local.set $j (local.get $j0))
        (block $dj (loop $lj
          (br_if $dj (i32.ge_u (local.get $j) (local.get $j1)))
          (local.set $t0 (if (result i32) (i32.and (local.get $causal) (i32.gt_s (i32.sub (local.get $j) (local.get $off)) (i32.const 0)))
            (then (i32.sub (local.get $j) (local.get $off))) (else (i32.const 0))))
          (if (i32.lt_s (local.get $t0) (local.get $T)) (then
            (local.set $g (i32.const 0))
            (block $dg (loop $lg
              (br_if $dg (i32.ge_u (local.get $g) (local.get $G)))
              (local.set $r0 (i32.add (i32.mul (local.get $g) (local.get $T)) (local.get $t0)))
              (call $acc_rows (i32.add (i32.add (local.get $dk) (local.get $kb)) (i32.mul (local.get $j) (local.get $HSb)))
                (i32.add (local.get $Sp) (i32.shl (i32.add (i32.mul (local.get $r0) (i32.const 64)) (i32.sub (local.get $j) (local.get $j0))) (i32.const 2)))
                (i32.const 256)
                (i32.add (i32.add (local.get $q) (local.get $ub)) (i32.mul (local.get $r0) (local.get $HSb))) (local.get $HSb)
                (i32.sub (local.get $T) (local.get $t0)) (local.get $HS))
              (call $acc_rows (i32.add (i32.add (local.get $dv) (local.get $kb)) (i32.mul (local.get $j) (local.get $HSb)))
                (i32.add (local.get $Pp) (i32.shl (i32.add (i32.mul (local.get $r0) (i32.const 64)) (i32.sub (local.get $j) (local.get $j0))) (i32.const 2)))
                (i32.const 256)
                (i32.add (i32.add (local.get $dout) (local.get $ub)) (i32.mul (local.get $r0) (local.get $HSb))) (local.get $HSb)
                (i32.sub (local.get $T) (local.get $t0)) (local.get $HS))
              (local.set $g (i32.add (local.get $g) (i32.const 1)))
              (br $lg)))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $lj)))
        (local.set $j0 (local.get $j1))
        (br $lblk)))
      (local.set $u (i32.add (local.get $u) (i32.const 1)))
      (br $lu))))

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
)
