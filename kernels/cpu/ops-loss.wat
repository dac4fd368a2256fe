;; ops-loss.wat: softmax cross-entropy and target log-probs (forward and backward).
;; A piece of the ops module: scripts/build-wasm.ts splices it into kernels/cpu/ops.wat at its
;; `;; @include ops-loss.wat` line (one module, one ops.wasm; the header, the memory and the shared
;; helpers — $exp4, $hsum, $dot, $axpy, $rowmax, $expshift, ... — are in ops.wat).

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
