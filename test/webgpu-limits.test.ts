// The WebGPU backend with its buffer limits lowered (createWebGPUBackend({ limits })), so that
// tensors of a few KiB are "above the binding limit" and every op takes the path a real GPU
// takes for a (B·T, V) logits tensor or a big embedding: bands of rows bound as aligned
// windows or through scratch copies, blocked matmul, partial reductions (webgpu-split.ts).
// Each op is compared with the CPU backend on fresh random inputs, with the tolerance the
// unsplit parity tests use for it (test/webgpu.test.ts, test/webgpu-fused.test.ts) and the
// reason; then a whole model step; then the one-line errors when splitting is impossible.
//
// The limit: 4096 bytes = 1024 float32 per binding, with the adapter's 256-byte offset
// alignment, so band starts are sometimes aligned (bound in place) and sometimes not (copied).
// Each test also checks that the op really ran in more than one dispatch.
//
// Skips only when no WebGPU adapter can be created AND MINICHAT_REQUIRE_WEBGPU is unset.
import { afterAll, describe, expect, it } from 'vitest';
import { type HostArray, type MatmulParams, type Storage, sizeOf } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { cpuFused } from '../src/backend/cpu-fused.ts';
import type { AttentionShape } from '../src/backend/fused.ts';
import { type WebGPUBackend, createWebGPUBackend } from '../src/backend/webgpu.ts';
import { UserError } from '../src/util/errors.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import { buildOptimizer } from '../src/optim/index.ts';
import { BatchLoader } from '../src/data/loader.ts';
import { Trainer, languageModelLoss } from '../src/train/trainer.ts';
import * as T from '../src/tensor/index.ts';
import { matmulCase } from './gpu-device.ts';

const LIMIT = 4096; // bytes per binding: 1024 values

async function lowered(limits: Record<string, number>): Promise<WebGPUBackend | null> {
  try {
    return await createWebGPUBackend({ limits });
  } catch (e) {
    if (process.env.MINICHAT_REQUIRE_WEBGPU || e instanceof UserError && /limits\./.test(e.message)) throw e;
    console.warn(`webgpu limits tests skipped: ${(e as Error).message}`);
    return null;
  }
}
const gpu = await lowered({ maxStorageBufferBindingSize: LIMIT });
afterAll(() => {
  T.setDefaultBackend(cpu);
  gpu?.destroy();
});

