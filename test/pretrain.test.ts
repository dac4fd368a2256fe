// Pretraining end to end on tiny settings: it learns, resume is exact, bad input is a clear
// error, divergence stops with the last good checkpoint kept.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './tmp.ts';
import { cpu } from '../src/backend/cpu.ts';
import { PRETRAIN_DEFAULTS, type PretrainOptions, pretrain } from '../src/train/pretrain.ts';
import { loadCheckpoint } from '../src/io/checkpoint.ts';
import { trainTokenizer } from '../src/tokenizer/index.ts';

const quiet = { log: () => {} };
const tmp = () => tempDir('mc-pretrain-');
/** Small and fast: the tiny preset on 300 synthetic stories, 2 x 32-token batches. */
const opts = (o: Partial<PretrainOptions>): PretrainOptions => ({
  ...PRETRAIN_DEFAULTS,
  syntheticStories: 300,
  vocabSize: 400,
  batchSize: 2,
  seqLen: 32,
  steps: 6,
  warmupSteps: 2,
  warmdownFraction: 0, // the schedule must not depend on where a run stops, for the resume test
  evalEvery: 1000,
  evalBatches: 2,
  sampleTokens: 8,
  ckptEvery: 1000,
  out: tmp(),
  backend: cpu,
  ...o,
});

describe('pretrain', () => {
  it('learns: validation loss falls below the unigram baseline', async () => {
    const r = await pretrain(opts({ steps: 30, batchSize: 4, seqLen: 32, lr: 1e-2 }), quiet);
    expect(r.steps).toBe(30);
    expect(r.val_loss).toBeLessThan(r.unigram_loss);
    expect(r.val_bpb).toBeGreaterThan(0);
    expect(existsSync(join(r.run_dir, 'checkpoint', 'model.safetensors'))).toBe(true);
    const metrics = readFileSync(join(r.run_dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.filter((m) => 'loss' in m)).toHaveLength(30);
    expect(metrics.some((m) => 'val_bpb' in m)).toBe(true);
  });

  it('resume: 3 steps, save, 3 more equals 6 straight (identical weights)', async () => {
    const straight = await pretrain(opts({ steps: 6 }), quiet);
    const dir = tmp();
    await pretrain(opts({ steps: 3, out: dir }), quiet);
    const resumed = await pretrain(opts({ steps: 6, out: dir, resume: true }), quiet);
    expect(resumed.steps).toBe(6);
    const a = readFileSync(join(straight.run_dir, 'checkpoint', 'model.safetensors'));
    const b = readFileSync(join(dir, 'checkpoint', 'model.safetensors'));
    expect(b.equals(a)).toBe(true);
    const oa = readFileSync(join(straight.run_dir, 'checkpoint', 'optimizer.safetensors'));
    const ob = readFileSync(join(dir, 'checkpoint', 'optimizer.safetensors'));
    expect(ob.equals(oa)).toBe(true);
  });

  it('refuses to overwrite a run without --resume, and --resume without a checkpoint', async () => {
    const dir = tmp();
    await expect(pretrain(opts({ out: dir, resume: true }), quiet)).rejects.toThrow(/--resume: no checkpoint in/);
    await pretrain(opts({ steps: 1, out: dir }), quiet);
    await expect(pretrain(opts({ out: dir }), quiet)).rejects.toThrow(/already holds a checkpoint: pass --resume/);
    await expect(pretrain(opts({ out: dir, resume: true, qkNorm: false, steps: 2 }), quiet)).rejects.toThrow(/another model config/);
  });

  it('divergence stops the run with a message and keeps the last good checkpoint', async () => {
    const dir = tmp();
    await pretrain(opts({ steps: 2, out: dir, ckptEvery: 1 }), quiet);
    const before = readFileSync(join(dir, 'checkpoint', 'model.safetensors'));
    // an absurd learning rate blows the weights up within a few steps
    const err = await pretrain(opts({ steps: 30, out: dir, resume: true, lr: 1e9, gradClip: 0, ckptEvery: 1000 }), quiet).catch((e) => e);
    expect(String(err)).toMatch(/training diverged at step \d+: the loss is (NaN|Infinity).*last good checkpoint \(step 2\) is kept/);
    expect(readFileSync(join(dir, 'checkpoint', 'model.safetensors')).equals(before)).toBe(true);
  });

  it('bad data: empty file, a JSONL line that does not parse, a missing file', async () => {
    const d = tmp();
    writeFileSync(join(d, 'empty.txt'), '');
    writeFileSync(join(d, 'bad.jsonl'), '{"text": "fine"}\n{"text": oops}\n');
    await expect(pretrain(opts({ data: join(d, 'empty.txt') }), quiet)).rejects.toThrow(/empty/);
    await expect(pretrain(opts({ data: join(d, 'bad.jsonl') }), quiet)).rejects.toThrow(/bad\.jsonl:2/);
    await expect(pretrain(opts({ data: join(d, 'nope.txt') }), quiet)).rejects.toThrow(/nope\.txt: no such file/);
  });

  it('a checkpoint loaded with a tokenizer of another vocabulary says so', async () => {
    const r = await pretrain(opts({ steps: 1 }), quiet);
    const other = await trainTokenizer(['some other text entirely, with other words'], { vocabSize: 280 });
    const tokDir = join(tmp(), 'tok');
    await other.save(tokDir);
    await expect(loadCheckpoint(r.run_dir, { tokenizerDir: tokDir })).rejects.toThrow(/tokenizer .* has \d+ tokens but the checkpoint .* was trained with vocab \d+/);
  });
});
