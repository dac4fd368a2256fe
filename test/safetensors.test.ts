// safetensors: round trips, a file laid out byte by byte as the Python library writes it,
// and clear errors for broken files.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as T from '../src/tensor/index.ts';
import { decodeSafetensors, encodeSafetensors, fromTensors, halfToFloat, readSafetensorsFile, toTensors, writeSafetensorsFile } from '../src/io/safetensors.ts';
import { UserError } from '../src/util/errors.ts';

/** Assemble a safetensors file by hand: u64 LE header length, JSON padded with spaces, data. */
function handMade(headerJson: string, data: number[], pad = true): Uint8Array {
  let h = headerJson;
  if (pad) while ((8 + h.length) % 8 !== 0) h += ' ';
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(new TextEncoder().encode(h), 8);
  out.set(data, 8 + h.length);
  return out;
}
const le32f = (x: number) => Array.from(new Uint8Array(new Float32Array([x]).buffer));
const le32i = (x: number) => Array.from(new Uint8Array(new Int32Array([x]).buffer));
const le16 = (x: number) => [x & 0xff, x >> 8];

describe('safetensors', () => {
  it('round trips F32 and I32 tensors with metadata, including scalars and empty tensors', () => {
    const tensors = {
      'model.embed_tokens.weight': { dtype: 'F32' as const, shape: [2, 3], data: new Float32Array([1, -2, 3.5, 1e-30, -0, Infinity]) },
      'adamw.step': { dtype: 'I32' as const, shape: [], data: new Int32Array([42]) },
      ids: { dtype: 'I32' as const, shape: [3], data: new Int32Array([-1, 0, 2 ** 31 - 1]) },
      empty: { dtype: 'F32' as const, shape: [0, 4], data: new Float32Array(0) },
    };
    const bytes = encodeSafetensors(tensors, { format: 'pt', step: '42' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0); // data starts 8-aligned
    const { tensors: got, metadata } = decodeSafetensors(bytes);
    expect(metadata).toEqual({ format: 'pt', step: '42' });
    expect(Object.keys(got)).toEqual(Object.keys(tensors));
    for (const [k, t] of Object.entries(tensors)) {
      expect(got[k].dtype).toBe(t.dtype);
      expect(got[k].shape).toEqual(t.shape);
      expect(Array.from(got[k].data)).toEqual(Array.from(t.data));
    }
    expect(Object.is(got['model.embed_tokens.weight'].data[4], -0)).toBe(true);
  });

  it('decodes a file laid out as the Python library writes it (F32, I32, BF16, F16)', () => {
    // The Python library (Rust core) orders data by dtype (wider first) then name, writes
    // compact JSON with __metadata__ first, and pads the header with spaces to 8 bytes. These
    // exact bytes were checked equal to safetensors 0.8.0's serialize() of the same tensors
    // (and Python's deserialize() reads what encodeSafetensors writes).
    const header =
      '{"__metadata__":{"format":"pt"},' +
      '"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},' +
      '"ids":{"dtype":"I32","shape":[2],"data_offsets":[16,24]},' +
      '"bias":{"dtype":"BF16","shape":[3],"data_offsets":[24,30]},' +
      '"h":{"dtype":"F16","shape":[3],"data_offsets":[30,36]}}';
    const data = [
      ...[1, 2.5, -3, 0.1].flatMap(le32f),
      ...[7, -1].flatMap(le32i),
      // bfloat16: the top 16 bits of the float32: 1.0 = 0x3F80, -2.5 = 0xC020, 0.15625 = 0x3E20
      ...[0x3f80, 0xc020, 0x3e20].flatMap(le16),
      // float16: 1.0 = 0x3C00, -0.5 = 0xB800, smallest subnormal 2^-24 = 0x0001
      ...[0x3c00, 0xb800, 0x0001].flatMap(le16),
    ];
    const { tensors, metadata } = decodeSafetensors(handMade(header, data));
    expect(metadata).toEqual({ format: 'pt' });
    expect(tensors.w).toMatchObject({ dtype: 'F32', sourceDtype: 'F32', shape: [2, 2] });
    expect(Array.from(tensors.w.data)).toEqual([1, 2.5, -3, Math.fround(0.1)]);
    expect(tensors.ids).toMatchObject({ dtype: 'I32', shape: [2] });
    expect(Array.from(tensors.ids.data)).toEqual([7, -1]);
    expect(tensors.bias).toMatchObject({ dtype: 'F32', sourceDtype: 'BF16', shape: [3] });
    expect(Array.from(tensors.bias.data)).toEqual([1, -2.5, 0.15625]);
    expect(tensors.h).toMatchObject({ dtype: 'F32', sourceDtype: 'F16' });
    expect(Array.from(tensors.h.data)).toEqual([1, -0.5, 2 ** -24]);
    // and an unpadded header (header length not a multiple of 8) still reads: data copied aligned
    const odd = decodeSafetensors(handMade('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', le32f(3), false));
    expect(Array.from(odd.tensors.x.data)).toEqual([3]);
  });

  it('half-precision special values', () => {
    expect(halfToFloat(0x7c00)).toBe(Infinity);
    expect(halfToFloat(0xfc00)).toBe(-Infinity);
    expect(halfToFloat(0x7e00)).toBeNaN();
    expect(halfToFloat(0x7bff)).toBe(65504); // largest finite half
    expect(Object.is(halfToFloat(0x8000), -0)).toBe(true);
  });

  it('errors name the file and the problem', () => {
    const good = encodeSafetensors({ a: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } });
    const err = (bytes: Uint8Array) => {
      try {
        decodeSafetensors(bytes, 'ckpt/model.safetensors');
      } catch (e) {
        expect(e).toBeInstanceOf(UserError);
        return (e as Error).message;
      }
      throw new Error('expected an error');
    };
    expect(err(good.subarray(0, 5))).toMatch(/^ckpt\/model\.safetensors: truncated/);
    expect(err(good.subarray(0, 20))).toMatch(/truncated: the header says/);
    expect(err(good.subarray(0, good.length - 1))).toMatch(/ends at byte 8 of the data, but the data has only 7 bytes/);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
    expect(err(huge)).toMatch(/implausible/);
    expect(err(handMade('not json', []))).toMatch(/bad header/);
    expect(err(handMade('[1,2]', []))).toMatch(/bad header/);
    expect(err(handMade('{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}', new Array(8).fill(0)))).toMatch(/dtype "F64"/);
    expect(err(handMade('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', new Array(8).fill(0)))).toMatch(/needs 12 bytes, offsets give 8/);
    expect(err(handMade('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', new Array(12).fill(0)))).toMatch(/overlaps/);
    expect(err(handMade('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Array(8).fill(0)))).toMatch(/hole in the data: bytes 0..4/);
    expect(err(handMade('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Array(8).fill(0)))).toMatch(/4 bytes after the last tensor/);
    expect(err(handMade('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', new Array(4).fill(0)))).toMatch(/data_offsets/);
    expect(err(handMade('{"__metadata__":{"n":1}}', []))).toMatch(/__metadata__\["n"\] is not a string/);
  });

  it('writes files atomically and reads them back; tensors ↔ entries', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'minichat-st-'));
    try {
      const ts = { w: T.tensor([1, 2, 3, 4, 5, 6], [2, 3]), step: T.tensor([9], [], { dtype: 'int32' }) };
      const path = join(dir, 'optimizer.safetensors');
      await writeSafetensorsFile(path, await fromTensors(ts), { kind: 'muon' });
      expect(await readdir(dir)).toEqual(['optimizer.safetensors']); // no temporary left over
      const { tensors, metadata } = await readSafetensorsFile(path);
      expect(metadata).toEqual({ kind: 'muon' });
      const back = toTensors(tensors);
      expect(back.w.shape).toEqual([2, 3]);
      expect(back.w.toArraySync()).toEqual([1, 2, 3, 4, 5, 6]);
      expect(back.step.dtype).toBe('int32');
      expect(back.step.itemSync()).toBe(9);
      [...Object.values(ts), ...Object.values(back)].forEach((t) => t.dispose());
      await expect(readSafetensorsFile(join(dir, 'missing.safetensors'))).rejects.toThrow(/cannot read .*missing\.safetensors/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
