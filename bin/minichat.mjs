#!/usr/bin/env node
// The `minichat` command. The sources are TypeScript; tsx's loader lets Node run them
// directly, so there is no build step between editing a file and running it.
import { register } from 'tsx/esm/api';

register();
// Relaxed SIMD (the fused multiply-add matmul) before any WebAssembly module compiles: on
// Node 20 it sits behind a V8 flag, set here only if the engine lacks it (src/backend/wasm-simd.ts).
const { enableRelaxedSimd } = await import('../src/backend/wasm-simd.ts');
await enableRelaxedSimd();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
