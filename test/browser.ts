// What the browser tests (test/web.test.ts, test/web-chat.test.ts) share: whether they run,
// the built page served on 127.0.0.1 for the file's tests, and the page's error panel as a
// failure with the page's own words.
//
// A browser test is skipped (with a printed reason) only when /usr/bin/chromium is missing and
// MINICHAT_REQUIRE_BROWSER is unset; CI sets MINICHAT_REQUIRE_BROWSER=1.
import { existsSync, mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { CHROMIUM, DIST, PROJECT_ROOT, buildSite, serveStatic } from '../web/serve.ts';

export type Page = import('playwright-core').Page;

/** Screenshots and traces of the browser tests land here. */
export const ARTIFACTS = join(PROJECT_ROOT, 'test-artifacts');

/** Whether `file`'s browser tests should be skipped; says why when they are. */
export function skipBrowser(file: string): boolean {
  const skip = !existsSync(CHROMIUM) && !process.env.MINICHAT_REQUIRE_BROWSER;
  if (skip) console.log(`${file}: skipped: ${CHROMIUM} is missing (set MINICHAT_REQUIRE_BROWSER=1 to make this a failure)`);
  return skip;
}

/** Build the page and serve it for this describe block's tests; returns its URL (read it
 *  inside a test, after beforeAll ran). */
export function servePage(): { readonly url: string } {
  let server: Server | undefined;
  const site = { url: '' };
  beforeAll(async () => {
    await buildSite();
    ({ server, url: site.url } = await serveStatic(DIST));
    mkdirSync(ARTIFACTS, { recursive: true });
  }, 120_000);
  afterAll(() => new Promise<void>((ok) => (server ? server.close(() => ok()) : ok())));
  return site;
}

/** Fail fast, with the page's own words, if its error panel shows anything. */
export async function noErrors(page: Page): Promise<void> {
  expect(await page.locator('#error-list li').allTextContents(), 'errors shown in the page').toEqual([]);
}

/** Wait for the expression `fn` to hold in the page, or for its error panel to open (then
 *  fail with its words). */
export async function waitOrError(page: Page, fn: string, timeout: number): Promise<void> {
  await page.waitForFunction(`(${fn}) || !document.getElementById('errors').hidden`, null, { timeout, polling: 200 });
  await noErrors(page);
}
