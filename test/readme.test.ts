// Numbers in README.md that come from the code are checked against the code, so the README
// cannot drift: the primitive-op count and the preset table (sizes and parameter counts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PRESETS, type PresetName, countParams } from '../src/model/gpt.ts';
import { PRIM_OPS } from '../src/tensor/index.ts';

const README = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');

/** The rows of the markdown table whose header row starts with `| first |`. */
function table(first: string): string[][] {
  const lines = README.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`| ${first} |`));
  expect(start, `README has a table starting with "| ${first} |"`).toBeGreaterThanOrEqual(0);
  const rows: string[][] = [];
  for (let i = start + 2; i < lines.length && lines[i].startsWith('|'); i++) rows.push(lines[i].split('|').slice(1, -1).map((c) => c.trim()));
  return rows;
}

describe('README numbers match the code', () => {
  it('the primitive-op count', () => {
    const m = README.match(/a closed set of (\d+) primitive ops/);
    expect(m, 'README says "a closed set of N primitive ops"').not.toBeNull();
    expect(Number(m![1])).toBe(PRIM_OPS.length);
  });

  it('the preset table: every preset, its shape, and its parameter count to the digits shown', () => {
    const rows = table('preset');
    expect(rows.map((r) => r[0]).sort()).toEqual(Object.keys(PRESETS).sort());
    for (const [name, hidden, layers, heads, ffn, vocab, params] of rows) {
      const c = PRESETS[name as PresetName];
      expect(Number(hidden), `${name} hidden`).toBe(c.hiddenSize);
      expect(Number(layers), `${name} layers`).toBe(c.numLayers);
      const hm = heads.match(/^(\d+)\/(\d+)(?: \(head (\d+)\))?$/);
      expect(hm, `${name} heads "${heads}"`).not.toBeNull();
      expect([Number(hm![1]), Number(hm![2])], `${name} heads`).toEqual([c.numHeads, c.numKVHeads]);
      expect(Number(hm![3] ?? c.hiddenSize / c.numHeads), `${name} head size`).toBe(c.headDim);
      expect(Number(ffn), `${name} FFN`).toBe(c.intermediateSize);
      expect(Number(vocab), `${name} vocab`).toBe(c.vocabSize);
      // "1.05M": millions, rounded to the decimals written
      const pm = params.match(/^([\d.]+)M$/);
      expect(pm, `${name} parameters "${params}"`).not.toBeNull();
      const decimals = pm![1].split('.')[1]?.length ?? 0;
      expect(pm![1], `${name} parameters`).toBe((countParams(c) / 1e6).toFixed(decimals));
    }
  });
});
