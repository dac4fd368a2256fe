// Attention split over the worker threads (src/backend/wasm.ts: attentionForward/Backward):
// bands of (batch entry, KV head) units, one kernel call per band on offset pointers.
//
// Checked two ways on random shapes (grouped-query, S > T as with a KV cache, HS not a
// multiple of 4, causal and not):
//   - 2 and 3 threads against 1, bit for bit: each unit is computed by the same code in the
//     same order whatever band it falls in, and bands write disjoint memory, so any difference
//     is a bug (a unit skipped, computed twice, or with another unit's pointers), not rounding;
//   - 2 threads against the plain-loop reference (cpu-fused.ts) with the tolerances of
//     test/wasm-backend.test.ts (float32 rounding compounded over a row of S terms and the
//     polynomial exp: atol 1e-5, rtol 1e-4, far below a wrong index or a missing term).
// The one-thread kernels' float64 finite-difference gradient check is in test/grad.test.ts
// (attention's composed definition) and their parity with the reference in wasm-backend.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Storage } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { cpuFused } from '../src/backend/cpu-fused.ts';
import type { AttentionShape } from '../src/backend/fused.ts';
import { THREADS_MIN_MACS, type WasmBackend, createWasmBackend } from '../src/backend/wasm.ts';
import * as T from '../src/tensor/index.ts';

const rng = new T.Rng(4242);
const f32 = (s: Storage) => s as unknown as Float32Array;
const bits = (s: Storage) => Buffer.from(f32(s).buffer, f32(s).byteOffset, f32(s).byteLength);

describe('attention over threads', () => {
  let w1: WasmBackend, w2: WasmBackend, w3: WasmBackend;
  beforeAll(async () => {
    [w1, w2, w3] = await Promise.all([createWasmBackend({ threads: 1 }), createWasmBackend({ threads: 2 }), createWasmBackend({ threads: 3 })]);
  });
  afterAll(() => {
    for (const w of [w1, w2, w3]) w.destroy();
  });

  it('16 random shapes: 2 and 3 threads give the 1-thread bytes, forward and backward; 2 threads match the reference', () => {
    let splitCases = 0;
    for (let it = 0; it < 16; it++) {
      const NKV = 1 + rng.int(3), G = 1 + rng.int(3), B = 1 + rng.int(4), HS = 4 + rng.int(24);
      const T0 = 24 + rng.int(24), S = T0 + (rng.uniform() < 0.3 ? rng.int(12) : 0);
      const s: AttentionShape = { B, NH: NKV * G, NKV, T: T0, S, HS, causal: rng.uniform() < 0.8 };
      const q = rng.normalArray(B * s.NH * T0 * HS, 1), k = rng.normalArray(B * NKV * S * HS, 1), v = rng.normalArray(B * NKV * S * HS, 1);
      const dout = rng.normalArray(q.length, 1);
      const before = w2.threadPool.jobs;
      const outs = [w1, w2, w3].map((w) => {
        const up = (x: Float32Array) => w.upload(x, 'float32');
        const f = w.attentionForward(up(q), up(k), up(v), s);
        const b = w.attentionBackward(up(dout), up(q), up(k), up(v), f.out, f.lse, s);
        return { ...f, ...b };
      });
      const units = B * NKV, work = G * T0 * S * HS * 2;
      if (units >= 2 && units * work >= THREADS_MIN_MACS) {
        splitCases++;
        expect(w2.threadPool.jobs - before, JSON.stringify(s)).toBe(2); // forward and backward both split
      } else expect(w2.threadPool.jobs - before).toBe(0);
      for (const name of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
        for (const t of [1, 2]) expect(bits(outs[t][name]).equals(bits(outs[0][name])), `${name}, ${t + 1} threads, ${JSON.stringify(s)}`).toBe(true);
      }
      // and against the reference loops
      const cup = (x: Float32Array) => cpu.upload(x, 'float32');
      const r = cpuFused.attentionForward(cup(q), cup(k), cup(v), s);
      const rb = cpuFused.attentionBackward(cup(dout), cup(q), cup(k), cup(v), r.out, r.lse, s);
      const ref = { ...r, ...rb };
      for (const name of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
        const got = f32(outs[1][name]), want = f32(ref[name]);
        for (let i = 0; i < want.length; i++) {
          if (!(Math.abs(got[i] - want[i]) <= 1e-5 + 1e-4 * Math.abs(want[i]))) expect.fail(`${name}[${i}] ${got[i]} vs ${want[i]}, ${JSON.stringify(s)}`);
        }
      }
    }
    expect(splitCases).toBeGreaterThan(4); // most shapes really took the threaded path
  });
});
