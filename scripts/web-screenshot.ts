// The README's picture of the demo page mid-training (docs/web-demo.png): build the page,
// serve it on 127.0.0.1, start a run in headless Chromium, wait until it is part-way through
// (a falling loss curve, a validation point, a sample), type a prompt, and take the shot.
//
//   node bin/run-ts.mjs scripts/web-screenshot.ts [--backend cpu|webgpu] [--at 60] [--out docs/web-demo.png]
//
// --backend webgpu (default when the browser offers an adapter) uses WebGPU, which on a
// machine without a GPU is SwiftShader and very slow; --backend cpu adds ?backend=cpu to the
// address (the banner then says so). The run's settings are in RUN below; the page shows them.
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { WEBGPU_ARGS, buildSite, launchChromium, serveStatic } from '../web/serve.ts';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' },
    at: { type: 'string', default: '60' },
    out: { type: 'string', default: 'docs/web-demo.png' },
  },
});
const at = Number(values.at);
const out = resolve(values.out!);
// The tiny preset with the page's defaults, on a smaller batch so a CPU gets there in minutes.
const RUN = 'preset=tiny&steps=150&batch=4&seq=64&stories=1000&vocab=512&sampleEvery=20&evalEvery=20&sampleTokens=40&restore=0';

await buildSite();
const { server, url } = await serveStatic();
const browser = await launchChromium(values.backend === 'webgpu' ? WEBGPU_ARGS : []);
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  await page.goto(`${url}?${RUN}${values.backend === 'cpu' ? '&backend=cpu' : ''}`);
  await page.getByTestId('train-start').click({ timeout: 60_000 });
  const t0 = Date.now();
  let reported = -1;
  while (true) {
    const [step, errors] = await page.evaluate(() => [
      Number(document.querySelector('[data-testid=train-step]')?.textContent),
      document.getElementById('errors')!.hidden ? '' : document.getElementById('error-list')!.textContent,
    ] as const);
    if (errors) throw new Error(`the page shows an error: ${errors}`);
    if (step >= at) break;
    if (step >= reported + 10) {
      console.log(`step ${step}/${at} (${((Date.now() - t0) / 1000).toFixed(0)}s)`);
      reported = step;
    }
    await page.waitForTimeout(1000);
  }
  // prompt the model while it trains (the request waits for the current step)
  await page.getByTestId('prompt-input').fill('Once upon a time');
  await page.getByTestId('generate').click();
  await page.waitForFunction(() => /^Once upon a time/.test(document.querySelector('[data-testid=generate-output]')?.textContent ?? ''), null, { timeout: 120_000 });
  await page.waitForTimeout(300); // one more chart frame
  mkdirSync(dirname(out), { recursive: true });
  await page.screenshot({ path: out });
  console.log(`wrote ${out} at step ${await page.getByTestId('train-step').textContent()} after ${((Date.now() - t0) / 1000).toFixed(0)}s`);
} finally {
  await browser.close();
  server.close();
}