const U = 2 ** -24; // float32 unit roundoff
const rng = new T.Rng(2024);
const randn = (n: number, std = 1) => rng.normalArray(n, std);
const ints = (n: number, V: number) => Array.from({ length: n }, () => rng.int(V));
const up = (d: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => gpu!.upload(d, dtype);
const cup = (d: ArrayLike<number>, dtype: 'float32' | 'int32' = 'float32') => cpu.upload(d, dtype);
const read = (s: Storage) => gpu!.read(s, 'float32') as Promise<Float32Array>;
const host = (s: Storage) => s as unknown as Float32Array;
const abs = (x: ArrayLike<number>) => Float32Array.from(x, Math.abs);

/** |got - want| <= atol + rtol |want| (or <= bound[i]) everywhere; reports the worst element. */
function expectClose(got: HostArray, want: HostArray, tol: { atol?: number; rtol?: number; bound?: ArrayLike<number> }, what: string) {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = -1, excess = 0;
  for (let i = 0; i < want.length; i++) {
    const allowed = tol.bound ? tol.bound[i] : (tol.atol ?? 0) + (tol.rtol ?? 0) * Math.abs(want[i]);
    const e = Math.abs(got[i] - want[i]) - allowed;
    if (!(e <= 0) && (worst < 0 || e > excess || Number.isNaN(e))) [worst, excess] = [i, e];
  }
  if (worst >= 0) expect.fail(`${what}: element ${worst}: webgpu ${got[worst]} vs cpu ${want[worst]}`);
}

/** Run `f` and check that it made more than one dispatch: the op was split. */
function split<R>(f: () => R, what: string): R {
  const before = gpu!.stats.dispatches;
  const r = f();
  expect(gpu!.stats.dispatches - before, `${what}: dispatches`).toBeGreaterThan(1);
  return r;
}

describe.skipIf(!gpu)('webgpu limits option', () => {
  it('refuses limits looser than the adapter, unknown names and bad alignments, in one line', async () => {
    const real = await createWebGPUBackend();
    const lim = real.limits.maxStorageBufferBindingSize, align = real.limits.minStorageBufferOffsetAlignment;
    real.destroy();
    const bad: [Record<string, number>, RegExp][] = [
      [{ maxStorageBufferBindingSize: lim * 2 }, /is above this adapter's .*only be lowered/],
      [{ maxBufferSize: 100 }, /below the 1024 bytes/],
      [{ maxComputeWorkgroupSizeX: 64 }, /cannot be set/],
      [{ minStorageBufferOffsetAlignment: align * 3 }, /power of two no smaller/],
      [{ minStorageBufferOffsetAlignment: align / 2 }, /power of two no smaller/],
    ];
    for (const [limits, msg] of bad) {
      const e = await createWebGPUBackend({ limits }).then(() => null, (x: unknown) => x);
      expect(e, JSON.stringify(limits)).toBeInstanceOf(UserError);
      expect((e as Error).message).toMatch(msg);
      expect((e as Error).message).not.toContain('\n');
    }
  });

  it('is what the backend works to', () => {
    expect(gpu!.limits.maxStorageBufferBindingSize).toBe(LIMIT);
    expect(gpu!.limits.maxBufferSize).toBeGreaterThan(LIMIT); // the adapter's own
  });
});

describe.skipIf(!gpu)('webgpu ops with a 4 KiB binding limit match the cpu', () => {
  it('upload, zeros and read of tensors above the binding limit (no binding involved): exact', async () => {
    const x = randn(5000), ids = ints(3000, 1 << 20);
    expectClose(await read(up(x)), Float32Array.from(x), {}, 'float32');
    expect(Array.from(await gpu!.read(up(ids, 'int32'), 'int32'))).toEqual(ids);
    expect((await read(gpu!.zeros(4099, 'float32'))).every((v) => v === 0)).toBe(true);
  });

  it('elementwise ops, flat and broadcasting along every dim: exact (one rounding each, as on the cpu)', async () => {
    const x = randn(3001);
    expectClose(await read(split(() => gpu!.unary('neg', up(x), 0), 'neg')), host(cpu.unary('neg', cup(x), 0)), {}, 'neg');
    expectClose(await read(gpu!.unary('mulScalar', up(x), 0.5)), host(cpu.unary('mulScalar', cup(x), 0.5)), {}, 'mulScalar');
    const y = randn(3001);
    expectClose(await read(split(() => gpu!.binary('mul', up(x), [3001], up(y), [3001], [3001]), 'mul')), host(cpu.binary('mul', cup(x), [3001], cup(y), [3001], [3001])), {}, 'mul same shapes');
    expectClose(await read(gpu!.binary('sub', up(x), [3001], up([0.25]), [1], [3001])), host(cpu.binary('sub', cup(x), [3001], cup([0.25]), [1], [3001])), {}, 'sub scalar');
    // (N, V) against (N, 1), (1, V), and a 3-D case whose leading slab does not fit either:
    // (2, 700, 3) + (1, 700, 1) goes one dim-0 index at a time, then bands along dim 1
    const cases: [number[], number[]][] = [[[70, 50], [70, 1]], [[70, 50], [1, 50]], [[1, 50], [70, 50]], [[2, 700, 3], [1, 700, 1]], [[5, 1, 300], [5, 7, 1]]];
    for (const [as, bs] of cases) {
      const os = as.map((d, i) => Math.max(d, bs[i]));
      const a = randn(sizeOf(as)), b = randn(sizeOf(bs));
      const got = split(() => gpu!.binary('add', up(a), as, up(b), bs, os), `add ${as} ${bs}`);
      expectClose(await read(got), host(cpu.binary('add', cup(a), as, cup(b), bs, os)), {}, `add [${as}] [${bs}]`);
    }
    const c = Array.from({ length: 70 * 50 }, () => (rng.uniform() < 0.5 ? 1 : 0));
    const a = randn(70), b = randn(50);
    const w = split(() => gpu!.where(up(c), [70, 50], up(a), [70, 1], up(b), [1, 50], [70, 50]), 'where');
    expectClose(await read(w), host(cpu.where(cup(c), [70, 50], cup(a), [70, 1], cup(b), [1, 50], [70, 50])), {}, 'where');
    const e = split(() => gpu!.expand(up(a), [70, 1], [70, 50]), 'expand');
    expectClose(await read(e), host(cpu.expand(cup(a), [70, 1], [70, 50])), {}, 'expand');
  });

  it('reductions: bands of slabs, and partial reductions over an axis longer than a binding', async () => {
    for (const [shape, axis] of [[[80, 40], 1], [[80, 40], 0], [[3000], 0], [[3, 900, 2], 1], [[2, 30, 50], 2]] as [number[], number][]) {
      const x = randn(sizeOf(shape)), n = shape[axis];
      for (const op of ['sum', 'max'] as const) {
        const got = split(() => gpu!.reduce(op, up(x), shape, axis), `${op} ${shape} ${axis}`);
        const want = host(cpu.reduce(op, cup(x), shape, axis));
        // a sum of n terms in another order: n u sum|x| per output; max is exact
        const bound = op === 'sum' ? host(cpu.reduce('sum', cup(abs(x)), shape, axis)).map((s) => 2 * n * U * s) : new Float32Array(want.length);
        expectClose(await read(got), want, { bound }, `${op} [${shape}] axis ${axis}`);
      }
    }
  });

  /** One matmul on both backends; tolerance (K + 2) u (|A| |B|)_ij per element, doubled (as in webgpu.test.ts). */
  async function checkMatmul(aShape: number[], bShape: number[], transA: boolean, transB: boolean) {
    const c = matmulCase(cpu, randn, aShape, bShape, transA, transB);
    expectClose(await read(split(() => gpu!.matmul(up(c.a), up(c.b), c.p), c.what)), c.want, { bound: c.bound }, c.what);
  }


  it('matmul in blocks (forward x Wᵀ, backward dY W and dYᵀ x layouts, batched, a shared weight)', async () => {
    // an lm-head-like product: x (40, 24) @ W (90, 24)ᵀ -> (40, 90); W, the output and both
    // gradients are above the limit; K is split when A's rows are too long
    const [M, K, N] = [40, 24, 90];
    for (const transA of [false, true]) {
      for (const transB of [false, true]) await checkMatmul(transA ? [K, M] : [M, K], transB ? [N, K] : [K, N], transA, transB);
    }
    await checkMatmul([37, 70], [70, 33], false, false); // ragged, every operand above the limit
    await checkMatmul([3, 20, 30], [3, 30, 40], false, false); // a batch, each matrix fits alone
    await checkMatmul([2, 40, 30], [30, 50], false, false); // a shared 2-D weight
    await checkMatmul([1, 2000], [2000, 3], false, false); // K alone above the limit: partial sums over K
  });

  it('layout copies: permutes (2-D transpose, attention heads, a slab above the limit), slice, pad, concat, writeSlice: exact', async () => {
    for (const [shape, perm] of [[[40, 70], [1, 0]], [[2, 16, 4, 9], [0, 2, 1, 3]], [[1, 30, 5, 10], [0, 2, 1, 3]], [[3, 40, 30], [2, 1, 0]]] as [number[], number[]][]) {
      const x = randn(sizeOf(shape));
      expectClose(await read(gpu!.permute(up(x), shape, perm)), host(cpu.permute(cup(x), shape, perm)), {}, `permute [${shape}] [${perm}]`);
    }
    const x = randn(30 * 50), shape = [30, 50];
    // few outer rows: one copyBufferToBuffer per row, no kernel
    expectClose(await read(gpu!.slice(up(x), shape, 1, 7, 45)), host(cpu.slice(cup(x), shape, 1, 7, 45)), {}, 'slice axis 1');
    expectClose(await read(gpu!.slice(up(x), shape, 0, 3, 29)), host(cpu.slice(cup(x), shape, 0, 3, 29)), {}, 'slice axis 0');
    expectClose(await read(gpu!.pad(up(x), shape, 1, 2, 5)), host(cpu.pad(cup(x), shape, 1, 2, 5)), {}, 'pad axis 1');
    const z = randn(30 * 20);
    expectClose(await read(gpu!.concat([up(x), up(z)], [shape, [30, 20]], 1)), host(cpu.concat([cup(x), cup(z)], [shape, [30, 20]], 1)), {}, 'concat axis 1');
    const big = randn(100 * 30), dst = up(big), cdst = cup(big), src = randn(100 * 4);
    gpu!.writeSlice(dst, [100, 30], up(src), [100, 4], 1, 11);
    cpu.writeSlice(cdst, [100, 30], cup(src), [100, 4], 1, 11);
    expectClose(await read(dst), host(cdst), {}, 'writeSlice axis 1');
  });

  it('embedding: gather from a table above the limit in vocabulary bands, scatterAdd in bands: exact', async () => {
    const [V, C, N] = [200, 16, 150]; // table 3200 values, output 2400
    const table = randn(V * C), idx = ints(N, V);
    idx[3] = idx[77] = idx[140] = 5; // repeated indices
    const g = split(() => gpu!.gather(up(table), V, C, up(idx, 'int32'), N), 'gather');
    expectClose(await read(g), host(cpu.gather(cup(table), V, C, cup(idx, 'int32'), N)), {}, 'gather');
    const src = randn(N * C);
    // each row sums its sources in increasing i across the bands too: bit-identical
    const s = split(() => gpu!.scatterAdd(up(src), N, C, up(idx, 'int32'), V), 'scatterAdd');
    expectClose(await read(s), host(cpu.scatterAdd(cup(src), N, C, cup(idx, 'int32'), V)), {}, 'scatterAdd');
    // a bad index is still reported with its position in the whole batch
    const bad = idx.slice();
    bad[123] = V + 4;
    gpu!.gather(up(table), V, C, up(bad, 'int32'), N);
    await expect(read(up([0]))).rejects.toThrow(/index 204 at position 123/);
  });

  it('fused cross-entropy and target log-probs in row bands', async () => {
    const [N, V] = [45, 70]; // logits 3150 values
    const x = randn(N * V, 2), t = ints(N, V);
    t[4] = -1; // an ignored row
    const f = split(() => gpu!.crossEntropyForward(up(x), up(t, 'int32'), N, V), 'crossEntropyForward');
    const r = cpuFused.crossEntropyForward(cup(x), cup(t, 'int32'), N, V);
    // tolerances of webgpu-fused.test.ts: 1e-5 on lse / loss (WGSL exp, log), 1e-7 + 1e-5 on dlogits
    expectClose(await read(f.lse), host(r.lse), { atol: 1e-5, rtol: 1e-5 }, 'lse');
    expectClose(await read(f.loss), host(r.loss), { atol: 1e-5, rtol: 1e-5 }, 'loss');
    const d = [0.7];
    const g = split(() => gpu!.crossEntropyBackward(up(x), up(t, 'int32'), f.lse, up(d), N, V), 'crossEntropyBackward');
    expectClose(await read(g), host(cpuFused.crossEntropyBackward(cup(x), cup(t, 'int32'), r.lse, cup(d), N, V)), { atol: 1e-7, rtol: 1e-5 }, 'dlogits');
    const t2 = ints(N, V), dl = randn(N);
    const lp = split(() => gpu!.targetLogprobsForward(up(x), up(t2, 'int32'), N, V), 'targetLogprobsForward');
    const rl = cpuFused.targetLogprobsForward(cup(x), cup(t2, 'int32'), N, V);
    expectClose(await read(lp.logp), host(rl.logp), { atol: 1e-5, rtol: 1e-5 }, 'logp');
    const lg = split(() => gpu!.targetLogprobsBackward(up(x), up(t2, 'int32'), lp.lse, up(dl), N, V), 'targetLogprobsBackward');
    expectClose(await read(lg), host(cpuFused.targetLogprobsBackward(cup(x), cup(t2, 'int32'), rl.lse, cup(dl), N, V)), { atol: 1e-7, rtol: 1e-5 }, 'dlogits (logp)');
    // a bad target is reported with its row in the whole batch
    const bt = t.slice();
    bt[40] = V + 1;
    gpu!.crossEntropyForward(up(x), up(bt, 'int32'), N, V);
    await expect(read(up([0]))).rejects.toThrow(/target 71 at position 40/);
  });

  it('RMSNorm (dw summed over row bands), RoPE, attention in KV-head bands', async () => {
    const [R, C] = [60, 40];
    const x = randn(R * C), w = randn(C), dy = randn(R * C);
    const f = split(() => gpu!.rmsnormForward(up(x), up(w), R, C, 1e-5), 'rmsnormForward');
    const r = cpuFused.rmsnormForward(cup(x), cup(w), R, C, 1e-5);
    expectClose(await read(f.y), host(r.y), { atol: 1e-6, rtol: 1e-5 }, 'rmsnorm y');
    const b = split(() => gpu!.rmsnormBackward(up(dy), up(x), up(w), f.rstd, R, C), 'rmsnormBackward');
    const rb = cpuFused.rmsnormBackward(cup(dy), cup(x), cup(w), r.rstd, R, C);
    expectClose(await read(b.dx), host(rb.dx), { atol: 1e-5, rtol: 1e-4 }, 'rmsnorm dx');
    expectClose(await read(b.dweight!), host(rb.dweight!), { atol: 1e-5, rtol: 1e-4 }, 'rmsnorm dw');
    const [RR, Tn, HS] = [8, 20, 8];
    const xr = randn(RR * Tn * HS);
    const { cos, sin } = T.ropeTables(Tn, HS, 10000);
    const [c, s] = [cos.dataSync(), sin.dataSync()];
    const ro = split(() => gpu!.rope(up(xr), up(c), up(s), RR, Tn, HS, false), 'rope');
    expectClose(await read(ro), host(cpuFused.rope(cup(xr), cup(c), cup(s), RR, Tn, HS, false)), { atol: 1e-6, rtol: 1e-6 }, 'rope');
    for (const sh of [{ B: 2, NH: 4, NKV: 2, T: 20, S: 20, HS: 16, causal: true }, { B: 1, NH: 3, NKV: 3, T: 9, S: 60, HS: 8, causal: false }] as AttentionShape[]) {
      const q = randn(sh.B * sh.NH * sh.T * sh.HS), k = randn(sh.B * sh.NKV * sh.S * sh.HS), v = randn(k.length), dout = randn(q.length);
      const fa = split(() => gpu!.attentionForward(up(q), up(k), up(v), sh), 'attentionForward');
      const ra = cpuFused.attentionForward(cup(q), cup(k), cup(v), sh);
      expectClose(await read(fa.out), host(ra.out), { atol: 1e-5, rtol: 2e-5 }, 'attention out');
      expectClose(await read(fa.lse), host(ra.lse), { atol: 1e-5, rtol: 2e-5 }, 'attention lse');
      const ga = split(() => gpu!.attentionBackward(up(dout), up(q), up(k), up(v), fa.out, fa.lse, sh), 'attentionBackward');
      const rga = cpuFused.attentionBackward(cup(dout), cup(q), cup(k), cup(v), ra.out, ra.lse, sh);
      for (const key of ['dq', 'dk', 'dv'] as const) expectClose(await read(ga[key]), host(rga[key]), { atol: 2e-5, rtol: 1e-4 }, `attention ${key}`);
    }
  });

  it('AdamW in place on a parameter above the limit, and Newton–Schulz (norm, scale, blocked matmuls, transposes)', async () => {
    const n = 3000;
    const p0 = randn(n), gp = up(p0), gm = up(new Float32Array(n)), gv = up(new Float32Array(n));
    const cp = cup(p0), cm = cup(new Float32Array(n)), cv = cup(new Float32Array(n));
    for (let step = 1; step <= 2; step++) {
      const grad = randn(n), hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step };
      split(() => gpu!.adamwUpdate(gp, up(grad), gm, gv, n, hp), 'adamw');
      cpuFused.adamwUpdate(cp, cup(grad), cm, cv, n, hp);
    }
    expectClose(await read(gm), host(cm), { atol: 1e-7, rtol: 1e-6 }, 'm');
    expectClose(await read(gv), host(cv), { atol: 1e-9, rtol: 1e-6 }, 'v');
    expectClose(await read(gp), host(cp), { atol: 1e-7, rtol: 1e-6 }, 'param');
    for (const [rows, cols] of [[20, 70], [70, 20]]) {
      const g = randn(rows * cols);
      const X = gpu!.newtonSchulz(up(g), rows, cols);
      expectClose(await read(X), host(cpuFused.newtonSchulz(cup(g), rows, cols)), { atol: 1e-4, rtol: 1e-4 }, `NS ${rows}x${cols}`);
    }
  });
});

describe.skipIf(!gpu)('a whole model step with a 4 KiB binding limit matches the cpu', () => {
  it('loss, gradient norm and every gradient, then the losses of two Muon + AdamW steps', async () => {
    // embedding and lm head 64 x 32, logits 32 x 64, MLP 32 x 48: all above 1024 values
    const config = presetConfig('tiny', { vocabSize: 64, hiddenSize: 32, numLayers: 1, numHeads: 4, numKVHeads: 2, headDim: 8, intermediateSize: 48, maxSeqLen: 16 });
    const B = 2, Tn = 16;
    const tokens = Uint16Array.from({ length: 2000 }, (_, i) => (i * 7 + rng.int(5)) % 64);
    const batch = new BatchLoader(tokens, B, Tn, 3).next();
    const runs: { loss: number[]; norm: number; grads: Map<string, Float32Array> }[] = [];
    for (const b of [cpu, gpu!]) {
      T.setDefaultBackend(b);
      const ref = new GPT(config, new T.Rng(5), cpu);
      const m = new GPT(config, new T.Rng(5), b);
      m.loadWeights(new Map([...ref.params].map(([k, p]) => [k, { shape: p.shape, data: Float32Array.from(p.dataSync()) }])), 'test');
      ref.dispose();
      const bands = { ...gpu!.stats };
      const loss = await T.tidy(async () => {
        const l = m.loss(T.tensor(batch.x, [B, Tn], { dtype: 'int32', backend: b }), batch.y);
        T.backward(l);
        return l.item();
      });
      if (b === gpu) {
        // both ways of binding a band were used: in place (aligned) and through scratch
        expect(gpu!.stats.windows, 'windows').toBeGreaterThan(bands.windows);
        expect(gpu!.stats.scratch, 'scratch copies').toBeGreaterThan(bands.scratch);
      }
      const { grads, norm } = await m.gradsOnHost();
      // then two optimizer steps: the second step's loss is after the first update
      const opt = buildOptimizer(m.trainableParams(), { kind: 'muon', lr: 1e-2, weightDecay: 0 });
      const schedule = { lr: 1e-2, warmupSteps: 0, totalSteps: 2, warmdownFraction: 0, finalFraction: 1 };
      const trainer = new Trainer(m, opt.paramGroups.map((g) => ({ ...g, schedule })), new BatchLoader(tokens, B, Tn, 7), { gradAccum: 1, gradClip: 1 });
      const l1 = (await trainer.trainStep(languageModelLoss)).loss, l2 = (await trainer.trainStep(languageModelLoss)).loss;
      runs.push({ loss: [loss, l1, l2], norm, grads });
      m.dispose();
    }
    const [c, g] = runs;
    // the tolerances of webgpu-model.test.ts: 1e-4 relative on the loss (~200 ULP over ~100
    // ops), gradients within 1e-3 of their largest entry plus 1e-3 relative
    for (let s = 0; s < 3; s++) expect(Math.abs(g.loss[s] - c.loss[s]) / c.loss[s], `loss ${s}`).toBeLessThan(1e-4);
    expect(Math.abs(g.norm - c.norm) / c.norm, 'grad norm').toBeLessThan(1e-3);
    for (const [name, want] of c.grads) {
      const scale = Math.max(...Array.from(want, Math.abs));
      expectClose(g.grads.get(name)!, want, { bound: want.map((w) => 1e-3 * scale + 1e-3 * Math.abs(w)) }, name);
    }
  }, 300_000);
});

describe.skipIf(!gpu)('webgpu: one clear line when a tensor cannot be split', () => {
  it('a row of the logits above the binding limit, a tensor above maxBufferSize', async () => {
    const V = 1500; // one row: 6000 bytes > 4096
    const e = (() => {
      try {
        gpu!.crossEntropyForward(up(randn(2 * V)), up([1, 2], 'int32'), 2, V);
      } catch (x) {
        return x as Error;
      }
      return null;
    })();
    expect(e).toBeInstanceOf(UserError);
    expect(e!.message).toMatch(/^webgpu crossEntropy: one row of the logits of 1500 values \(5\.9 KiB\) is larger than this GPU's maxStorageBufferBindingSize \(4\.0 KiB\)/);
    expect(e!.message).not.toContain('\n');
    const small = await lowered({ maxStorageBufferBindingSize: LIMIT, maxBufferSize: 8192 });
    try {
      const a = small!.upload(randn(100 * 10), 'float32'), b = small!.upload(randn(10 * 50), 'float32');
      const p: MatmulParams = { batchA: [], batchB: [], batch: [], M: 100, K: 10, N: 50, transA: false, transB: false };
      expect(() => small!.matmul(a, b, p)).toThrow(UserError);
      expect(() => small!.matmul(a, b, p)).toThrow(/^webgpu: the matmul output \[100, 50\] of 5000 float32 values \(19\.5 KiB\) is larger than this GPU's maxBufferSize \(8\.0 KiB\)[^\n]*$/);
      expect(() => small!.upload(randn(3000), 'float32')).toThrow(/maxBufferSize/);
    } finally {
      small?.destroy();
    }
  });
});
