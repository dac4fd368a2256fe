// The default thread count's one rule (src/backend/platform.ts), shared by the CLI
// (resolveThreads, test/threads-default.test.ts) and the page (navigator.hardwareConcurrency).
import { describe, expect, it } from 'vitest';
import { DEFAULT_THREADS_CAP, defaultThreads, isNode } from '../src/backend/platform.ts';
import { resolveThreads } from '../src/cli/common.ts';

describe('defaultThreads', () => {
  it('is min(cores, 8), at least 1; nonsense core counts give 1', () => {
    expect(DEFAULT_THREADS_CAP).toBe(8);
    expect([1, 2, 3, 8, 9, 64].map(defaultThreads)).toEqual([1, 2, 3, 8, 8, 8]);
    expect([0, -4, NaN, Infinity].map(defaultThreads)).toEqual([1, 1, 1, 1]);
    expect(defaultThreads(2.9)).toBe(2);
  });

  it('is what the CLI defaults to for wasm', () => {
    for (const cores of [1, 2, 5, 8, 12]) expect(resolveThreads('wasm', undefined, undefined, cores)).toBe(defaultThreads(cores));
  });

  it('isNode is true here (the tests run in Node)', () => {
    expect(isNode()).toBe(true);
  });
});
