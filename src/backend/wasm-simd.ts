// Relaxed SIMD: is it there, and how to turn it on in Node 20.
//
// WebAssembly's relaxed-SIMD instructions let the engine pick the fastest of a few allowed
// results; the one we use, f32x4.relaxed_madd(a, b, c) = a·b + c, may be computed fused (one
// rounding, x86 FMA3) or as a multiply then an add (two roundings). Chrome ≥ 114 and Node ≥ 22
// ship it; Node 20 has it behind the V8 flag --experimental-wasm-relaxed-simd.
//
// Feature detection is the standard way: WebAssembly.validate on the smallest module that uses
// the instruction (RELAXED_SIMD_PROBE, below). Nothing else in this repository asks "which
// Node is this?".
//
// Turning it on: V8 reads its wasm feature flags when it compiles a module, and
// v8.setFlagsFromString can set them while the process runs; V8 flags are per process, so
// worker threads started afterwards see them too. bin/minichat.mjs calls enableRelaxedSimd()
// before any module is compiled; tests and benchmarks that want the relaxed kernel call it too.
// It only sets the flag when the probe fails, so on an engine that ships relaxed SIMD it does
// nothing at all.

/**
 * (module (func (param v128 v128 v128) (result v128)
 *   (f32x4.relaxed_madd (local.get 0) (local.get 1) (local.get 2))))
 * assembled by wabt (the last bytes 0xfd 0x85 0x02 are the relaxed_madd opcode).
 */
export const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0, 10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11,
]);

/** Whether this engine can compile relaxed-SIMD code right now. */
export function relaxedSimdSupported(): boolean {
  try {
    return typeof WebAssembly !== 'undefined' && WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

/**
 * Node: make relaxed SIMD available (setting V8's flag if the probe fails). Returns whether it
 * now is. In a browser it only reports (there is no flag to set).
 */
export async function enableRelaxedSimd(): Promise<boolean> {
  if (relaxedSimdSupported()) return true;
  if (typeof process === 'undefined' || !process.versions?.node) return false;
  const v8Name = 'node:v8'; // in a variable: keeps bundlers from pulling a Node built-in into the page
  const v8 = (await import(/* @vite-ignore */ v8Name)) as typeof import('node:v8');
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  return relaxedSimdSupported();
}

/** Which matmul build the wasm backend runs: 'relaxed' (relaxed_madd) or 'plain' (mul + add). */
export type SimdVariant = 'plain' | 'relaxed';

/**
 * The variant to use: `asked` (a backend option), else $MINICHAT_WASM_SIMD (plain, relaxed, or
 * auto = relaxed where the engine has it), else **plain**. Plain is the default because
 * relaxed_madd may or may not fuse depending on the machine, so the same command would train
 * a (slightly, then chaotically) different model on different CPUs — a speedrun's eval numbers
 * moved by up to 18 points from the rounding alone — and relaxed bought little (the speedrun:
 * 4 min 37 s vs 5 min 02 s, docs/wasm.md). Asking for relaxed where the engine lacks it is
 * an error, not a silent fallback (a test or benchmark asking for it must get it).
 */
export function chooseSimdVariant(asked: SimdVariant | undefined, env: string | undefined, supported: boolean): SimdVariant {
  let want: SimdVariant | 'auto' | undefined = asked;
  if (want === undefined && env !== undefined && env !== '') {
    if (env !== 'plain' && env !== 'relaxed' && env !== 'auto') throw new Error(`MINICHAT_WASM_SIMD must be plain, relaxed or auto, got "${env}"`);
    want = env;
  }
  if (want === 'relaxed' && !supported) {
    throw new Error('wasm backend: relaxed SIMD was asked for but this engine has none (Node 20: start node with --experimental-wasm-relaxed-simd)');
  }
  if (want === 'auto') return supported ? 'relaxed' : 'plain';
  return want ?? 'plain';
}
