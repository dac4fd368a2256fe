// Runs before every test file: the tests exercise the CPU backend as users run it, with the
// WASM SIMD matmul enabled (test/wasm-matmul.test.ts checks that kernel against a float64
// reference; the JS loop in cpu.ts stays the fallback and the float64 backend's kernel).
import { initWasmMatmul } from '../src/backend/wasm-matmul.ts';

await initWasmMatmul();
