// Downloading public pretraining data sets: a small registry and a careful downloader.
//
// `minichat data download NAME` fetches each file of a registry entry with Node's global
// fetch and streams it to disk, so a 2 GB file never sits in memory:
//
//   - bytes go to `FILE.part`; only a complete download is renamed to `FILE`, so a file
//     with its final name is always whole, and a second run skips it (resume-safe);
//   - an interrupted `.part` is continued with an HTTP Range request when the server
//     supports it (status 206), else started again;
//   - when the server sends Content-Length (or the registry knows the size), the byte count
//     is checked before the rename;
//   - offline, DNS failure, refused connection or an HTTP error status: one line naming the
//     URL, what went wrong, and how to continue by hand (download it, pass it with --data).
//
// Two kinds of data set: pretraining text (read by `minichat data prepare`) and SFT
// conversations (read by `minichat sft --data`, src/data/conversations.ts); `stage` says which,
// and nextStep() prints the command that uses the download.
//
// `baseUrl` overrides where the files come from (a mirror such as hf-mirror.com, or a local
// test server); the file paths inside the data set stay the same.
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, stat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../util/errors.ts';

export interface DatasetFile {
  /** Path under the data set's base URL. */
  path: string;
  /** Name on disk. */
  filename: string;
  /** Exact size in bytes when known (then checked); else Content-Length is used if sent. */
  bytes?: number;
  /** Rough size for `data list`, in words. */
  approxSize: string;
}

export interface Dataset {
  name: string;
  description: string;
  license: string;
  homepage: string;
  baseUrl: string;
  files: DatasetFile[];
  /** What the data is for: pretraining text (default) or SFT conversations. */
  stage?: 'pretrain' | 'sft';
  /** The flags that read it once downloaded (DIR = the download directory): for `data
   *  prepare` when stage is pretrain, for `sft` when it is sft. */
  prepareFlags: string;
  /** Anything else a user should know about the format. */
  note?: string;
}

export const DATASETS: Dataset[] = [
  {
    name: 'tinystories',
    description: 'TinyStories V2 (GPT-4 generated short stories for small models; Eldan & Li, 2023)',
    license: 'CDLA-Sharing-1.0',
    homepage: 'https://huggingface.co/datasets/roneneldan/TinyStories',
    baseUrl: 'https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main',
    files: [
      { path: 'TinyStoriesV2-GPT4-train.txt', filename: 'TinyStoriesV2-GPT4-train.txt', approxSize: '2.2 GB' },
      { path: 'TinyStoriesV2-GPT4-valid.txt', filename: 'TinyStoriesV2-GPT4-valid.txt', approxSize: '22 MB' },
    ],
    prepareFlags: '--data DIR/TinyStoriesV2-GPT4-train.txt',
    note: 'stories are separated by <|endoftext|> lines (found automatically)',
  },
  {
    name: 'tinystories-valid',
    description: 'only the TinyStories V2 validation file: a small real corpus for quick experiments',
    license: 'CDLA-Sharing-1.0',
    homepage: 'https://huggingface.co/datasets/roneneldan/TinyStories',
    baseUrl: 'https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main',
    files: [{ path: 'TinyStoriesV2-GPT4-valid.txt', filename: 'TinyStoriesV2-GPT4-valid.txt', approxSize: '22 MB' }],
    prepareFlags: '--data DIR/TinyStoriesV2-GPT4-valid.txt',
  },
  {
    name: 'minimind-pretrain',
    description: "MiniMind's pretraining corpus pretrain_hq.jsonl (Chinese and English, {\"text\": ...} per line)",
    license: 'Apache-2.0',
    homepage: 'https://huggingface.co/datasets/jingyaogong/minimind_dataset',
    baseUrl: 'https://huggingface.co/datasets/jingyaogong/minimind_dataset/resolve/main',
    files: [{ path: 'pretrain_hq.jsonl', filename: 'pretrain_hq.jsonl', approxSize: '1.6 GB' }],
    prepareFlags: '--data DIR/pretrain_hq.jsonl',
    note: 'one {"text": ...} object per line; "text" is the default --text-field',
  },
  {
    name: 'gsm8k',
    description: 'GSM8K grade-school math word problems (Cobbe et al., 2021), from the GitHub release',
    license: 'MIT',
    homepage: 'https://github.com/openai/grade-school-math',
    baseUrl: 'https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data',
    files: [
      { path: 'train.jsonl', filename: 'train.jsonl', approxSize: '4 MB' },
      { path: 'test.jsonl', filename: 'test.jsonl', approxSize: '0.7 MB' },
    ],
    prepareFlags: '--data DIR/train.jsonl --text-field question',
    note: 'one {"question", "answer"} object per line; used later for SFT and RL, here only its questions',
  },
  {
    name: 'minimind-sft',
    description: "MiniMind's small SFT set sft_mini_512.jsonl (Chinese and English chats up to 512 tokens)",
    license: 'Apache-2.0',
    homepage: 'https://huggingface.co/datasets/jingyaogong/minimind_dataset',
    baseUrl: 'https://huggingface.co/datasets/jingyaogong/minimind_dataset/resolve/main',
    files: [{ path: 'sft_mini_512.jsonl', filename: 'sft_mini_512.jsonl', approxSize: '1.2 GB' }],
    stage: 'sft',
    prepareFlags: '--data DIR/sft_mini_512.jsonl',
    note: 'one {"conversations": [{"role", "content"}, ...]} object per line (read as is by minichat sft)',
  },
  {
    name: 'smol-smoltalk',
    description: 'smol-smoltalk: SmolLM2\'s SFT mix for small models (English chats; Allal et al., 2025)',
    license: 'Apache-2.0',
    homepage: 'https://huggingface.co/datasets/HuggingFaceTB/smol-smoltalk',
    baseUrl: 'https://huggingface.co/datasets/HuggingFaceTB/smol-smoltalk/resolve/main',
    files: [
      ...[0, 1, 2, 3].map((i) => ({ path: `data/train-0000${i}-of-00004.parquet`, filename: `train-0000${i}-of-00004.parquet`, approxSize: '230 MB' })),
      { path: 'data/test-00000-of-00001.parquet', filename: 'test-00000-of-00001.parquet', approxSize: '48 MB' },
    ],
    stage: 'sft',
    prepareFlags: '--data ' + [0, 1, 2, 3].map((i) => `DIR/train-0000${i}-of-00004.parquet`).join(','),
    note: 'parquet with a "messages" column of [{"role", "content"}] lists; each file is read whole into memory',
  },
];

