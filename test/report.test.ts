// The report card (src/eval/report.ts) over a hand-made pipeline directory.
import { mkdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeReport } from '../src/eval/report.ts';
import { chatCore } from '../src/eval/tasks.ts';
import { tempDir } from './tmp.ts';

function stage(dir: string, name: string, losses: number[], summary: object | null, options: object) {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const lines = losses.map((loss, i) => JSON.stringify({ step: i + 1, loss }));
  lines.push(JSON.stringify({ step: losses.length, val_loss: losses[losses.length - 1] + 0.1 }), JSON.stringify({ step: losses.length, sample: 'Once upon a time | there' }));
  writeFileSync(join(d, 'metrics.jsonl'), lines.join('\n') + '\n');
  writeFileSync(join(d, 'options.json'), JSON.stringify(options));
  if (summary) writeFileSync(join(d, 'summary.json'), JSON.stringify(summary));
}

describe('report card', () => {
  it('centered score: chance → 0, perfect → 1', () => {
    // the summary the report prints comes from eval/tasks.ts's chatCore
    expect(chatCore([{ task: 'a', accuracy: 0.25, baseline: 0.25 }])).toBe(0);
    expect(chatCore([{ task: 'a', accuracy: 1, baseline: 0.25 }, { task: 'b', accuracy: 0.5, baseline: 0 }])).toBeCloseTo(0.75, 12);
  });

  it('writes stages, wall times, curves, the eval table and samples', async () => {
    const dir = tempDir('report');
    stage(dir, 'pretrain', [5, 4, 3], { stage: 'pretrain', seconds: 125, metrics: { val_loss: 3.1, val_bpb: 1.2 } }, { preset: 'tiny', backend: 'cpu', steps: 3 });
    stage(dir, 'sft', [2, 1.5], null, { lr: 0.001, backend: 'cpu' });
    writeFileSync(join(dir, 'pipeline.json'), JSON.stringify({ stages: ['pretrain', 'sft'] }));
    writeFileSync(join(dir, 'eval.json'), JSON.stringify({
      rows: [
        { model: 'base', task: 'story-qa', accuracy: 0.1, baseline: 0, n: 50 },
        { model: 'sft', task: 'story-qa', accuracy: 0.6, baseline: 0, n: 50 },
      ],
      summary: { base: 0.1, sft: 0.6 },
    }));
    const path = await writeReport(dir);
    const md = readFileSync(path, 'utf8');
    expect(md).toContain('| pretrain | 2 min 5 s | val_loss 3.100, val_bpb 1.200 |');
    expect(md).toContain('| sft | — | (no summary: the stage did not finish) |');
    expect(md).toContain('| story-qa | 0.0% | 10.0% (n=50) | 60.0% (n=50) |');
    expect(md).toContain(`Node.js | ${process.version}`);
    expect(md).toContain('Once upon a time \\| there'.replace('\\|', '|'));
    expect(existsSync(join(dir, 'report', 'loss-pretrain.svg'))).toBe(true);
    expect(md.indexOf('![pretrain loss]')).toBeLessThan(md.indexOf('![sft loss]'));
  });

  it('a missing run directory or a broken metrics line is a clear error', async () => {
    await expect(writeReport('/nonexistent/run')).rejects.toThrow(/no such run directory/);
    const dir = tempDir('report-bad');
    writeFileSync(join(dir, 'metrics.jsonl'), '{"step":1,"loss":2}\nnot json\n');
    await expect(writeReport(dir)).rejects.toThrow(/metrics.jsonl:2: not a JSON record/);
  });
});
