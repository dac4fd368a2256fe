;; ops-attention.wat: causal attention, forward and backward, in register tiles.
;; A piece of the ops module: scripts/build-wasm.ts splices it into kernels/cpu/ops.wat at its
;; `;; @include ops-attention.wat` line (one module, one ops.wasm; the header, the memory and the shared
;; helpers — $exp4, $hsum, $dot, $axpy, $rowmax, $expshift, ... — are in ops.wat).

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
