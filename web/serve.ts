// Node-side helpers for driving the demo page from tests and scripts (never bundled into the
// page): build web/ with Vite's JS API, serve web/dist from a minimal static server on
// 127.0.0.1 only, and launch the system Chromium through playwright-core.
//
// Chromium flags. WebGPU on Linux is behind --enable-unsafe-webgpu; with it, headless
// Chromium 156 (Debian) offers the SwiftShader adapter (vendor "google", architecture
// "swiftshader": Vulkan on the CPU) with no further flags; --use-webgpu-adapter=swiftshader,
// --use-angle=swiftshader and --enable-features=Vulkan made no difference. Without the flag,
// navigator.gpu exists but requestAdapter() resolves to null. WebGPU also needs a secure
// context: http://127.0.0.1 counts, a data: URL does not.
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve } from 'node:path';

export const CHROMIUM = '/usr/bin/chromium';
export const PROJECT_ROOT = resolve(import.meta.dirname, '..');
export const WEB_ROOT = join(PROJECT_ROOT, 'web');
export const DIST = join(WEB_ROOT, 'dist');

/** Flags for every launch (quiet, no network chatter, runs as root in containers). */
export const BASE_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
/** Add these for WebGPU (on SwiftShader when there is no GPU). */
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu'];

const MIME: Record<string, string> = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.png': 'image/png', '.svg': 'image/svg+xml',
};

/** `vite build web` through Vite's JS API (web/vite.config.ts is picked up from the root). */
export async function buildSite(): Promise<void> {
  const { build } = await import('vite');
  await build({ root: WEB_ROOT, logLevel: 'warn' });
}

/** Serve `dir` on 127.0.0.1 at a free port; resolves with the server and its base URL.
 *  `isolate: false` leaves out COOP/COEP (a static host that does not send them: the page
 *  then runs without shared memory, so without the wasm backend and its threads). */
export function serveStatic(dir = DIST, { isolate = true } = {}): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = normalize(join(dir, path === '/' ? 'index.html' : path));
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    // COOP/COEP: cross-origin isolation, so the page may use shared WebAssembly memory (the wasm backend)
    const isolation = isolate ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {};
    res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream', ...isolation });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` })));
}

/** Headless Chromium with BASE_ARGS plus `args`. */
export async function launchChromium(args: string[]): Promise<import('playwright-core').Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...BASE_ARGS, ...args] });
}
