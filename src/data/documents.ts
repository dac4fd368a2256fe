// Reading pretraining documents from files: the first step of the data pipeline.
//
// A "document" is one unit of text that the model should see as a whole and that is
// unrelated to its neighbours (a story, a web page, a book chapter). Later, shards.ts puts a
// BOS token at the start of each one, so the model knows where a new text begins.
//
// Supported sources (a path to one file, or a directory of such files, read in sorted
// order so the result never depends on the file system's listing order):
//
//   .txt / .md   split on a separator such as `<|endoftext|>` (the TinyStories convention)
//                when the file contains one, else on blank lines. `split` forces a choice.
//   .jsonl       one JSON object per line; the document is the string field `textField`
//                (default "text", as in MiniMind's pretrain_hq.jsonl).
//   .parquet     the string column `textField`, read one row group at a time (hyparquet),
//                so a 1 GB file is never in memory whole.
//
// Everything streams (async generators), so big inputs work; readAllDocuments() collects
// into an array for small ones. A `maxChars` budget stops early: the total text returned is
// at most maxChars characters (the last document is cut at the budget).
//
// Mistakes in the input are UserErrors naming the file (and, for JSONL, the 1-based line).
// Node-only (reads files); the browser uses the synthetic corpus or text it already has.
import { createReadStream } from 'node:fs';
import { readdir, stat, open } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { createInterface } from 'node:readline';
import * as zlib from 'node:zlib';
import { parquetMetadataAsync, parquetReadObjects, type AsyncBuffer, type FileMetaData } from 'hyparquet';
import { UserError } from '../util/errors.ts';

export type TxtSplit = 'auto' | 'separator' | 'blank-line';

export interface ReadDocumentsOptions {
  /** JSONL field / parquet column holding the text. Default "text". */
  textField?: string;
  /** How .txt files are split into documents. Default "auto" (see the header). */
  split?: TxtSplit;
  /** The separator for split "separator" (and what "auto" looks for). Default `<|endoftext|>`. */
  separator?: string;
  /** Stop after this many characters in total (the last document is cut). Default: no limit. */
  maxChars?: number;
}

export const DEFAULT_SEPARATOR = '<|endoftext|>';
/** File extensions read from a directory; anything else there is ignored. */
export const DOCUMENT_EXTENSIONS = ['.txt', '.md', '.jsonl', '.parquet'];

/** The files a source path stands for: itself, or the readable files in a directory, sorted. */
export async function listSourceFiles(source: string): Promise<string[]> {
  let st;
  try {
    st = await stat(source);
  } catch {
    throw new UserError(`data source not found: ${source}`);
  }
  if (st.isFile()) {
    if (!DOCUMENT_EXTENSIONS.includes(extname(source).toLowerCase())) {
      throw new UserError(`${source}: unsupported file type "${extname(source)}" (expected one of ${DOCUMENT_EXTENSIONS.join(', ')})`);
    }
    return [source];
  }
  // Sorted by name (code-point order, not locale) so every machine reads the same order.
  const names = (await readdir(source)).filter((n) => DOCUMENT_EXTENSIONS.includes(extname(n).toLowerCase())).sort();
  if (names.length === 0) throw new UserError(`${source}: the directory has no ${DOCUMENT_EXTENSIONS.join(' / ')} files`);
  return names.map((n) => join(source, n));
}

/** Stream the documents of a source (file or directory), trimmed, empty ones skipped. */
export async function* streamDocuments(source: string, opts: ReadDocumentsOptions = {}): AsyncGenerator<string> {
  const maxChars = opts.maxChars ?? Infinity;
  if (!(maxChars > 0)) throw new UserError(`maxChars must be positive, got ${maxChars}`);
  let total = 0;
  for (const file of await listSourceFiles(source)) {
    for await (const doc of streamFileDocuments(file, opts)) {
      if (total + doc.length >= maxChars) {
        yield doc.slice(0, maxChars - total);
        return;
      }
      total += doc.length;
      yield doc;
    }
  }
}

/** All documents of a source in an array. Throws a UserError if there are none. */
export async function readAllDocuments(source: string, opts: ReadDocumentsOptions = {}): Promise<string[]> {
  const docs: string[] = [];
  for await (const d of streamDocuments(source, opts)) docs.push(d);
  if (docs.length === 0) throw new UserError(`${source}: no documents found (the input is empty or only whitespace)`);
  return docs;
}

/**
 * A run's documents from a file or directory (`minichat pretrain --data PATH`), with the
 * run's error for a missing path. (The built-in corpus is src/train/run.ts syntheticData,
 * which the browser can import; this file is Node-only.)
 */
export async function loadDocuments(o: { data: string; textField: string; maxChars: number }): Promise<{ docs: string[]; source: string }> {
  try {
    await stat(o.data);
  } catch {
    throw new UserError(`--data ${o.data}: no such file or directory (or use --data synthetic)`);
  }
  const docs = await readAllDocuments(o.data, { textField: o.textField, maxChars: o.maxChars || undefined });
  return { docs, source: o.data };
}

