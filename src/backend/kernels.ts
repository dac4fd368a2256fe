// The WGSL kernel loader: `kernelSource('matmul')` returns the text of kernels/matmul.wgsl.
//
// Kernels are real .wgsl files (highlighting, separate checking, one file per op), so
// something has to get their text into the program, and that differs by platform:
//   - Node (tests, CLI, benchmarks): read kernels/NAME.wgsl from disk, found relative to this
//     module's URL (or to a bundle's location, or the working directory; see `candidateDirs`).
//   - Browser (the Vite demo page): there is no disk. The browser entry point bundles the
//     files with Vite and hands them over once, before creating the backend:
//         import { setKernelSources } from '../src/backend/kernels.ts';
//         setKernelSources(import.meta.glob('../../kernels/*.wgsl', { query: '?raw', import: 'default', eager: true }));
//     `import.meta.glob` is Vite-only syntax, so it lives in that entry, never here: this file
//     stays loadable by plain Node and tsx.
// Injected sources win over the disk, so a bundle can carry its own kernels.
import { isNode } from './platform.ts';

const injected = new Map<string, string>();
const cache = new Map<string, string>();
let kernelDir: string | null = null;

/** Hand over kernel sources, keyed by name ('matmul') or by path ('../../kernels/matmul.wgsl'). */
export function setKernelSources(sources: Record<string, string | { default: string }>): void {
  for (const [key, value] of Object.entries(sources)) {
    const name = key.replace(/^.*\//, '').replace(/\.wgsl$/, '');
    injected.set(name, typeof value === 'string' ? value : value.default);
  }
  cache.clear();
}

/** Read kernels from this directory (Node only), e.g. when running from a bundle elsewhere. */
export function setKernelDir(dir: string): void {
  kernelDir = dir;
  cache.clear();
}

/** The WGSL source of kernels/NAME.wgsl. */
export async function kernelSource(name: string): Promise<string> {
  const hit = injected.get(name) ?? cache.get(name);
  if (hit !== undefined) return hit;
  if (!isNode()) {
    throw new Error(`kernels: no source for '${name}': the browser entry must call setKernelSources(import.meta.glob(...)) first`);
  }
  // Module names in variables keep bundlers (Vite) from pulling Node built-ins into a browser build.
  const fsName = 'node:fs', pathName = 'node:path', urlName = 'node:url';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs');
  const path = (await import(/* @vite-ignore */ pathName)) as typeof import('node:path');
  const url = (await import(/* @vite-ignore */ urlName)) as typeof import('node:url');
  const tried: string[] = [];
  for (const dir of candidateDirs(path, url)) {
    const file = path.join(dir, `${name}.wgsl`);
    tried.push(file);
    if (fs.existsSync(file)) {
      const text = fs.readFileSync(file, 'utf8');
      cache.set(name, text);
      return text;
    }
  }
  throw new Error(`kernels: ${name}.wgsl not found; looked in:\n  ${tried.join('\n  ')}\nset MINICHAT_KERNEL_DIR to the project's kernels/ folder`);
}

/**
 * Where kernels/ may be, in order: an explicit setKernelDir, $MINICHAT_KERNEL_DIR, two levels
 * above this module (src/backend/ → the project root), one level above it (a bundle in .gpu/
 * beside the project), the working directory.
 */
function candidateDirs(path: typeof import('node:path'), url: typeof import('node:url')): string[] {
  const dirs: string[] = [];
  if (kernelDir) dirs.push(kernelDir);
  const env = process.env.MINICHAT_KERNEL_DIR;
  if (env) dirs.push(env);
  if (import.meta.url.startsWith('file:')) {
    const here = path.dirname(url.fileURLToPath(import.meta.url));
    dirs.push(path.join(here, '..', '..', 'kernels'), path.join(here, '..', 'kernels'));
  }
  dirs.push(path.join(process.cwd(), 'kernels'));
  return dirs;
}
