// Chat in the page, in a real browser (headless Chromium, as test/web.test.ts): pretrain a few
// steps, press "Fine-tune for chat" (the SFT run core on the built-in chat data, in the
// worker), then send a chat message and watch the reply stream in: several partial updates of
// the assistant's bubble must arrive before the reply is done.
//
// CPU backend (the WASM SIMD matmul): SwiftShader's WebGPU would make the SFT steps, at rows
// of 64 tokens, minutes long. Everything is tiny (see the URL below): the model barely learns,
// which is fine, because the test is about the flow and the streaming, not the answers
// (test/sft-story-qa.test.ts measures what SFT teaches).
// (Skipped only as test/browser.ts says.)
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { launchChromium } from '../web/serve.ts';
import { ARTIFACTS, servePage, skipBrowser, waitOrError } from './browser.ts';

// pretraining: 4 steps of 2 x 32 tokens; SFT: 3 steps of 2 rows of 64 tokens on 40 built-in
// conversations; replies of up to 32 tokens at temperature 1 (a barely trained model at a
// lower temperature may end its turn at once, and an empty reply streams nothing)
const RUN = 'preset=tiny&batchSize=2&seqLen=32&syntheticStories=200&vocabSize=300&lr=0.01&evalEvery=0&sampleEvery=0&sampleTokens=4&restore=0&backend=cpu&steps=4';
const SFT = 'sftSteps=3&sftBatchSize=2&sftSeqLen=64&sftExamples=40&chatTokens=32&chatTemperature=1';

describe.skipIf(skipBrowser('test/web-chat.test.ts'))('chat in the page (Chromium)', () => {
  const site = servePage();

  it('SFT in the page, then a chat reply streams', async () => {
    const browser = await launchChromium([]);
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
      await page.goto(`${site.url}?${RUN}&${SFT}`);
      await waitOrError(page, `document.querySelector('[data-testid=backend-name]')?.textContent === 'cpu'`, 60_000);

      // pretrain, then fine-tune: the button is usable once pretraining has stopped
      await page.getByTestId('train-start').click();
      await waitOrError(page, `!document.querySelector('[data-testid=sft-start]').disabled`, 120_000);
      expect(await page.getByTestId('sft-start').isDisabled()).toBe(false);
      await page.getByTestId('sft-start').click();
      await waitOrError(page, `!document.querySelector('[data-testid=chat-send]').disabled`, 120_000);
      expect(await page.getByTestId('sft-step').textContent()).toBe('3');
      const sftLoss = Number(await page.getByTestId('sft-loss').textContent());
      expect(Number.isFinite(sftLoss) && sftLoss > 0).toBe(true);
      expect(Number(await page.getByTestId('sft-val').textContent())).toBeGreaterThan(0); // validated at the end

      // record every distinct text of the reply bubble while it streams
      await page.evaluate(() => {
        const w = window as unknown as { snapshots: string[] };
        w.snapshots = [];
        new MutationObserver(() => {
          const el = document.querySelector('[data-testid=chat-reply]') as HTMLElement | null;
          if (!el || el.dataset.done) return;
          const t = el.textContent ?? '';
          if (t && t !== w.snapshots.at(-1)) w.snapshots.push(t);
        }).observe(document.getElementById('chat-log')!, { subtree: true, childList: true, characterData: true });
      });
      await page.getByTestId('chat-input').fill('Hello! Who are you?');
      await page.getByTestId('chat-send').click();
      await waitOrError(page, `document.querySelector('[data-testid=chat-reply]')?.dataset.done !== undefined`, 60_000);
      const done = await page.getByTestId('chat-reply').getAttribute('data-done');
      expect(['stop', 'length']).toContain(done);
      const deltas = Number(await page.getByTestId('chat-reply').getAttribute('data-deltas'));
      const snapshots = await page.evaluate(() => (window as unknown as { snapshots: string[] }).snapshots);
      const final = (await page.getByTestId('chat-reply').textContent()) ?? '';
      console.log(`web chat: ${deltas} deltas, ${snapshots.length} partial texts, finish ${done}, reply ${JSON.stringify(final)}`);
      // streamed: the bubble grew in several steps, each a prefix of the final reply
      expect(deltas).toBeGreaterThanOrEqual(3);
      expect(snapshots.length).toBeGreaterThanOrEqual(3);
      for (const s of snapshots) expect(final.startsWith(s)).toBe(true);
      await page.screenshot({ path: join(ARTIFACTS, 'web-chat.png'), fullPage: true });
    } finally {
      await browser.close();
    }
  }, 300_000);
});