/** The command that uses a downloaded data set (DIR replaced by where it was saved). */
export function nextStep(d: Dataset, dir: string): string {
  const flags = d.prepareFlags.replaceAll('DIR', dir);
  return d.stage === 'sft' ? `minichat sft ${flags}` : `minichat data prepare ${flags} --tokenizer TOK --out SHARDS`;
}

export function findDataset(name: string): Dataset {
  const d = DATASETS.find((x) => x.name === name);
  if (!d) throw new UserError(`unknown data set "${name}" (known: ${DATASETS.map((x) => x.name).join(', ')}; see "minichat data list")`);
  return d;
}

export function fileUrl(d: Dataset, f: DatasetFile, baseUrl?: string): string {
  return `${(baseUrl ?? d.baseUrl).replace(/\/+$/, '')}/${f.path}`;
}

export interface DownloadOptions {
  /** Override the data set's base URL (a mirror, or a test server). */
  baseUrl?: string;
  /** Progress and status lines. */
  log?: (line: string) => void;
  /** Minimum seconds between progress lines for one file. Default 2. */
  progressSeconds?: number;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  /** true when the complete file was already there. */
  skipped: boolean;
}

const MB = 1024 * 1024;
const fmtMB = (n: number) => (n >= MB ? `${(n / MB).toFixed(1)} MB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KB` : `${n} bytes`);

/** Turn a fetch failure into one line a user can act on. */
function downloadError(url: string, what: string): UserError {
  return new UserError(
    `could not download ${url}: ${what}. If this machine is offline, download the file by hand ` +
      `(or use --base-url for a mirror) and pass it with --data FILE`,
  );
}

function describeFetchError(e: unknown): string {
  // Node's fetch (undici) throws TypeError("fetch failed") with the socket error as cause.
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (e as { code?: string }).code;
  if (code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED)';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `the host name could not be resolved (${code}; offline?)`;
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return `the connection timed out (${code})`;
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return `the connection was cut (${code})`;
  return `${(e as Error).message}${cause?.message ? ` (${cause.message})` : ''}`;
}

async function sizeOf(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch {
    return null;
  }
}

