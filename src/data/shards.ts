// Documents → token ids, with one BOS token at the start of every document, split into a
// training and a held-out validation set; on disk as "shards", or in memory for the browser.
//
// Why BOS per document: the loader cuts random windows that cross document boundaries.
// The BOS token marks "a new, unrelated text starts here", so the model learns not to carry
// the previous story's characters into the next one, and at sampling time we can start a
// fresh document by feeding BOS alone.
//
// The validation split holds out whole documents, never pieces of one (a half-seen story
// in the validation set would make the validation loss look better than it is). Which
// documents are held out is a pure function of their position in the stream and the
// fraction f (isValidationDocument): document i is held out when ceil((i+1)·f) > ceil(i·f),
// i.e. documents 0, 1/f, 2/f, ... — evenly spread, exact in proportion, the same on every
// run, and decidable while streaming without knowing how many documents there will be.
//
// On-disk layout of a shard directory (written by writeShards, read by loadShards):
//
//   meta.json    what is in it: dtype, token and document counts, tokenizer vocab size and
//                fingerprint, the source, the validation split
//   tokens.bin   training tokens      (32-byte header + little-endian uint16 or int32 ids)
//   val.bin      validation tokens    (same format)
//
// The .bin header: 8 bytes magic "MCTOKENS", uint32 version (1), uint32 bytes per token
// (2 = uint16, 4 = int32), float64 number of tokens, 8 bytes reserved (zero). uint16 halves
// the size and is enough while the vocabulary has at most 65,536 ids (MiniMind's 6,400,
// GPT-2's 50,257); a bigger vocabulary switches to int32 and the header says which.
//
// Node's fs is imported lazily inside the disk functions, so the in-memory path
// (tokenizeDocuments) also runs in the browser.
import { UserError } from '../util/errors.ts';
import type { TokenArray } from './loader.ts';

/** What the data pipeline needs from a tokenizer (src/tokenizer's Tokenizer satisfies it). */
export interface TextTokenizer {
  encode(text: string): number[];
  /** Optional bulk encoder, used when present (faster: one call per batch of documents). */
  encodeBatch?(texts: string[]): number[][];
  /** The id of the beginning-of-document token. */
  bosId: number;
  vocabSize: number;
}

export type TokenDtype = 'uint16' | 'int32';

export interface ShardMeta {
  format: 'minichat-shards';
  version: 1;
  dtype: TokenDtype;
  /** Size of the header at the start of each .bin file, in bytes. */
  headerBytes: number;
  train: { file: string; tokens: number; documents: number };
  val: { file: string; tokens: number; documents: number };
  /** All documents read (train + val). */
  documents: number;
  /** Characters of text read (before tokenization), for chars-per-token and bits-per-byte. */
  chars: number;
  tokenizer: { vocabSize: number; bosId: number; fingerprint: string };
  /** Where the documents came from, in words (a path, "synthetic seed 0", ...). */
  source: string;
  /** The split rule: document i is held out when ceil((i+1)·f) > ceil(i·f). */
  valFraction: number;
  createdAt: string;
}

export interface ShardProgress {
  documents: number;
  tokens: number;
  chars: number;
}

export interface WriteShardsOptions {
  /** Output directory (created if missing). */
  outDir: string;
  /** Fraction of documents held out for validation, in [0, 1). Default 0.05. */
  valFraction?: number;
  /** Identifies the tokenizer (e.g. a hash of its files); stored so training can check. */
  fingerprint: string;
  /** Description of the source, stored in meta.json. */
  source: string;
  /** Called every `progressEvery` documents and once at the end. */
  onProgress?: (p: ShardProgress) => void;
  progressEvery?: number;
  /** Documents encoded per encodeBatch call. Default 256. */
  batchSize?: number;
}

export const SHARD_MAGIC = 'MCTOKENS';
export const SHARD_HEADER_BYTES = 32;
export const DEFAULT_VAL_FRACTION = 0.05;

/** uint16 while every id fits in 16 bits, else int32. */
export function dtypeForVocab(vocabSize: number): TokenDtype {
  return vocabSize <= 65536 ? 'uint16' : 'int32';
}

/** Is document number i (0-based, in reading order) held out for validation? */
export function isValidationDocument(i: number, valFraction: number): boolean {
  if (valFraction <= 0) return false;
  return Math.ceil((i + 1) * valFraction) > Math.ceil(i * valFraction);
}

function checkFraction(f: number): void {
  if (!(f >= 0 && f < 1)) throw new UserError(`the validation fraction must be in [0, 1), got ${f}`);
}

/** Encode a group of documents, each as [BOS, ...tokens], checking ids against the vocab. */
function encodeDocs(tok: TextTokenizer, docs: string[]): number[][] {
  const encoded = tok.encodeBatch ? tok.encodeBatch(docs) : docs.map((d) => tok.encode(d));
  return encoded.map((ids) => {
    for (const id of ids) {
      if (!(Number.isInteger(id) && id >= 0 && id < tok.vocabSize)) {
        throw new Error(`tokenizer produced id ${id}, outside its vocabulary of ${tok.vocabSize}`); // a tokenizer bug
      }
    }
    return [tok.bosId, ...ids];
  });
}

