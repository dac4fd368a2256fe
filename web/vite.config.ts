// Vite config for the demo page. Its root is web/ (`vite web`, `vite build web`).
//   - base './': the built site uses relative URLs, so any static host (or a sub-folder) works;
//   - server.fs.allow: the page imports ../src, ../data and ../kernels (the CLI's own code);
//   - worker.format 'es': the training worker is an ES module (it imports like the page does);
//   - build.outDir 'dist' (web/dist, git-ignored);
//   - nodeBuiltinStubs: see below;
//   - headers COOP/COEP: make the page cross-origin isolated, which shared WebAssembly memory
//     (the wasm backend) requires. A static host must send the same two headers on every file
//     (Cross-Origin-Opener-Policy: same-origin, Cross-Origin-Embedder-Policy: require-corp);
//     without them the page still works, on the plain-TypeScript CPU backend.
import { defineConfig, type Plugin } from 'vite';
import { fileURLToPath } from 'node:url';

const projectRoot = fileURLToPath(new URL('..', import.meta.url));

/**
 * Browser stand-ins for `node:*` modules. Some src/ modules keep their Node-only parts behind
 * a dynamic import (Tokenizer.load → tokenizer/files.ts, which imports node:fs). The page
 * never calls those paths, but Rollup still bundles the chunk and checks its named imports,
 * and Vite's default empty stub has none ("existsSync is not exported"). So each node:X
 * becomes a module with the same export names, every one a function that throws a clear error
 * if the browser ever reaches it.
 *
 * `tiktoken/lite` is stubbed the same way: the Node-side fast bulk encoder
 * (src/tokenizer/fast.ts, reached through src/tokenizer/index.ts, which the chat model imports)
 * loads its WASM with the ESM-integration import Vite cannot bundle; in the browser the stub
 * throws and fast.ts falls back to the TypeScript encoder, as it does wherever tiktoken is missing.
 */
function nodeBuiltinStubs(): Plugin {
  const PREFIX = '\0minichat-node-stub:';
  return {
    name: 'minichat-node-builtin-stubs',
    enforce: 'pre',
    apply: 'build',
    resolveId(id) {
      return id.startsWith('node:') || id === 'tiktoken/lite' ? PREFIX + id : null;
    },
    async load(id) {
      if (!id.startsWith(PREFIX)) return null;
      const name = id.slice(PREFIX.length);
      const names = Object.keys(await import(name)).filter((k) => k !== 'default' && /^[A-Za-z_$][\w$]*$/.test(k));
      const lines = names.map((k, i) => `const s${i} = stub(${JSON.stringify(k)}); export { s${i} as ${k} };`);
      return [
        `const stub = (k) => () => { throw new Error(${JSON.stringify(name)} + '.' + k + ' is Node-only and not available in the browser'); };`,
        'export default {};',
        ...lines,
      ].join('\n');
    },
  };
}

const ISOLATION_HEADERS = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default defineConfig({
  base: './',
  plugins: [nodeBuiltinStubs()],
  server: { fs: { allow: [projectRoot] }, headers: ISOLATION_HEADERS },
  preview: { headers: ISOLATION_HEADERS },
  worker: { format: 'es', plugins: () => [nodeBuiltinStubs()] },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 2000 },
});
