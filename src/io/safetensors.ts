// The safetensors file format (Hugging Face, https://github.com/huggingface/safetensors):
// how checkpoints store tensors, readable by the Python library and every HF tool.
//
//   ┌──────────────┬──────────────────────────────┬─────────────────────────────┐
//   │ N: u64 (LE)  │ header: N bytes of UTF-8 JSON │ data: raw little-endian bytes │
//   └──────────────┴──────────────────────────────┴─────────────────────────────┘
// The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets
// into the data section), plus an optional "__metadata__" map of strings to strings. Writers
// pad the header with spaces so the data starts at a multiple of 8 bytes. The data section
// must be covered exactly by the tensors' ranges: no overlaps and no holes (the spec forbids
// holes so a file cannot smuggle other content).
//
// We write F32 and I32 and read F32, I32, BF16 and F16 (the half formats are widened to
// float32 on reading: Hugging Face models are often shipped in bfloat16).
//
// encodeSafetensors / decodeSafetensors are pure functions over Uint8Array, so they run in a
// browser; writeSafetensorsFile / readSafetensorsFile add Node file I/O (imported lazily, so
// importing this module does not need Node). Writing goes to a temporary name and is
// renamed into place: a crash never leaves a half-written file under the real name.
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';

/** A tensor as stored in memory: row-major data and its shape. */
export interface SafeTensor {
  dtype: 'F32' | 'I32';
  shape: number[];
  data: Float32Array | Int32Array;
}

/** A decoded tensor; `sourceDtype` says what the file held (BF16/F16 are widened to F32). */
export interface DecodedTensor extends SafeTensor {
  sourceDtype: 'F32' | 'I32' | 'BF16' | 'F16';
}

const BYTES: Record<string, number> = { F32: 4, I32: 4, BF16: 2, F16: 2 };
/** The Rust reference refuses headers above 100 MB; so do we (a corrupt length field). */
const MAX_HEADER = 100_000_000;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

// ---------------------------------------------------------------------------------------
// encode
// ---------------------------------------------------------------------------------------