// ---- in memory (browser-safe) -------------------------------------------------------------

export interface TokenizedCorpus {
  train: TokenArray;
  val: TokenArray;
  trainDocuments: number;
  valDocuments: number;
}

/** Documents → train/val token arrays in memory, with the same BOS and split rules as disk. */
export function tokenizeDocuments(docs: string[], tok: TextTokenizer, opts: { valFraction?: number } = {}): TokenizedCorpus {
  const f = opts.valFraction ?? DEFAULT_VAL_FRACTION;
  checkFraction(f);
  if (docs.length === 0) throw new UserError('no documents to tokenize (the input is empty)');
  const train: number[] = [], val: number[] = [];
  let trainDocuments = 0, valDocuments = 0;
  const encoded = encodeDocs(tok, docs);
  encoded.forEach((ids, i) => {
    const isVal = isValidationDocument(i, f);
    const dst = isVal ? val : train;
    for (const id of ids) dst.push(id);
    if (isVal) valDocuments++;
    else trainDocuments++;
  });
  checkSplit(trainDocuments, valDocuments, f);
  const Arr = dtypeForVocab(tok.vocabSize) === 'uint16' ? Uint16Array : Int32Array;
  return { train: Arr.from(train), val: Arr.from(val), trainDocuments, valDocuments };
}

function checkSplit(trainDocs: number, valDocs: number, f: number): void {
  if (trainDocs + valDocs === 0) throw new UserError('no documents found (the input is empty)');
  if (trainDocs === 0) {
    throw new UserError(`all ${valDocs} document(s) went to validation (fraction ${f}): add more documents or lower the validation fraction`);
  }
}

// ---- on disk (Node) -----------------------------------------------------------------------

/** The 32-byte header of a .bin file. */
export function encodeShardHeader(dtype: TokenDtype, tokens: number): Uint8Array {
  const h = new Uint8Array(SHARD_HEADER_BYTES);
  const dv = new DataView(h.buffer);
  for (let i = 0; i < 8; i++) h[i] = SHARD_MAGIC.charCodeAt(i);
  dv.setUint32(8, 1, true);
  dv.setUint32(12, dtype === 'uint16' ? 2 : 4, true);
  dv.setFloat64(16, tokens, true);
  return h;
}

/** Buffers token ids and appends them to a .bin file in large little-endian writes. */
class TokenFileWriter {
  private buf: Uint8Array;
  private view: DataView;
  private used = 0;
  /** Where the next flush goes: after the header and everything flushed so far. */
  private position = SHARD_HEADER_BYTES;
  tokens = 0;
  documents = 0;
  private constructor(
    private fh: import('node:fs/promises').FileHandle,
    private readonly bytes: 2 | 4,
  ) {
    this.buf = new Uint8Array(1 << 20);
    this.view = new DataView(this.buf.buffer);
  }

  static async create(path: string, dtype: TokenDtype): Promise<TokenFileWriter> {
    const { open } = await import('node:fs/promises');
    const fh = await open(path, 'w');
    await fh.write(new Uint8Array(SHARD_HEADER_BYTES), 0, SHARD_HEADER_BYTES, 0); // placeholder: the count is known only at close
    return new TokenFileWriter(fh, dtype === 'uint16' ? 2 : 4);
  }

  async push(ids: number[]): Promise<void> {
    for (const id of ids) {
      if (this.used + this.bytes > this.buf.length) await this.flush();
      if (this.bytes === 2) this.view.setUint16(this.used, id, true);
      else this.view.setInt32(this.used, id, true);
      this.used += this.bytes;
    }
    this.tokens += ids.length;
    this.documents++;
  }

  private async flush(): Promise<void> {
    // Explicit positions throughout: a positional write does not move the file's cursor.
    if (this.used) await this.fh.write(this.buf, 0, this.used, this.position);
    this.position += this.used;
    this.used = 0;
  }

  async close(dtype: TokenDtype): Promise<void> {
    await this.flush();
    const h = encodeShardHeader(dtype, this.tokens);
    await this.fh.write(h, 0, h.length, 0);
    await this.fh.close();
  }
}

/**
 * Stream documents into a shard directory (tokens.bin, val.bin, meta.json). Memory stays
 * bounded: documents are encoded `batchSize` at a time and written out as they come.
 * meta.json is written last, so a directory without it is an interrupted run.
 */