/** Download one URL to `dest` via `dest.part`; skip when `dest` is already there. */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions & { expectedBytes?: number } = {}): Promise<DownloadResult> {
  const log = opts.log ?? (() => {});
  const done = await sizeOf(dest);
  if (done !== null && (opts.expectedBytes === undefined || done === opts.expectedBytes)) {
    log(`${dest}: already complete (${fmtMB(done)}), skipped`);
    return { path: dest, bytes: done, skipped: true };
  }
  const part = dest + '.part';
  const have = (await sizeOf(part)) ?? 0;

  let res: Response;
  try {
    res = await fetch(url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {}, redirect: 'follow' });
  } catch (e) {
    throw downloadError(url, describeFetchError(e));
  }
  // 206: the server continues where the .part stopped. 416: the .part is already whole
  // (it was interrupted between the last byte and the rename).
  if (res.status === 416 && have > 0) {
    await res.body?.cancel();
    await rename(part, dest);
    log(`${dest}: completed from ${part} (${fmtMB(have)})`);
    return { path: dest, bytes: have, skipped: false };
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw downloadError(url, `HTTP ${res.status}${res.statusText ? ' ' + res.statusText : ''}`);
  }
  const resuming = res.status === 206 && have > 0;
  const start = resuming ? have : 0;
  const lengthHeader = res.headers.get('content-length');
  const total = lengthHeader !== null ? start + Number(lengthHeader) : opts.expectedBytes;
  log(`${url} -> ${dest}${resuming ? ` (resuming at ${fmtMB(have)})` : ''}${total ? ` [${fmtMB(total)}]` : ''}`);

  const out = createWriteStream(part, { flags: resuming ? 'a' : 'w' });
  const outDone = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
  });
  let bytes = start, lastLog = performance.now();
  const t0 = lastLog, every = (opts.progressSeconds ?? 2) * 1000;
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      // respect back-pressure: wait for the disk when the stream's buffer is full
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      bytes += chunk.length;
      const now = performance.now();
      if (now - lastLog >= every) {
        lastLog = now;
        const rate = (bytes - start) / MB / ((now - t0) / 1000);
        log(`  ${fmtMB(bytes)}${total ? ` / ${fmtMB(total)} (${((100 * bytes) / total).toFixed(0)}%)` : ''}  ${rate.toFixed(1)} MB/s`);
      }
    }
  } catch (e) {
    out.end();
    await outDone.catch(() => {});
    throw downloadError(url, `the transfer stopped after ${fmtMB(bytes)}: ${describeFetchError(e)}; run the command again to resume`);
  }
  out.end();
  await outDone;
  const expected = opts.expectedBytes ?? total;
  if (expected !== undefined && bytes !== expected) {
    if (bytes > expected) await rm(part, { force: true }); // not resumable: start over next time
    throw downloadError(url, `got ${bytes} bytes, expected ${expected}; run the command again`);
  }
  await rename(part, dest);
  log(`  done: ${fmtMB(bytes)} in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  return { path: dest, bytes, skipped: false };
}

/** Download every file of a registry entry into `outDir`. */
export async function downloadDataset(name: string, outDir: string, opts: DownloadOptions = {}): Promise<DownloadResult[]> {
  const d = findDataset(name);
  await mkdir(outDir, { recursive: true });
  const results: DownloadResult[] = [];
  for (const f of d.files) {
    results.push(await downloadFile(fileUrl(d, f, opts.baseUrl), join(outDir, f.filename), { ...opts, expectedBytes: f.bytes }));
  }
  return results;
}

/** Where Hugging Face model repositories are served from; `--base-url` replaces it (a mirror). */
export const HF_BASE_URL = 'https://huggingface.co';

/**
 * Download the files `minichat import --hf` reads from a Hugging Face model repository
 * (`NAME` = "owner/model"): config.json, tokenizer.json, and the weights — the shard index
 * model.safetensors.index.json and every shard it names when the repository is sharded, else
 * the single model.safetensors. Resume-safe like the data sets (complete files are skipped).
 */
export async function downloadHfModel(name: string, outDir: string, opts: DownloadOptions = {}): Promise<DownloadResult[]> {
  if (!/^[\w.-]+\/[\w.-]+$/.test(name)) throw new UserError(`--hf-model takes OWNER/NAME as on huggingface.co (e.g. HuggingFaceTB/SmolLM2-135M), got "${name}"`);
  const root = `${(opts.baseUrl ?? HF_BASE_URL).replace(/\/+$/, '')}/${name}/resolve/main`;
  await mkdir(outDir, { recursive: true });
  const get = (file: string) => downloadFile(`${root}/${file}`, join(outDir, file), opts);
  const results = [await get('config.json'), await get('tokenizer.json')];
  // sharded or not: a repository with an index has no model.safetensors, so ask for the index first
  let sharded: boolean;
  try {
    sharded = (await fetch(`${root}/model.safetensors.index.json`, { method: 'HEAD', redirect: 'follow' })).ok;
  } catch (e) {
    throw new UserError(`cannot reach ${root}: ${(e as Error).message}`);
  }
  if (!sharded) return [...results, await get('model.safetensors')];
  const index = await get('model.safetensors.index.json');
  results.push(index);
  let shards: string[];
  try {
    const map = JSON.parse(await readFile(index.path, 'utf8')).weight_map as Record<string, string>;
    shards = [...new Set(Object.values(map))];
  } catch (e) {
    throw new UserError(`${index.path}: not a safetensors index with a weight_map (${(e as Error).message})`);
  }
  for (const s of shards) {
    if (!/^[\w.-]+\.safetensors$/.test(s)) throw new UserError(`${index.path}: shard name "${s}" is not a plain .safetensors file name`);
    results.push(await get(s));
  }
  return results;
}
