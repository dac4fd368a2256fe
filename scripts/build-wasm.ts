// `npm run build:wasm`: assemble kernels/cpu/matmul.wat (WebAssembly text, read by people)
// into kernels/cpu/matmul.wasm (the binary the CPU backend loads; see src/backend/wasm-matmul.ts).
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
/** The kernels this script builds, as [text, binary] paths relative to the repository root. */
export const WASM_KERNELS: [string, string][] = [['kernels/cpu/matmul.wat', 'kernels/cpu/matmul.wasm']];

/**
 * The binary for a module in WebAssembly text. Only the SIMD feature is enabled (anything
 * else in the text is an error). Function and local names are kept (the "name" section), so
 * profilers and stack traces say `$matmul` rather than `func[3]`; the output is deterministic.
 */
export async function assembleWat(text: string, filename = 'module.wat'): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const mod = wabt.parseWat(filename, text, { simd: true });
  try {
    mod.validate();
    return mod.toBinary({ log: false, write_debug_names: true }).buffer;
  } finally {
    mod.destroy();
  }
}

async function main(): Promise<void> {
  for (const [watPath, wasmPath] of WASM_KERNELS) {
    const bytes = await assembleWat(readFileSync(join(root, watPath), 'utf8'), watPath);
    writeFileSync(join(root, wasmPath), bytes);
    console.log(`${watPath} -> ${wasmPath} (${bytes.length} bytes)`);
  }
}

// Run only when executed, not when the test imports assembleWat.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
