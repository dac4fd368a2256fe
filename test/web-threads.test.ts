// Threads in the page, in a real browser (headless Chromium, as test/web.test.ts): the wasm
// backend's helper threads are module Web Workers that the training worker starts
// (kernels/cpu/wasm-worker.mjs, bundled by Vite into web/dist), sharing its WebAssembly memory.
//   1. Served with COOP/COEP (cross-origin isolated): ?backend=wasm&threads=2 trains a few
//      steps on 2 threads (the banner says so, and the helper really ran jobs); then the
//      "CPU threads" field set to 1 and Start again: the same run on 1 thread. Both downloaded
//      checkpoints hold the same losses and weights, bit for bit, and so does the Node wasm
//      backend (same build, plain SIMD: the page hands over no relaxed bytes) for the same spec.
//   2. Served without COOP/COEP: no shared memory, so no wasm backend and no threads; the page
//      falls back to the CPU reference on 1 thread and says why in the banner, and still trains.
// (Skipped only as test/browser.ts says.)
import type { Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DIST, launchChromium, serveStatic } from '../web/serve.ts';
import { createWasmBackend } from '../src/backend/wasm.ts';
import { type CheckpointParts, decodeCheckpointFile, readCheckpointDir } from '../src/io/checkpoint.ts';
import { pretrain } from '../src/train/pretrain.ts';
import { SPEC_DEFAULTS } from '../src/train/spec.ts';
import { type Page, servePage, skipBrowser, waitOrError } from './browser.ts';
import { tempDir } from './tmp.ts';

// tiny, 4 steps of 2 x 32 tokens: big enough that matmuls are split (>= 2^19 multiply-adds:
// the MLP's 64 x 128 x 512), small enough to take seconds; no samples or validation until the end
const STEPS = 4;
const RUN = `preset=tiny&batchSize=2&seqLen=32&syntheticStories=200&vocabSize=300&lr=0.01&evalEvery=0&sampleEvery=0&sampleTokens=4&restore=0&steps=${STEPS}`;

const text = async (page: Page, id: string) => (await page.getByTestId(id).textContent())?.trim() ?? '';

/** Press Start and wait until the run has finished all its steps. */
async function trainToEnd(page: Page): Promise<void> {
  await page.getByTestId('train-start').click();
  await waitOrError(page, `document.querySelector('[data-testid=status]').textContent.startsWith('Finished')`, 60_000);
  expect(await text(page, 'train-step')).toBe(String(STEPS));
}

/** Download the run's checkpoint (the page's own button) and decode it. */
async function download(page: Page, dir: string, name: string): Promise<CheckpointParts> {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('save-checkpoint').click()]);
  const file = join(dir, name);
  await dl.saveAs(file);
  return decodeCheckpointFile(readFileSync(file), file);
}

const bytesOf = (a: Float32Array | Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Same losses and same weights, as bits. */
function expectSameRun(a: CheckpointParts, b: CheckpointParts, what: string): void {
  const la = a.state!.history!.train, lb = b.state!.history!.train;
  expect(la.length, `${what}: steps`).toBe(STEPS);
  expect(lb, `${what}: losses`).toEqual(la); // numbers compare with Object.is: bit for bit
  expect(Object.keys(b.weights).sort(), `${what}: weight names`).toEqual(Object.keys(a.weights).sort());
  for (const [k, t] of Object.entries(a.weights)) expect(bytesOf(b.weights[k].data).equals(bytesOf(t.data)), `${what}: ${k}`).toBe(true);
}

describe.skipIf(skipBrowser('test/web-threads.test.ts'))('threads in the page (Chromium)', () => {
  const site = servePage();
  let plain: Server | undefined;
  afterAll(() => new Promise<void>((ok) => (plain ? plain.close(() => ok()) : ok())));

  it('cross-origin isolated: 2 threads (Web Workers) train bit for bit as 1 thread and as Node', async () => {
    const dir = tempDir('mc-web-threads-');
    const browser = await launchChromium([]);
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
      const page = await context.newPage();
      await page.goto(`${site.url}?${RUN}&backend=wasm&threads=2`);
      await waitOrError(page, `document.querySelector('[data-testid=backend-name]').textContent === 'wasm'`, 60_000);
      expect(await text(page, 'backend-threads')).toBe(', 2 threads');
      expect(await page.getByTestId('threads').inputValue()).toBe('2');
      expect(await page.getByTestId('threads').isDisabled()).toBe(false);

      await trainToEnd(page);
      // the helper thread computed bands (a pool that never got work would be a 1-thread run)
      expect(Number(await page.evaluate(() => document.body.dataset.helperJobs))).toBeGreaterThan(0);
      const two = await download(page, dir, 'two.safetensors');

      // a bad count is refused in the error panel, and nothing starts (the field is under "More settings")
      await page.locator('.controls details summary').click();
      await page.getByTestId('threads').fill('0');
      await page.getByTestId('train-start').click();
      await page.waitForFunction(() => !document.getElementById('errors')!.hidden, null, { timeout: 10_000 });
      expect(await page.locator('#error-list').textContent()).toMatch(/threads must be a positive integer, got "0"/);
      await page.locator('#errors-clear').click();

      // the page's setting: 1 thread, applied at Start (the backend is remade, the banner follows)
      await page.getByTestId('threads').fill('1');
      await trainToEnd(page);
      expect(await text(page, 'backend-threads')).toBe(', 1 thread');
      expect(Number(await page.evaluate(() => document.body.dataset.helperJobs))).toBe(0);
      const one = await download(page, dir, 'one.safetensors');
      expectSameRun(one, two, 'page 1 thread vs 2 threads');

      // the Node wasm backend, same spec and seed, same (plain SIMD) matmul build
      const node = await createWasmBackend({ threads: 1, simd: 'plain' });
      await pretrain({ ...SPEC_DEFAULTS, ...(two.state!.spec as object), out: join(dir, 'node'), backend: node }, { log: () => {} });
      expectSameRun(await readCheckpointDir(join(dir, 'node', 'checkpoint')), two, 'Node 1 thread vs page 2 threads');
    } finally {
      await browser.close();
    }
  }, 120_000);

  it('not cross-origin isolated: 1 thread on the CPU reference, with the reason in the banner', async () => {
    let url: string;
    ({ server: plain, url } = await serveStatic(DIST, { isolate: false }));
    const browser = await launchChromium([]);
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${url}?${RUN}&backend=wasm&threads=2`);
      await waitOrError(page, `document.querySelector('[data-testid=backend-name]').textContent !== 'starting…'`, 60_000);
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
      expect(await text(page, 'backend-name')).toBe('cpu');
      expect(await text(page, 'backend-threads')).toBe(', 1 thread');
      expect(await page.locator('#backend-reason').textContent()).toMatch(/not cross-origin isolated .*cannot run: 1 thread/);
      expect(await page.getByTestId('threads').inputValue()).toBe('1');
      expect(await page.getByTestId('threads').isDisabled()).toBe(true);
      await trainToEnd(page);
    } finally {
      await browser.close();
    }
  }, 90_000);
});