export async function writeShards(
  docs: AsyncIterable<string> | Iterable<string>,
  tok: TextTokenizer,
  opts: WriteShardsOptions,
): Promise<ShardMeta> {
  const { mkdir, writeFile, rm, rename } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const f = opts.valFraction ?? DEFAULT_VAL_FRACTION;
  checkFraction(f);
  const dtype = dtypeForVocab(tok.vocabSize);
  await mkdir(opts.outDir, { recursive: true });
  await rm(join(opts.outDir, 'meta.json'), { force: true }); // no stale meta beside new tokens
  const train = await TokenFileWriter.create(join(opts.outDir, 'tokens.bin'), dtype);
  const val = await TokenFileWriter.create(join(opts.outDir, 'val.bin'), dtype);
  const batchSize = opts.batchSize ?? 256, every = opts.progressEvery ?? 1000;
  let index = 0, chars = 0, pending: string[] = [];

  const drain = async () => {
    const encoded = encodeDocs(tok, pending);
    for (const ids of encoded) {
      await (isValidationDocument(index, f) ? val : train).push(ids);
      index++;
      if (opts.onProgress && index % every === 0) opts.onProgress({ documents: index, tokens: train.tokens + val.tokens, chars });
    }
    pending = [];
  };
  for await (const d of docs) {
    chars += d.length;
    pending.push(d);
    if (pending.length >= batchSize) await drain();
  }
  await drain();
  await train.close(dtype);
  await val.close(dtype);
  opts.onProgress?.({ documents: index, tokens: train.tokens + val.tokens, chars });
  checkSplit(train.documents, val.documents, f);

  const meta: ShardMeta = {
    format: 'minichat-shards',
    version: 1,
    dtype,
    headerBytes: SHARD_HEADER_BYTES,
    train: { file: 'tokens.bin', tokens: train.tokens, documents: train.documents },
    val: { file: 'val.bin', tokens: val.tokens, documents: val.documents },
    documents: index,
    chars,
    tokenizer: { vocabSize: tok.vocabSize, bosId: tok.bosId, fingerprint: opts.fingerprint },
    source: opts.source,
    valFraction: f,
    createdAt: new Date().toISOString(),
  };
  const tmp = join(opts.outDir, 'meta.json.tmp');
  await writeFile(tmp, JSON.stringify(meta, null, 2) + '\n');
  await rename(tmp, join(opts.outDir, 'meta.json'));
  return meta;
}

/** Decode one .bin file's bytes (header checked) into a token array. */
export function decodeTokenFile(bytes: Uint8Array, name = 'token file'): TokenArray {
  if (bytes.length < SHARD_HEADER_BYTES) throw new UserError(`${name}: too short to be a minichat token file`);
  const magic = String.fromCharCode(...bytes.subarray(0, 8));
  if (magic !== SHARD_MAGIC) throw new UserError(`${name}: not a minichat token file (bad magic "${magic}")`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true), width = dv.getUint32(12, true), n = dv.getFloat64(16, true);
  if (version !== 1) throw new UserError(`${name}: token file version ${version} is not supported (expected 1)`);
  if (width !== 2 && width !== 4) throw new UserError(`${name}: bad token width ${width}`);
  if (bytes.length !== SHARD_HEADER_BYTES + n * width) {
    throw new UserError(`${name}: truncated (header says ${n} tokens, file has ${(bytes.length - SHARD_HEADER_BYTES) / width}); prepare the data again`);
  }
  // Copy into a fresh, aligned array (and little-endian decode, which is what every
  // platform we run on uses natively, so a plain copy suffices).
  const body = bytes.slice(SHARD_HEADER_BYTES);
  return width === 2 ? new Uint16Array(body.buffer, 0, n) : new Int32Array(body.buffer, 0, n);
}

export interface LoadedShards {
  meta: ShardMeta;
  train: TokenArray;
  val: TokenArray;
}

/** Read a shard directory written by writeShards. */
export async function loadShards(dir: string): Promise<LoadedShards> {
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  let meta: ShardMeta;
  try {
    meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as ShardMeta;
  } catch {
    throw new UserError(`${dir}: no readable meta.json; is this a directory written by "minichat data prepare"?`);
  }
  if (meta.format !== 'minichat-shards') throw new UserError(`${dir}/meta.json: not a minichat shard directory`);
  const read = async (file: string) => decodeTokenFile(new Uint8Array(await readFile(join(dir, file))), join(dir, file));
  return { meta, train: await read(meta.train.file), val: await read(meta.val.file) };
}

/**
 * Training on shards made with a different tokenizer gives garbage that still "trains", so
 * check before starting: same vocabulary size, same BOS id, same fingerprint.
 */
export function checkShardsMatchTokenizer(meta: ShardMeta, tok: Pick<TextTokenizer, 'vocabSize' | 'bosId'>, fingerprint: string, dir = 'the shards'): void {
  const t = meta.tokenizer;
  if (t.vocabSize !== tok.vocabSize || t.bosId !== tok.bosId || t.fingerprint !== fingerprint) {
    throw new UserError(
      `${dir} were made with a different tokenizer (vocab ${t.vocabSize}, BOS ${t.bosId}, fingerprint ${t.fingerprint}; ` +
        `this one: vocab ${tok.vocabSize}, BOS ${tok.bosId}, fingerprint ${fingerprint}): run "minichat data prepare" again with this tokenizer`,
    );
  }
}
