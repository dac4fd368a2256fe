// The synthetic corpus: deterministic for a seed, different across seeds, the size the
// docs promise, and stories that hang together (names and pronouns agree).
import { describe, expect, it } from 'vitest';
import { generateSyntheticCorpus, DEFAULT_SYNTHETIC_STORIES } from '../src/data/synthetic.ts';

describe('synthetic corpus', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = generateSyntheticCorpus({ stories: 50, seed: 7 });
    const b = generateSyntheticCorpus({ stories: 50, seed: 7 });
    const c = generateSyntheticCorpus({ stories: 50, seed: 8 });
    expect(a).toEqual(b);
    expect(a.join('\n')).not.toEqual(c.join('\n'));
    expect(a.length).toBe(50);
  });

  it('the default size is 1-2 MB of text and generates quickly', () => {
    const t0 = performance.now();
    const docs = generateSyntheticCorpus();
    const seconds = (performance.now() - t0) / 1000;
    const chars = docs.reduce((n, d) => n + d.length, 0);
    expect(docs.length).toBe(DEFAULT_SYNTHETIC_STORIES);
    expect(chars).toBeGreaterThan(1_000_000);
    expect(chars).toBeLessThan(2_000_000);
    expect(seconds).toBeLessThan(2);
  });

  it('stories are plain English with a small vocabulary and balanced quotes', () => {
    const docs = generateSyntheticCorpus({ stories: 300, seed: 1 });
    const words = new Set(docs.join(' ').toLowerCase().match(/[a-z']+/g));
    expect(words.size).toBeLessThan(400);
    for (const d of docs) {
      expect(d).toMatch(/^[A-Z]/);
      expect(d).toMatch(/[.!"]$/);
      expect((d.match(/"/g) ?? []).length % 2).toBe(0);
      expect(d).not.toMatch(/\{[HXO]\}/); // no unfilled template slot
      expect(d).not.toMatch(/\ba [aeiou]/i); // "an apple", never "a apple"
    }
  });

  it('the pronoun agrees with the hero', () => {
    for (const d of generateSyntheticCorpus({ stories: 200, seed: 3 })) {
      const m = d.match(/named (\w+)\. (He|She) loved/) ?? d.match(/^(\w+) was an? \w+ \w+ who lived near the \w+\. (He|She) loved/);
      expect(m).not.toBeNull();
      const girls = ['Lily', 'Mia', 'Sara', 'Anna', 'Emma', 'Zoe', 'Lucy', 'Ella', 'Rosa', 'Nina', 'Amy', 'Kate'];
      expect(m![2]).toBe(girls.includes(m![1]) ? 'She' : 'He');
    }
  });
});
