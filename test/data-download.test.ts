// The downloader against a local HTTP server on 127.0.0.1 (never any other address):
// success, skipping complete files, resuming an interrupted .part with a Range request,
// HTTP errors and a refused connection, each as one clear UserError line.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { downloadDataset, downloadFile, downloadHfModel, findDataset, nextStep, DATASETS } from '../src/data/download.ts';
import { importHF } from '../src/io/hf-import.ts';
import { readConversationFile } from '../src/data/conversations.ts';
import { UserError } from '../src/util/errors.ts';

// Fixture bytes: the two TinyStories file names, served from the server's root, so that
// `--base-url http://127.0.0.1:PORT` replaces huggingface.co.
const files: Record<string, Buffer> = {
  '/TinyStoriesV2-GPT4-train.txt': Buffer.from('Once upon a time.\n<|endoftext|>\nThe end.\n'.repeat(2000)),
  '/TinyStoriesV2-GPT4-valid.txt': Buffer.from('A small valid file.\n<|endoftext|>\n'),
};
// The SFT recipes' fixtures, served from the same server.
const sftFiles: Record<string, Buffer> = {
  // MiniMind's SFT layout: {"conversations": [...]} per line
  '/sft_mini_512.jsonl': Buffer.from(
    [
      { conversations: [{ role: 'user', content: '你好' }, { role: 'assistant', content: '你好！有什么可以帮你？' }] },
      { conversations: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] },
    ].map((o) => JSON.stringify(o)).join('\n') + '\n',
  ),
};
// smol-smoltalk's files live under data/ on the server (the registry's paths), saved flat
for (const name of ['train-00000-of-00004', 'train-00001-of-00004', 'train-00002-of-00004', 'train-00003-of-00004', 'test-00000-of-00001']) {
  sftFiles[`/data/${name}.parquet`] = Buffer.from(`not really parquet: ${name}`);
}
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
    const body = files[url] ?? sftFiles[url];
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

  it('SFT recipes: MiniMind sft_mini_512 downloads and reads as conversations; smol-smoltalk files land flat', async () => {
    const mm = join(dir, 'mm');
    await downloadDataset('minimind-sft', mm, { baseUrl: base });
    const convs = await readConversationFile(join(mm, 'sft_mini_512.jsonl'));
    expect(convs.length).toBe(2);
    expect(convs[1]).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: [{ type: 'text', text: 'Hello.' }] },
    ]);
    expect(nextStep(findDataset('minimind-sft'), mm)).toBe(`minichat sft --data ${mm}/sft_mini_512.jsonl`);

    const st = join(dir, 'st');
    const r = await downloadDataset('smol-smoltalk', st, { baseUrl: base });
    expect(r.map((x) => x.path)).toEqual(findDataset('smol-smoltalk').files.map((f) => join(st, f.filename)));
    expect(readFileSync(join(st, 'test-00000-of-00001.parquet'), 'utf8')).toBe('not really parquet: test-00000-of-00001');
    expect(requests.some((q) => q.url === '/data/train-00003-of-00004.parquet')).toBe(true);
    // the next step names the four train files; a file that is not parquet is one clear error
    expect(nextStep(findDataset('smol-smoltalk'), st)).toBe(`minichat sft --data ${[0, 1, 2, 3].map((i) => `${st}/train-0000${i}-of-00004.parquet`).join(',')}`);
    await expect(readConversationFile(join(st, 'test-00000-of-00001.parquet'))).rejects.toThrow(/test-00000-of-00001\.parquet: could not read a "messages" column/);
    // pretraining sets still point at data prepare
    expect(nextStep(findDataset('tinystories'), 'D')).toBe('minichat data prepare --data D/TinyStoriesV2-GPT4-train.txt --tokenizer TOK --out SHARDS');
  });
});

// --hf-model: a local server laid out like huggingface.co (OWNER/NAME/resolve/main/FILE)
// serving the committed Llama fixture, sharded, so the index path is the one exercised
describe('--hf-model: a Hugging Face model repository for minichat import', () => {
  const FIXTURE = join(import.meta.dirname, 'fixtures', 'hf-llama-tiny');
  const FILES = ['config.json', 'tokenizer.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  let hf: Server, hfBase: string;
  const seen: string[] = [];
  beforeAll(async () => {
    hf = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      const m = /^\/TinyOrg\/tiny-llama\/resolve\/main\/([\w.-]+)$/.exec(req.url ?? '');
      if (!m || !FILES.includes(m[1])) return void res.writeHead(404).end('Entry not found');
      const body = readFileSync(join(FIXTURE, m[1]));
      res.writeHead(200, { 'content-length': String(body.length) }).end(req.method === 'HEAD' ? undefined : body);
    });
    await new Promise<void>((r) => hf.listen(0, '127.0.0.1', () => r()));
    hfBase = `http://127.0.0.1:${(hf.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((r) => hf.close(r)));

  it('fetches config, tokenizer, the index and every shard it names; the result imports', async () => {
    const out = join(dir, 'hf-tiny');
    const r = await downloadHfModel('TinyOrg/tiny-llama', out, { baseUrl: hfBase });
    expect(r.map((x) => basename(x.path)).sort()).toEqual([...FILES].sort());
    for (const f of FILES) expect(readFileSync(join(out, f)).equals(readFileSync(join(FIXTURE, f))), f).toBe(true);
    expect(seen).toContain('HEAD /TinyOrg/tiny-llama/resolve/main/model.safetensors.index.json');
    expect(seen.some((s) => s.endsWith('/model.safetensors'))).toBe(false); // sharded: no single file asked for
    const imported = await importHF(out);
    expect(imported.architecture).toBe('LlamaForCausalLM');
    // again: everything complete is skipped
    expect((await downloadHfModel('TinyOrg/tiny-llama', out, { baseUrl: hfBase })).every((x) => x.skipped)).toBe(true);
  });

  it('a repository that does not exist, or a malformed name, is one clear line', async () => {
    await expect(downloadHfModel('TinyOrg/missing', join(dir, 'hf-missing'), { baseUrl: hfBase })).rejects.toThrow(UserError);
    await expect(downloadHfModel('TinyOrg/missing', join(dir, 'hf-missing'), { baseUrl: hfBase })).rejects.toThrow(/404/);
    await expect(downloadHfModel('not a name', join(dir, 'hf-bad'))).rejects.toThrow(/OWNER\/NAME/);
  });
});
