// BatchLoader and evalBatches: the x/y shift, determinism, exact resume, full coverage of
// the validation array, and a clear error for data shorter than one window.
import { describe, expect, it } from 'vitest';
import { BatchLoader, evalBatches, countEvalBatches } from '../src/data/loader.ts';
import { UserError } from '../src/util/errors.ts';

const ramp = (n: number) => Uint16Array.from({ length: n }, (_, i) => i % 60000);

describe('BatchLoader', () => {
  it('y is x shifted by one, in every row', () => {
    const tokens = ramp(1000);
    const L = new BatchLoader(tokens, 4, 16, 1);
    for (let k = 0; k < 5; k++) {
      const { x, y, B, T } = L.next();
      expect([B, T, x.length, y.length]).toEqual([4, 16, 64, 64]);
      for (let b = 0; b < B; b++) {
        const start = x[b * T];
        for (let t = 0; t < T; t++) {
          expect(x[b * T + t]).toBe(tokens[start + t]);
          expect(y[b * T + t]).toBe(tokens[start + t + 1]);
        }
      }
    }
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const tokens = ramp(5000);
    const a = new BatchLoader(tokens, 2, 8, 42), b = new BatchLoader(tokens, 2, 8, 42), c = new BatchLoader(tokens, 2, 8, 43);
    for (let k = 0; k < 3; k++) {
      const ba = a.next();
      expect(b.next().x).toEqual(ba.x);
      expect(c.next().x).not.toEqual(ba.x);
    }
  });

  it('getState/setState resumes with exactly the same batches', () => {
    const tokens = new Int32Array(ramp(3000));
    const run = new BatchLoader(tokens, 3, 10, 5);
    for (let k = 0; k < 7; k++) run.next();
    const saved = JSON.parse(JSON.stringify(run.getState())); // as it would go through state.json
    const expected = [run.next(), run.next(), run.next()];
    const resumed = new BatchLoader(tokens, 3, 10, 999); // seed is irrelevant once state is set
    resumed.setState(saved);
    for (const e of expected) expect(resumed.next()).toEqual(e);
    expect(resumed.getState().batches).toBe(10);
  });

  it('reaches both ends of the data', () => {
    const tokens = ramp(12);
    const L = new BatchLoader(tokens, 64, 4, 0);
    const starts = new Set(Array.from(L.next().x.filter((_, i) => i % 4 === 0)));
    expect(starts.has(0)).toBe(true);
    expect(starts.has(7)).toBe(true); // last window: tokens 7..11
    expect(Math.max(...starts)).toBe(7);
  });

  it('too little data is a UserError that says how many tokens and what to change', () => {
    expect(() => new BatchLoader(ramp(10), 2, 10)).toThrow(UserError);
    expect(() => new BatchLoader(ramp(10), 2, 10)).toThrow(/has 10 tokens.*at least 11.*at most 9/);
    expect(() => new BatchLoader(ramp(11), 2, 10)).not.toThrow();
  });
});

describe('evalBatches', () => {
  it('covers the array with non-overlapping windows, every target once', () => {
    const tokens = ramp(103);
    const T = 10, B = 4;
    const batches = [...evalBatches(tokens, B, T)];
    // windows = floor(102 / 10) = 10 -> batches of 4, 4, 2
    expect(batches.map((b) => b.B)).toEqual([4, 4, 2]);
    expect(countEvalBatches(103, B, T)).toBe(3);
    const ys = batches.flatMap((b) => Array.from(b.y));
    expect(ys).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    const xs = batches.flatMap((b) => Array.from(b.x));
    expect(xs).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('maxBatches stops early and the result is the same every time', () => {
    const tokens = ramp(1000);
    const a = [...evalBatches(tokens, 2, 8, 3)], b = [...evalBatches(tokens, 2, 8, 3)];
    expect(a.length).toBe(3);
    expect(a).toEqual(b);
  });

  it('too little validation data is a UserError', () => {
    expect(() => [...evalBatches(ramp(5), 1, 8)]).toThrow(/validation data has 5 tokens/);
  });
});
