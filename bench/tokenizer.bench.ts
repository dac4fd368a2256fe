// Tokenizer benchmark (`npm run bench -- tokenizer`):
//   - encode speed in MB/s on the same text for: our TypeScript encoder (first pass with an
//     empty chunk cache, and a second, warm pass), our fast path (npm tiktoken WASM fed our
//     ranks), and tiktoken's own cl100k_base;
//   - training seconds for vocab 4,096 and 32,768.
// Text: tinyshakespeare + tinystories_sample from ../shared/data (beside the repository);
// when that folder is absent the suite records a note and measures nothing.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { get_encoding } from 'tiktoken';
import { Tokenizer, trainTokenizer, createFastEncoder } from '../src/tokenizer/index.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dataDir = join(root, '..', 'shared', 'data');
const FILES = ['tinyshakespeare.txt', 'tinystories_sample.txt'];

/** Seconds taken by f, and its result. */
function timed<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const r = f();
  return [r, (performance.now() - t0) / 1000];
}

async function timedAsync<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, (performance.now() - t0) / 1000];
}

export default {
  name: 'tokenizer',
  async run(): Promise<Record<string, unknown>> {
    const paths = FILES.map((f) => join(dataDir, f));
    if (!paths.every(existsSync)) return { note: `skipped: ${dataDir} does not hold ${FILES.join(' and ')}` };
    const text = paths.map((p) => readFileSync(p, 'utf8')).join('\n');
    const MB = new TextEncoder().encode(text).length / 1e6;
    const mbps = (s: number) => +(MB / s).toFixed(2);

    // --- encoding, cl100k_base ranks, the same text for all three ---
    const ours = await Tokenizer.builtin('cl100k_base');
    const [idsCold, tCold] = timed(() => ours.encodeOrdinary(text));
    const [, tWarm] = timed(() => ours.encodeOrdinary(text));
    const fast = await createFastEncoder(ours);
    const [idsFast, tFast] = timed(() => fast.encodeToArray(text));
    fast.free();
    const enc = get_encoding('cl100k_base');
    const [idsTik, tTik] = timed(() => enc.encode(text, [], []));
    enc.free();
    const agree = idsCold.length === idsTik.length && idsCold.every((id, i) => id === idsTik[i] && id === idsFast[i]);

    // --- training ---
    const training: Record<string, unknown> = {};
    let small: Tokenizer | undefined;
    for (const vocabSize of [4096, 32768]) {
      const [tok, s] = await timedAsync(() => trainTokenizer([text], { vocabSize }));
      training[`vocab_${vocabSize}`] = { seconds: +s.toFixed(2), vocab_size: tok.vocabSize, bytes_per_token: +((MB * 1e6) / tok.encodeOrdinary(text).length).toFixed(3) };
      small ??= tok;
    }

    // --- encoding with our own 4,096-token tokenizer: TypeScript vs fast path ---
    const tsSmall = small!;
    timed(() => tsSmall.encodeOrdinary(text)); // warm the cache
    const [, tSmallTs] = timed(() => tsSmall.encodeOrdinary(text));
    const fastSmall = await createFastEncoder(tsSmall);
    const [, tSmallFast] = timed(() => fastSmall.encodeToArray(text));
    fastSmall.free();

    return {
      text_mb: +MB.toFixed(3),
      encode_cl100k_mb_per_s: {
        typescript_cold_cache: mbps(tCold),
        typescript_warm_cache: mbps(tWarm),
        fast_path_wasm_our_ranks: mbps(tFast),
        tiktoken_npm: mbps(tTik),
        all_agree: agree,
      },
      encode_trained_4096_mb_per_s: { typescript_warm_cache: mbps(tSmallTs), fast_path_wasm: mbps(tSmallFast) },
      training,
    };
  },
};