/** Serialise tensors (in the given key order) and optional string metadata to bytes. */
export function encodeSafetensors(tensors: Record<string, SafeTensor>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw new UserError(`safetensors: metadata "${k}" must be a string, got ${typeof v}`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const entries = Object.entries(tensors);
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new UserError('safetensors: "__metadata__" cannot be a tensor name');
    if (t.dtype !== 'F32' && t.dtype !== 'I32') throw new UserError(`safetensors: cannot write dtype ${t.dtype} for "${name}" (F32 or I32)`);
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new UserError(`safetensors: bad shape [${t.shape}] for "${name}"`);
    if (t.data.length !== numel(t.shape)) throw new UserError(`safetensors: "${name}" has ${t.data.length} values for shape [${t.shape}]`);
    const nbytes = t.data.length * 4;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8; // 8 + padded is a multiple of 8 too
  const out = new Uint8Array(8 + padded + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded); // spaces: still valid JSON whitespace
  let pos = 8 + padded;
  for (const [, t] of entries) {
    const typed = t.dtype === 'F32' ? Float32Array.from(t.data) : Int32Array.from(t.data);
    if (LITTLE_ENDIAN) out.set(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength), pos);
    else for (let i = 0; i < typed.length; i++) t.dtype === 'F32' ? view.setFloat32(pos + 4 * i, typed[i], true) : view.setInt32(pos + 4 * i, typed[i], true);
    pos += typed.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------------------

/**
 * Parse safetensors bytes. `source` (a file name) is put in every error message.
 * Throws UserError for a truncated file, a malformed header, an unsupported dtype, or
 * offsets that are out of range, overlap, leave holes, or disagree with the shape.
 */
export function decodeSafetensors(bytes: Uint8Array, source = 'safetensors data'): { tensors: Record<string, DecodedTensor>; metadata: Record<string, string> } {
  const bad = (msg: string) => new UserError(`${source}: ${msg}`);
  if (bytes.length < 8) throw bad(`truncated: ${bytes.length} bytes, too short for the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER)) throw bad(`header length ${n64} is implausible (over ${MAX_HEADER} bytes): not a safetensors file, or corrupt`);
  const n = Number(n64);
  if (8 + n > bytes.length) throw bad(`truncated: the header says ${n} bytes but only ${bytes.length - 8} follow`);
  let header: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
    if (!text.startsWith('{')) throw new Error('does not start with "{"');
    header = JSON.parse(text);
  } catch (e) {
    throw bad(`bad header: not a JSON object (${(e as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('bad header: not a JSON object');

  const dataStart = 8 + n, dataLength = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: Record<string, DecodedTensor> = {};
  const ranges: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw bad('bad header: __metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw bad(`bad header: __metadata__["${k}"] is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== 'object') throw bad(`bad header: entry "${name}" is not an object`);
    const dtype = e.dtype;
    if (typeof dtype !== 'string' || !(dtype in BYTES)) throw bad(`tensor "${name}" has dtype ${JSON.stringify(dtype)}; minichat reads F32, I32, BF16 and F16`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw bad(`bad header: tensor "${name}" has shape ${JSON.stringify(shape)}`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0) || offs[0] > offs[1]) {
      throw bad(`bad header: tensor "${name}" has data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (end > dataLength) throw bad(`tensor "${name}" ends at byte ${end} of the data, but the data has only ${dataLength} bytes (truncated file?)`);
    const count = numel(shape as number[]);
    if (end - begin !== count * BYTES[dtype]) throw bad(`tensor "${name}": shape [${shape}] of ${dtype} needs ${count * BYTES[dtype]} bytes, offsets give ${end - begin}`);
    ranges.push([begin, end, name]);
    tensors[name] = readTensor(bytes.subarray(dataStart + begin, dataStart + end), dtype as DecodedTensor['sourceDtype'], shape as number[]);
  }
  // The ranges must tile [0, dataLength): sorted, each begins where the previous ended.
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let at = 0;
  for (const [begin, end, name] of ranges) {
    if (begin < at) throw bad(`tensor "${name}" overlaps the previous tensor (bytes ${begin}..${end} start before ${at})`);
    if (begin > at) throw bad(`hole in the data: bytes ${at}..${begin} belong to no tensor`);
    at = end;
  }
  if (at !== dataLength) throw bad(`${dataLength - at} bytes after the last tensor belong to no tensor`);
  return { tensors, metadata };
}

/** Copy one tensor's bytes out (aligned), converting half precision to float32. */
function readTensor(raw: Uint8Array, dtype: DecodedTensor['sourceDtype'], shape: number[]): DecodedTensor {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const count = numel(shape);
  if (dtype === 'F32' || dtype === 'I32') {
    // slice() copies into a fresh, 4-byte-aligned buffer (the header length need not be a
    // multiple of 4 in files from other writers)
    const data = dtype === 'F32' ? new Float32Array(count) : new Int32Array(count);
    if (LITTLE_ENDIAN) new Uint8Array(data.buffer).set(raw);
    else for (let i = 0; i < count; i++) data[i] = dtype === 'F32' ? view.getFloat32(4 * i, true) : view.getInt32(4 * i, true);
    return { dtype, sourceDtype: dtype, shape, data };
  }
  const data = new Float32Array(count);
  if (dtype === 'BF16') {
    // bfloat16 is the top half of a float32: shift its 16 bits up
    const bits = new Uint32Array(data.buffer);
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
  } else {
    for (let i = 0; i < count; i++) data[i] = halfToFloat(view.getUint16(2 * i, true));
  }
  return { dtype: 'F32', sourceDtype: dtype, shape, data };
}

/** IEEE 754 binary16 → number: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal (and ±0)
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// ---------------------------------------------------------------------------------------
// tensors ↔ safetensors entries
// ---------------------------------------------------------------------------------------

/** Read tensors back to the host as safetensors entries (one readback per tensor). */
export async function fromTensors(ts: Record<string, T.Tensor>): Promise<Record<string, SafeTensor>> {
  const out: Record<string, SafeTensor> = {};
  for (const [name, t] of Object.entries(ts)) {
    const data = await t.data();
    out[name] = t.dtype === 'int32'
      ? { dtype: 'I32', shape: [...t.shape], data: data as Int32Array }
      : { dtype: 'F32', shape: [...t.shape], data: data instanceof Float32Array ? data : Float32Array.from(data) };
  }
  return out;
}

/** Make tensors (outside any scope unless called in one) from decoded entries. */
export function toTensors(entries: Record<string, SafeTensor>, backend?: T.Tensor['backend']): Record<string, T.Tensor> {
  const out: Record<string, T.Tensor> = {};
  for (const [name, e] of Object.entries(entries)) out[name] = T.tensor(e.data, e.shape, { dtype: e.dtype === 'I32' ? 'int32' : 'float32', backend });
  return out;
}

// ---------------------------------------------------------------------------------------
// Node file helpers
// ---------------------------------------------------------------------------------------

/** Write a .safetensors file atomically: to `<path>.tmp-<pid>-<time>`, then rename. */
export async function writeSafetensorsFile(path: string, tensors: Record<string, SafeTensor>, metadata?: Record<string, string>): Promise<void> {
  const fs = await import('node:fs/promises');
  const bytes = encodeSafetensors(tensors, metadata);
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    await fs.writeFile(tmp, bytes);
    await fs.rename(tmp, path);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw new UserError(`cannot write ${path}: ${(e as Error).message}`);
  }
}

/** Read and decode a .safetensors file; errors name the file. */
export async function readSafetensorsFile(path: string): Promise<{ tensors: Record<string, DecodedTensor>; metadata: Record<string, string> }> {
  const fs = await import('node:fs/promises');
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(path);
  } catch (e) {
    throw new UserError(`cannot read ${path}: ${(e as Error).message}`);
  }
  return decodeSafetensors(bytes, path);
}
