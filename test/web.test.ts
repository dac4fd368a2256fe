// The demo page in a real browser: build web/ with Vite, serve web/dist on 127.0.0.1, drive
// headless Chromium (playwright-core) through the flows a learner would follow:
//   1. WebGPU (on SwiftShader, Chromium's CPU Vulkan driver): start the tiny preset on the
//      built-in corpus, wait for some steps, check the loss fell and a sample appeared;
//      prompt the model; download a checkpoint and load it back; reload and find the run
//      restored from IndexedDB.
//   2. WebGPU unavailable (navigator.gpu removed): the page falls back to the CPU (the wasm backend: the test server sends COOP/COEP),
//      says so in the banner, rejects a bad data file in its error panel, and trains, with a
//      pause and a resume on the way.
//   3. One checkpoint format, page <-> CLI (CPU): a run paused in the page is downloaded, loads
//      in `minichat generate`, and `minichat pretrain --resume FILE` finishes it with weights and
//      optimizer state identical, byte for byte, to an uninterrupted CLI run of the same spec;
//      that CLI checkpoint, packed by `minichat export --format file`, loads back in the page.
// Screenshots go to test-artifacts/ (git-ignored).
//
// SwiftShader runs WebGPU at roughly 0.1 GFLOP/s, so the page is asked for a very small run
// through its URL query (batch 2 x 32 tokens, a 300-token vocabulary, 200 stories), under
// the run spec's field names (src/train/spec.ts).
//
// Chromium flags: see web/serve.ts (--enable-unsafe-webgpu is all SwiftShader needs).
//
// Skipped only as test/browser.ts says (no /usr/bin/chromium and MINICHAT_REQUIRE_BROWSER unset).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT, WEBGPU_ARGS, launchChromium } from '../web/serve.ts';
import { cpu } from '../src/backend/cpu.ts';
import { pretrain } from '../src/train/pretrain.ts';
import { SPEC_DEFAULTS } from '../src/train/spec.ts';
import { decodeCheckpointFile } from '../src/io/checkpoint.ts';
import { ARTIFACTS, type Page, noErrors, servePage, skipBrowser } from './browser.ts';
import { tempDir } from './tmp.ts';

// Tiny on purpose (see the header); evalEvery 0 = validate only at the end.
const SMALL_RUN = 'preset=tiny&batchSize=2&seqLen=32&syntheticStories=200&vocabSize=300&lr=0.01&evalEvery=0&restore=0';
// On SwiftShader, Muon's Newton-Schulz iterations (~3 GFLOP per step for the tiny preset)
// cost ten times the forward and backward passes at this batch size, so the WebGPU flow uses
// AdamW; samples and prompts are short because every token is a forward pass.
const GPU_RUN = 'optimizer=adamw&sampleEvery=0&sampleTokens=12&genTokens=12';

