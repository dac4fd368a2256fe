// Reading .parquet documents. hyparquet is a reader only and hyparquet-writer is not
// installed, so this test builds a small parquet file byte by byte: one required UTF-8
// BYTE_ARRAY column, PLAIN encoding, uncompressed, one data page per row group. That is
// the simplest file the format allows, and writing it shows what the reader has to parse:
//
//   "PAR1" | row group 1: page header + values | row group 2: ... | FileMetaData | len | "PAR1"
//
// Page headers and FileMetaData are Thrift structs in the "compact" protocol: each field is
// a byte (field-id delta << 4 | type) followed by its value; integers are zigzag varints.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readAllDocuments, streamDocuments } from '../src/data/documents.ts';

// ---- a tiny Thrift compact-protocol writer ----
const I32 = 5, I64 = 6, BINARY = 8, LIST = 9, STRUCT = 12;
type Field = [id: number, type: number, value: unknown, elemType?: number];

function varint(out: number[], n: bigint): void {
  while (n >= 0x80n) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
}
const zigzag = (n: number) => { const b = BigInt(n); return b >= 0n ? b << 1n : (-b << 1n) - 1n; };

function writeValue(out: number[], type: number, v: unknown, elemType?: number): void {
  if (type === I32 || type === I64) varint(out, zigzag(v as number));
  else if (type === BINARY) {
    const b = new TextEncoder().encode(v as string);
    varint(out, BigInt(b.length));
    out.push(...b);
  } else if (type === LIST) {
    const xs = v as unknown[];
    out.push((xs.length << 4) | elemType!); // fewer than 15 elements in this test
    for (const x of xs) writeValue(out, elemType!, x);
  } else if (type === STRUCT) writeStruct(out, v as Field[]);
}
function writeStruct(out: number[], fields: Field[]): void {
  let last = 0;
  for (const [id, type, value, elemType] of fields) {
    out.push(((id - last) << 4) | type);
    writeValue(out, type, value, elemType);
    last = id;
  }
  out.push(0); // stop
}

/** A parquet file with one required string column `column`, one row group per entry. */
function makeParquet(column: string, rowGroups: string[][]): Uint8Array {
  const bytes: number[] = [...new TextEncoder().encode('PAR1')];
  const groups: Field[][] = [];
  for (const rows of rowGroups) {
    const body: number[] = [];
    for (const r of rows) {
      const b = new TextEncoder().encode(r);
      body.push(b.length & 255, (b.length >> 8) & 255, (b.length >> 16) & 255, b.length >>> 24, ...b); // PLAIN: u32 LE length + bytes
    }
    const header: number[] = [];
    writeStruct(header, [
      [1, I32, 0], // type DATA_PAGE
      [2, I32, body.length], // uncompressed size
      [3, I32, body.length], // compressed size
      [5, STRUCT, [[1, I32, rows.length], [2, I32, 0], [3, I32, 3], [4, I32, 3]]], // values, PLAIN, RLE, RLE
    ]);
    const offset = bytes.length, size = header.length + body.length;
    bytes.push(...header, ...body);
    groups.push([
      [1, LIST, [[
        [2, I64, offset], // file_offset
        [3, STRUCT, [
          [1, I32, 6], // BYTE_ARRAY
          [2, LIST, [0], I32], // encodings: PLAIN
          [3, LIST, [column], BINARY], // path_in_schema
          [4, I32, 0], // UNCOMPRESSED
          [5, I64, rows.length],
          [6, I64, size],
          [7, I64, size],
          [9, I64, offset], // data_page_offset
        ]],
      ]], STRUCT],
      [2, I64, size],
      [3, I64, rows.length],
    ]);
  }
  const meta: number[] = [];
  writeStruct(meta, [
    [1, I32, 1], // version
    [2, LIST, [
      [[4, BINARY, 'schema'], [5, I32, 1]], // root: name, num_children
      [[1, I32, 6], [3, I32, 0], [4, BINARY, column], [6, I32, 0]], // BYTE_ARRAY, REQUIRED, name, UTF8
    ], STRUCT],
    [3, I64, rowGroups.reduce((n, g) => n + g.length, 0)], // num_rows
    [4, LIST, groups, STRUCT],
  ]);
  bytes.push(...meta, meta.length & 255, (meta.length >> 8) & 255, (meta.length >> 16) & 255, meta.length >>> 24);
  bytes.push(...new TextEncoder().encode('PAR1'));
  return Uint8Array.from(bytes);
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'minichat-parquet-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('.parquet', () => {
  it('reads the text column across row groups, in order', async () => {
    const p = join(dir, 'stories.parquet');
    writeFileSync(p, makeParquet('text', [['Once upon a time.', '  A dog ran.  '], ['', 'The end. ünïcode ✓']]));
    expect(await readAllDocuments(p)).toEqual(['Once upon a time.', 'A dog ran.', 'The end. ünïcode ✓']);
  });

  it('uses textField for the column and streams a row group at a time', async () => {
    const p = join(dir, 'content.parquet');
    writeFileSync(p, makeParquet('content', [['a'], ['b'], ['c']]));
    const it = streamDocuments(p, { textField: 'content' })[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe('a');
    await it.return?.(undefined);
    expect(await readAllDocuments(p, { textField: 'content' })).toEqual(['a', 'b', 'c']);
  });

  it('a missing column names the columns there are; a non-parquet file is a clear error', async () => {
    const p = join(dir, 'other.parquet');
    writeFileSync(p, makeParquet('content', [['a']]));
    await expect(readAllDocuments(p)).rejects.toThrow(`${p}: no column "text" (columns: content); choose one with --text-field`);
    const q = join(dir, 'fake.parquet');
    writeFileSync(q, 'this is not parquet at all');
    await expect(readAllDocuments(q)).rejects.toThrow(`${q}: not a readable parquet file`);
  });
});