/** The documents of one file, by its extension. */
export function streamFileDocuments(file: string, opts: ReadDocumentsOptions = {}): AsyncGenerator<string> {
  const ext = extname(file).toLowerCase();
  if (ext === '.jsonl') return streamJsonl(file, opts.textField ?? 'text');
  if (ext === '.parquet') return streamParquet(file, opts.textField ?? 'text');
  return streamTxt(file, opts.split ?? 'auto', opts.separator ?? DEFAULT_SEPARATOR);
}

// ---- .txt ---------------------------------------------------------------------------------

// Blank line: a newline, optional spaces/tabs, another newline (CRLF files too).
const BLANK_LINE = /\r?\n[ \t]*\r?\n/;

/** "auto" decides from the first megabyte: a file that uses the separator uses it early. */
async function detectSeparator(file: string, separator: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8').includes(separator);
  } finally {
    await fh.close();
  }
}

async function* streamTxt(file: string, split: TxtSplit, separator: string): AsyncGenerator<string> {
  if (split === 'auto') split = (await detectSeparator(file, separator)) ? 'separator' : 'blank-line';
  // Read in chunks and cut at each delimiter; the text after the last delimiter waits for
  // the next chunk (a delimiter may straddle two chunks).
  const cut = (s: string): { parts: string[]; rest: string } => {
    const parts = split === 'separator' ? s.split(separator) : s.split(BLANK_LINE);
    const rest = parts.pop() ?? '';
    return { parts, rest };
  };
  let pending = '';
  const stream = createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 });
  for await (const chunk of stream as AsyncIterable<string>) {
    const { parts, rest } = cut(pending + chunk);
    pending = rest;
    for (const p of parts) {
      const d = p.trim();
      if (d) yield d;
    }
  }
  const d = pending.trim();
  if (d) yield d;
}

// ---- .jsonl -------------------------------------------------------------------------------

async function* streamJsonl(file: string, field: string): AsyncGenerator<string> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    if (!line.trim()) continue; // blank lines (often a trailing one) are not records
    const where = `${file}:${lineNo}`;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      // (V8's message quotes the start of the line, so it is not repeated here)
      throw new UserError(`${where}: not valid JSON (${(e as Error).message})`);
    }
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) {
      throw new UserError(`${where}: expected a JSON object per line, got ${Array.isArray(rec) ? 'an array' : JSON.stringify(rec)}`);
    }
    const obj = rec as Record<string, unknown>;
    if (!(field in obj)) {
      throw new UserError(`${where}: no field "${field}" (fields: ${Object.keys(obj).join(', ') || 'none'}); choose one with --text-field`);
    }
    const v = obj[field];
    if (typeof v !== 'string') throw new UserError(`${where}: field "${field}" is ${v === null ? 'null' : typeof v}, expected a string`);
    const d = v.trim();
    if (d) yield d;
  }
}

// ---- .parquet -----------------------------------------------------------------------------

// hyparquet decodes SNAPPY and uncompressed pages itself; GZIP is one zlib call away. Other
// codecs (ZSTD, BROTLI, LZ4) would need the hyparquet-compressors package.
const compressors = {
  GZIP: (input: Uint8Array) => new Uint8Array(zlib.gunzipSync(input)),
};

/** hyparquet reads through this interface: byte ranges of the file, on demand. */
async function fileAsyncBuffer(file: string): Promise<AsyncBuffer & { close(): Promise<void> }> {
  const fh = await open(file, 'r');
  const { size } = await fh.stat();
  return {
    byteLength: size,
    async slice(start: number, end = size): Promise<ArrayBuffer> {
      const buf = new Uint8Array(end - start);
      let done = 0;
      while (done < buf.length) {
        const { bytesRead } = await fh.read(buf, done, buf.length - done, start + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return buf.buffer;
    },
    close: () => fh.close(),
  };
}

async function* streamParquet(file: string, field: string): AsyncGenerator<string> {
  const buffer = await fileAsyncBuffer(file);
  try {
    yield* parquetRowGroups(file, buffer, field);
  } finally {
    await buffer.close();
  }
}

async function* parquetRowGroups(file: string, buffer: AsyncBuffer, field: string): AsyncGenerator<string> {
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(buffer);
  } catch (e) {
    throw new UserError(`${file}: not a readable parquet file (${(e as Error).message})`);
  }
  const columns = metadata.schema.slice(1).map((s) => s.name);
  if (!columns.includes(field)) {
    throw new UserError(`${file}: no column "${field}" (columns: ${columns.join(', ')}); choose one with --text-field`);
  }
  // One row group at a time: memory is bounded by the largest row group, not the file.
  let rowStart = 0;
  for (const rg of metadata.row_groups) {
    const rowEnd = rowStart + Number(rg.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file: buffer, metadata, columns: [field], rowStart, rowEnd, compressors });
    } catch (e) {
      throw new UserError(`${file}: could not decode rows ${rowStart}..${rowEnd - 1} (${(e as Error).message})`);
    }
    for (let i = 0; i < rows.length; i++) {
      const v = rows[i][field];
      if (v === null || v === undefined) continue;
      if (typeof v !== 'string') throw new UserError(`${file}: row ${rowStart + i}: column "${field}" is ${typeof v}, expected a string`);
      const d = v.trim();
      if (d) yield d;
    }
    rowStart = rowEnd;
  }
}