describe.skipIf(skipBrowser('test/web.test.ts'))('web demo page (Chromium)', () => {
  const site = servePage();
  const launch = launchChromium;

  const text = async (page: Page, id: string) => (await page.getByTestId(id).textContent())?.trim() ?? '';

  /** Wait until the step counter reaches `n` (or the page shows an error). */
  async function waitForStep(page: Page, n: number, timeout: number): Promise<void> {
    await page.waitForFunction(
      (n) => Number(document.querySelector('[data-testid=train-step]')?.textContent) >= n || !document.getElementById('errors')!.hidden,
      n, { timeout, polling: 250 },
    );
    await noErrors(page);
  }

  /** Wait until the model line under the buttons matches `re`. */
  async function waitForModelInfo(page: Page, re: RegExp, timeout: number): Promise<void> {
    await page.waitForFunction(
      ([src, flags]) => new RegExp(src, flags).test(document.querySelector('[data-testid=model-info]')?.textContent ?? ''),
      [re.source, re.flags] as const, { timeout, polling: 250 },
    );
  }

  /** Start a run and check that it learns; returns the first and latest losses. */
  async function trainAndCheck(
    page: Page, steps: number, timeout: number, already?: { start: false; first: number },
  ): Promise<{ first: number; last: number }> {
    let first = already?.first ?? NaN;
    if (!already) {
      await page.getByTestId('train-start').click({ timeout: 60_000 });
      await waitForStep(page, 1, timeout);
      first = Number(await text(page, 'train-loss'));
    }
    await waitForStep(page, steps, timeout);
    const last = Number(await text(page, 'train-loss'));
    // the final sample is taken after the last step: wait for it (an earlier one may still be
    // on screen, and may be empty: a barely trained model can sample BOS, ending it, first)
    await page.waitForFunction((n) => (document.querySelector('[data-testid=sample-output]')?.textContent ?? '').startsWith(`[step ${n}]`), steps, { timeout });
    await noErrors(page);
    expect(Number.isFinite(first) && Number.isFinite(last)).toBe(true);
    expect(last).toBeLessThan(first);
    expect(await text(page, 'sample-output')).toMatch(/^\[step \d+\] ./s);
    return { first, last };
  }

  it('trains on WebGPU (SwiftShader): loss falls, samples appear, prompt, save/load, IndexedDB restore', async () => {
    const browser = await launch(WEBGPU_ARGS);
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
      const page = await context.newPage();
      const steps = 6;
      await page.goto(`${site.url}?${SMALL_RUN}&${GPU_RUN}&steps=${steps}`);
      await page.waitForFunction(() => document.querySelector('[data-testid=backend-name]')?.textContent !== 'starting…', null, { timeout: 60_000 });
      await noErrors(page);
      expect(await text(page, 'backend-name')).toBe('webgpu');
      expect(await page.locator('#backend-reason').textContent()).toMatch(/swiftshader/i);

      const t0 = Date.now();
      const { first, last } = await trainAndCheck(page, steps, 180_000);
      const tTrain = Date.now();
      console.log(`webgpu: ${steps} steps in ${((Date.now() - t0) / 1000).toFixed(1)}s, loss ${first} -> ${last}`);
      await page.screenshot({ path: join(ARTIFACTS, 'web-webgpu.png'), fullPage: true });

      // prompt the trained model
      await page.getByTestId('prompt-input').fill('Once upon a time');
      await page.getByTestId('generate').click();
      await page.waitForFunction(() => /^Once upon a time/.test(document.querySelector('[data-testid=generate-output]')?.textContent ?? ''), null, { timeout: 60_000 });
      await noErrors(page);

      // download the checkpoint, load it back: same step, and generation still works
      const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('save-checkpoint').click()]);
      const ckpt = join(ARTIFACTS, 'web-checkpoint.safetensors');
      await dl.saveAs(ckpt);
      expect(readFileSync(ckpt).length).toBeGreaterThan(100_000);
      await page.getByTestId('train-reset').click();
      const saves = Number(await page.evaluate(() => document.body.dataset.autosaves ?? 0));
      await page.getByTestId('load-checkpoint').setInputFiles(ckpt);
      await waitForModelInfo(page, new RegExp(`restored at step ${steps}\\b`), 60_000);
      // a loaded file becomes "the last run": wait until that save has reached IndexedDB (it
      // reads the weights back from the GPU first), or the reload below would race it
      await page.waitForFunction((n) => Number(document.body.dataset.autosaves ?? 0) > n, saves, { timeout: 60_000 });
      await noErrors(page);

      // a bad file is an error in the page, not only in the console
      await page.getByTestId('load-checkpoint').setInputFiles({ name: 'junk.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('not a checkpoint') });
      await page.waitForFunction(() => !document.getElementById('errors')!.hidden, null, { timeout: 30_000 });
      expect((await page.locator('#error-list').textContent()) ?? '').toMatch(/junk\.safetensors/);
      await page.locator('#errors-clear').click();

      // reload: the last run comes back from IndexedDB (the autosave after the final step)
      await page.goto(`${site.url}?${SMALL_RUN.replace('&restore=0', '')}&steps=${steps}`);
      await waitForModelInfo(page, new RegExp(`restored at step ${steps}\\b`), 60_000);
      expect(await text(page, 'train-step')).toBe(String(steps));
      await noErrors(page);
      console.log(`webgpu: prompt, save, load, bad file, reload took ${((Date.now() - tTrain) / 1000).toFixed(1)}s`);
    } finally {
      await browser.close();
    }
  }, 300_000);

  it('falls back to the CPU backend when WebGPU is unavailable, and says why; bad data file; pause/resume', async () => {
    const browser = await launch([]); // no --enable-unsafe-webgpu: no adapter either
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      // a browser without WebGPU at all: navigator.gpu is undefined on the page
      await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }));
      const steps = 8;
      await page.goto(`${site.url}?${SMALL_RUN}&steps=${steps}&sampleEvery=4`);
      await page.waitForFunction(() => document.querySelector('[data-testid=backend-name]')?.textContent !== 'starting…', null, { timeout: 60_000 });
      expect(await text(page, 'backend-name')).toBe('wasm'); // the test server sends COOP/COEP, so the page is cross-origin isolated and runs the wasm backend
      expect(await page.locator('#backend-reason').textContent()).toMatch(/navigator\.gpu is missing/);

      // a bad data file: the error is in the page, naming the file and line
      await page.locator('#data-file').setInputFiles({ name: 'bad.jsonl', mimeType: 'text/plain', buffer: Buffer.from('{"text": "a story"}\nnot json\n') });
      await page.waitForFunction(() => /bad\.jsonl/.test(document.getElementById('data-name')?.textContent ?? ''));
      await page.getByTestId('train-start').click();
      await page.waitForFunction(() => !document.getElementById('errors')!.hidden, null, { timeout: 30_000 });
      expect((await page.locator('#error-list').textContent()) ?? '').toMatch(/bad\.jsonl: line 2 is not valid JSON/);
      await page.locator('#errors-clear').click();
      await page.locator('#data-clear').click(); // back to the built-in corpus

      // pause holds the step counter still; resume carries on
      await page.getByTestId('train-start').click();
      await waitForStep(page, 1, 60_000);
      const firstLoss = Number(await text(page, 'train-loss'));
      await waitForStep(page, 2, 60_000);
      await page.getByTestId('train-pause').click();
      await page.waitForFunction(() => !(document.querySelector('[data-testid=train-resume]') as HTMLButtonElement).disabled, null, { timeout: 30_000 });
      const paused = await text(page, 'train-step');
      await page.waitForTimeout(2000);
      expect(await text(page, 'train-step')).toBe(paused);
      await page.getByTestId('train-resume').click();

      const t0 = Date.now();
      const { first, last } = await trainAndCheck(page, steps, 120_000, { start: false, first: firstLoss });
      console.log(`cpu: ${steps} steps in ${((Date.now() - t0) / 1000).toFixed(1)}s, loss ${first} -> ${last}`);
      await page.screenshot({ path: join(ARTIFACTS, 'web-cpu-fallback.png'), fullPage: true });
    } finally {
      await browser.close();
    }
  }, 200_000);

  it('one checkpoint format: a page run resumes bit for bit in the CLI, and a CLI checkpoint loads in the page', async () => {
    const minichat = (...args: string[]) =>
      execFileSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'minichat.mjs'), ...args], { cwd: PROJECT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const browser = await launch([]);
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
      const page = await context.newPage();
      // CPU in the page (the WASM SIMD matmul, as in the CLI), so both compute the same bits.
      // 40 steps so that the pause lands mid-run; no validation or samples until the end.
      const steps = 40;
      await page.goto(`${site.url}?${SMALL_RUN}&backend=cpu&sampleEvery=0&sampleTokens=8&steps=${steps}`);
      await page.waitForFunction(() => document.querySelector('[data-testid=backend-name]')?.textContent === 'cpu', null, { timeout: 60_000 });
      await page.getByTestId('train-start').click();
      await waitForStep(page, 2, 60_000);
      await page.getByTestId('train-pause').click();
      await page.waitForFunction(() => !(document.querySelector('[data-testid=train-resume]') as HTMLButtonElement).disabled, null, { timeout: 30_000 });
      const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('save-checkpoint').click()]);
      const dir = tempDir('mc-web-cross-');
      const pageCkpt = join(dir, 'page.safetensors');
      await dl.saveAs(pageCkpt);
      await noErrors(page);
      const paused = decodeCheckpointFile(readFileSync(pageCkpt), pageCkpt).state!;
      expect(paused.step).toBeGreaterThanOrEqual(2);
      expect(paused.step).toBeLessThan(steps); // really mid-run, or the resume below would test nothing

      // the page's checkpoint in `minichat generate`
      const gen = JSON.parse(minichat('generate', '--ckpt', pageCkpt, '--prompt', 'Once upon a time', '--max-tokens', '5', '--json'));
      expect(gen.prompt).toBe('Once upon a time');
      expect(gen.tokens).toBeGreaterThan(0);

      // `minichat pretrain --resume FILE` (the checkpoint's spec, no flags) vs one uninterrupted run of that spec
      // the page ran the cpu reference (backend=cpu), so the CLI resumes on it too (its default is wasm)
      minichat('pretrain', '--resume', pageCkpt, '--out', join(dir, 'resumed'), '--backend', 'cpu', '--json');
      const straight = await pretrain({ ...SPEC_DEFAULTS, ...(paused.spec as object), out: join(dir, 'straight'), backend: cpu }, { log: () => {} });
      expect(straight.steps).toBe(steps);
      for (const f of ['model.safetensors', 'optimizer.safetensors']) {
        const a = readFileSync(join(dir, 'straight', 'checkpoint', f)), b = readFileSync(join(dir, 'resumed', 'checkpoint', f));
        expect(b.equals(a), `${f}: resumed page run equals the straight CLI run`).toBe(true);
      }

      // the CLI's checkpoint, packed into one file, loads in the page and generates
      const cliCkpt = join(dir, 'cli.safetensors');
      minichat('export', '--format', 'file', '--ckpt', join(dir, 'straight'), '--out', cliCkpt);
      await page.getByTestId('train-reset').click();
      await page.getByTestId('load-checkpoint').setInputFiles(cliCkpt);
      await waitForModelInfo(page, new RegExp(`restored at step ${steps}\\b`), 60_000);
      await noErrors(page);
      await page.getByTestId('prompt-input').fill('Once upon a time');
      await page.getByTestId('generate').click();
      await page.waitForFunction(() => /^Once upon a time/.test(document.querySelector('[data-testid=generate-output]')?.textContent ?? ''), null, { timeout: 60_000 });
      await noErrors(page);
    } finally {
      await browser.close();
    }
  }, 240_000);
});
