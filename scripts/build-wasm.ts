// `npm run build:wasm`: assemble kernels/cpu/ops.wat (the wasm backend's kernels) into ops.wasm, and kernels/cpu/matmul.wat (WebAssembly text, read by people)
// into kernels/cpu/matmul.wasm (the binary the CPU backend loads; see src/backend/wasm-matmul.ts)
// and kernels/cpu/matmul-shared.wasm (the same kernel over an imported shared memory, for the
// threaded paths) and kernels/cpu/matmul-relaxed-shared.wasm (that one with relaxed-SIMD
// multiply-adds); see WASM_KERNELS below.
//
// The assembler is WABT's wat2wasm compiled to JavaScript (the npm package `wabt`, a
// devDependency: only this script and its test need it, never the library at run time).
// The .wasm is committed so that running minichat needs no build step; test/wasm-matmul.test.ts
// rebuilds it from the .wat with `assembleWat` and checks the bytes are identical, so the two
// cannot drift. Edit the .wat, run this script, commit both.
//
//   node bin/run-ts.mjs scripts/build-wasm.ts
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import wabtInit from 'wabt';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export interface WasmBuild {
  wat: string; // source, relative to the repository root
  wasm: string; // output, relative to the repository root
  /** What this build changes in the source, if anything (see SHARED_MEMORY). */
  edit?: (text: string) => string;
}

/**
 * The threaded matmul (wasm-matmul.ts, `threads: 2`) runs the same kernel in two threads over
 * ONE memory, so that memory must be a shared WebAssembly.Memory created by JS and imported by
 * both instances. A module cannot accept both kinds, and browsers only allow shared memory on
 * cross-origin-isolated pages, so the default binary keeps its own memory and a second binary
 * is built from the same text with this one line swapped.
 * (A maximum is required for shared memory: 65536 pages = 4 GiB, MAX_PAGES in src/backend/wasm-memory.ts.)
 */
const OWN_MEMORY = '(memory (export "memory") 1)';
const SHARED_MEMORY = '(import "env" "memory" (memory 1 65536 shared))';

function sharedMemory(text: string): string {
  if (!text.includes(OWN_MEMORY)) throw new Error(`build-wasm: matmul.wat no longer contains ${OWN_MEMORY}`);
  return text.replace(OWN_MEMORY, SHARED_MEMORY);
}

/**
 * The relaxed-SIMD matmul (wasm.ts picks it when the engine has relaxed SIMD): every
 * multiply-add of matmul.wat's vector loops, written there in one form, becomes one
 * f32x4.relaxed_madd (a·b + c, fused where the CPU has FMA). The number of rewrites is
 * checked, so an edit of the .wat that changes the form fails the build instead of silently
 * leaving some multiply-adds plain.
 */
const MADD = /\(f32x4\.add \(local\.get (\$\w+)\) \(f32x4\.mul \(local\.get (\$\w+)\) \(local\.get (\$\w+)\)\)\)/g;
/** 8 in the 2 x 4 tile's hot loop, 1 in $dot. */
export const MADD_COUNT = 9;
export function relaxedMadd(text: string): string {
  const n = [...text.matchAll(MADD)].length;
  if (n !== MADD_COUNT) throw new Error(`build-wasm: matmul.wat has ${n} multiply-adds in the rewritable form, expected ${MADD_COUNT}`);
  return text.replace(MADD, '(f32x4.relaxed_madd (local.get $2) (local.get $3) (local.get $1))');
}

/** The binaries this script builds. */
export const WASM_KERNELS: WasmBuild[] = [
  { wat: 'kernels/cpu/matmul.wat', wasm: 'kernels/cpu/matmul.wasm' },
  { wat: 'kernels/cpu/matmul.wat', wasm: 'kernels/cpu/matmul-shared.wasm', edit: sharedMemory },
  { wat: 'kernels/cpu/matmul.wat', wasm: 'kernels/cpu/matmul-relaxed-shared.wasm', edit: (text) => relaxedMadd(sharedMemory(text)) },
  // The wasm backend's other kernels (src/backend/wasm.ts): they always import the shared
  // memory that holds every tensor of that backend, so there is one build. ops.wat splices in
  // ops-loss.wat, ops-attention.wat and ops-adamw-copy.wat (spliceIncludes).
  { wat: 'kernels/cpu/ops.wat', wasm: 'kernels/cpu/ops.wasm' },
];

/**
 * A module's text with its pieces spliced in: a line `;; @include FILE` is replaced by FILE (a
 * path beside the module's file). WebAssembly text has no include of its own; this lets a long
 * module (ops.wat) be read as a few files of one concern each while staying one module, one
 * .wasm. A piece may not include further pieces.
 */
export function spliceIncludes(text: string, watPath: string): string {
  return text.replace(/^[ \t]*;; @include (\S+)[ \t]*$/gm, (_line, file: string) => {
    const piece = readFileSync(join(root, dirname(watPath), file), 'utf8');
    if (/^[ \t]*;; @include /m.test(piece)) throw new Error(`build-wasm: ${file} includes another piece (one level only)`);
    return piece.trimEnd();
  });
}

/** The bytes of one build, from the source on disk. */
export async function buildOne(b: WasmBuild): Promise<Uint8Array> {
  const text = spliceIncludes(readFileSync(join(root, b.wat), 'utf8'), b.wat);
  return assembleWat(b.edit ? b.edit(text) : text, b.wat);
}

/**
 * The binary for a module in WebAssembly text. Only the SIMD, relaxed SIMD (matmul-relaxed-*),
 * threads (shared memory) and bulk-memory (memory.copy / memory.fill) features are enabled
 * (anything else in the text is an error). Function and local names are kept (the "name" section), so
 * profilers and stack traces say `$matmul` rather than `func[3]`; the output is deterministic.
 */
export async function assembleWat(text: string, filename = 'module.wat'): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const features = { simd: true, relaxed_simd: true, threads: true, bulk_memory: true };
  const mod = wabt.parseWat(filename, text, features);
  try {
    // validate() takes the same features as parseWat (its typings omit the argument).
    (mod as unknown as { validate(f: typeof features): void }).validate(features);
    return mod.toBinary({ log: false, write_debug_names: true }).buffer;
  } finally {
    mod.destroy();
  }
}

async function main(): Promise<void> {
  for (const b of WASM_KERNELS) {
    const bytes = await buildOne(b);
    writeFileSync(join(root, b.wasm), bytes);
    console.log(`${b.wat} -> ${b.wasm} (${bytes.length} bytes)`);
  }
}

// Run only when executed, not when the test imports assembleWat.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
