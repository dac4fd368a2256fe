// The downloader against a local HTTP server on 127.0.0.1 (never any other address):
// success, skipping complete files, resuming an interrupted .part with a Range request,
// HTTP errors and a refused connection, each as one clear UserError line.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadDataset, downloadFile, findDataset, DATASETS } from '../src/data/download.ts';
import { UserError } from '../src/util/errors.ts';

// Fixture bytes: the two TinyStories file names, served from the server's root, so that
// `--base-url http://127.0.0.1:PORT` replaces huggingface.co.
const files: Record<string, Buffer> = {
  '/TinyStoriesV2-GPT4-train.txt': Buffer.from('Once upon a time.\n<|endoftext|>\nThe end.\n'.repeat(2000)),
  '/TinyStoriesV2-GPT4-valid.txt': Buffer.from('A small valid file.\n<|endoftext|>\n'),
};
const requests: { url: string; range?: string }[] = [];
let server: Server, base: string, dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'minichat-dl-'));
  server = createServer((req, res) => {
    const url = req.url ?? '/';
    requests.push({ url, range: req.headers.range });
    if (url === '/cut.txt') {
      // promises 1000 bytes, sends 300, then drops the connection
      res.writeHead(200, { 'content-length': '1000' });
      res.write(Buffer.alloc(300, 97));
      setTimeout(() => res.destroy(), 20);
      return;
    }
    const body = files[url];
    if (!body) {
      res.writeHead(404, 'Not Found').end('no such file');
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      const from = Number(m[1]);
      if (from >= body.length) return void res.writeHead(416).end();
      res.writeHead(206, { 'content-length': String(body.length - from), 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` });
      return void res.end(body.subarray(from));
    }
    res.writeHead(200, { 'content-length': String(body.length) }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe('download', () => {
  it('the registry names the files it promises', () => {
    expect(findDataset('tinystories').files.map((f) => f.filename)).toEqual(['TinyStoriesV2-GPT4-train.txt', 'TinyStoriesV2-GPT4-valid.txt']);
    expect(DATASETS.map((d) => d.name)).toEqual(expect.arrayContaining(['tinystories', 'minimind-pretrain', 'gsm8k']));
    expect(() => findDataset('nope')).toThrow(/unknown data set "nope"/);
  });

  it('downloads a data set from --base-url, then skips complete files', async () => {
    const out = join(dir, 'ts');
    const lines: string[] = [];
    const r1 = await downloadDataset('tinystories', out, { baseUrl: base + '/', log: (l) => lines.push(l) });
    expect(r1.map((r) => r.skipped)).toEqual([false, false]);
    for (const [name, body] of Object.entries(files)) expect(readFileSync(join(out, name)).equals(body)).toBe(true);
    expect(existsSync(join(out, 'TinyStoriesV2-GPT4-train.txt.part'))).toBe(false);
    expect(lines.some((l) => l.includes('done'))).toBe(true);

    const before = requests.length;
    const r2 = await downloadDataset('tinystories', out, { baseUrl: base });
    expect(r2.map((r) => r.skipped)).toEqual([true, true]);
    expect(requests.length).toBe(before); // nothing fetched
  });

  it('resumes an interrupted .part with a Range request', async () => {
    const dest = join(dir, 'resume.txt');
    const body = files['/TinyStoriesV2-GPT4-train.txt'];
    writeFileSync(dest + '.part', body.subarray(0, 1234));
    const r = await downloadFile(`${base}/TinyStoriesV2-GPT4-train.txt`, dest);
    expect(requests.at(-1)!.range).toBe('bytes=1234-');
    expect(r.bytes).toBe(body.length);
    expect(readFileSync(dest).equals(body)).toBe(true);
  });

  it('HTTP 404 is one line naming the URL and the way out', async () => {
    const url = `${base}/missing.txt`;
    const p = downloadFile(url, join(dir, 'missing.txt'));
    await expect(p).rejects.toThrow(UserError);
    await expect(downloadFile(url, join(dir, 'missing.txt'))).rejects.toThrow(
      `could not download ${url}: HTTP 404 Not Found. If this machine is offline, download the file by hand (or use --base-url for a mirror) and pass it with --data FILE`,
    );
    expect(existsSync(join(dir, 'missing.txt'))).toBe(false);
  });

  it('a refused connection is one clear line', async () => {
    // a port that was just free: listen on it, close it, then connect to it
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    const url = `http://127.0.0.1:${port}/x.txt`;
    await expect(downloadFile(url, join(dir, 'x.txt'))).rejects.toThrow(`could not download ${url}: connection refused (ECONNREFUSED)`);
  });

  it('a transfer cut short keeps the .part and says to run again', async () => {
    const dest = join(dir, 'cut.txt');
    await expect(downloadFile(`${base}/cut.txt`, dest)).rejects.toThrow(/could not download .*cut\.txt: (the transfer stopped after|got 300 bytes)/);
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(dest + '.part')).toBe(true);
  });
});
