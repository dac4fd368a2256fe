// Held-out splits by hash: whether a piece of content (a story, an arithmetic problem, a
// countdown instance) is held out is a function of its canonical text alone, so every
// generator and every seed agree on it. The SFT data (chat-synthetic.ts) and the RL tasks
// (src/tasks/) use this one function: a problem held out for evaluation is never in the
// SFT training data, whichever seed made either. (Pure: no Node imports.)

/** Fraction of the content space that is held out. */
export const HELDOUT_FRACTION = 0.1;

/** The two splits: 'test' is the held-out one (evaluation only, never trained on). */
export type Split = 'train' | 'test';

/** FNV-1a, 32-bit: a small stable hash (same value in Node and the browser) of a string's
 *  UTF-16 code units or of a sequence of numbers (token ids), reading every `stride`-th
 *  element. Not a security hash: split keys, cache keys, data fingerprints. */
export function fnv1a(xs: string | ArrayLike<number>, stride = 1): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < xs.length; i += stride) h = Math.imul(h ^ (typeof xs === 'string' ? xs.charCodeAt(i) : xs[i]), 0x01000193) >>> 0;
  return h;
}

/** Is this content held out? The low bits of FNV are weak on short strings, so the high half
 *  is folded in before bucketing. */
export function isHeldOut(key: string): boolean {
  const h = fnv1a(key);
  return ((h ^ (h >>> 16)) % 1000) / 1000 < HELDOUT_FRACTION;
}

/** The split a piece of content belongs to, from its canonical text alone. */
export function splitOf(key: string): Split {
  return isHeldOut(key) ? 'test' : 'train';
}
