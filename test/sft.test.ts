// SFT end to end on small settings: exact resume through the run core, a non-finite loss, a bad
// JSONL line named by `minichat sft`. What SFT teaches is measured in test/sft-story-qa.test.ts.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cpu } from '../src/backend/cpu.ts';
import { PRETRAIN_DEFAULTS, pretrain } from '../src/train/pretrain.ts';
import { SFT_DEFAULTS, type SftOptions, sft } from '../src/train/sft.ts';
import { tempDir } from './tmp.ts';

const quiet = { log: () => {} };
const bin = new URL('../bin/minichat.mjs', import.meta.url).pathname;

describe('sft', () => {
  // a base model: the tiny preset, one pretraining step (resume and errors need weights and a
  // tokenizer with the chat specials, not a good model)
  let base: string;
  beforeAll(async () => {
    base = join(tempDir('mc-sft-base-'), 'base');
    await pretrain(
      { ...PRETRAIN_DEFAULTS, syntheticStories: 100, vocabSize: 300, batchSize: 2, seqLen: 32, steps: 1, evalEvery: 0, evalBatches: 1, sampleTokens: 4, ckptEvery: 0, out: base, backend: cpu },
      quiet,
    );
  }, 60_000);

  const opts = (o: Partial<SftOptions>): SftOptions => ({
    ...SFT_DEFAULTS, init: base, out: tempDir('mc-sft-'), builtinExamples: 60, batchSize: 2, seqLen: 64, steps: 6,
    warmupSteps: 2, warmdownFraction: 0, // the schedule must not depend on where a run stops
    evalEvery: 1000, ckptEvery: 1000, backend: cpu, ...o,
  });

  it('resume: 3 steps, save, 3 more equals 6 straight (identical weights and optimizer state)', async () => {
    const straight = await sft(opts({}), quiet);
    expect(straight.steps).toBe(6);
    const dir = tempDir('mc-sft-resume-');
    await sft(opts({ steps: 3, out: dir }), quiet);
    const resumed = await sft(opts({ out: dir, resume: true }), quiet);
    expect(resumed.steps).toBe(6);
    for (const f of ['model.safetensors', 'optimizer.safetensors']) {
      const a = readFileSync(join(straight.run_dir, 'checkpoint', f)), b = readFileSync(join(dir, 'checkpoint', f));
      expect(b.equals(a), `${f}: resumed equals straight`).toBe(true);
    }
    // the files the report card reads
    const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.filter((m) => 'loss' in m).map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(metrics.some((m) => Number.isFinite(m.val_loss))).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'options.json'), 'utf8')).stage).toBe('sft');
    expect(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).metrics.steps).toBe(6);
    // the resumed run's last step trained on the same batch as the straight run's
    expect(resumed.losses.at(-1)).toBe(straight.losses.at(-1));
  }, 120_000);

  it('a non-finite loss stops the run and keeps the last good checkpoint', async () => {
    const dir = tempDir('mc-sft-nan-');
    await sft(opts({ steps: 2, out: dir, optimizer: 'adamw' }), quiet);
    const before = readFileSync(join(dir, 'checkpoint', 'model.safetensors'));
    // an absurd learning rate makes the weights (hence the loss) overflow within a few steps
    await expect(sft(opts({ steps: 40, out: dir, resume: true, lr: 1e30, optimizer: 'adamw', gradClip: 0 }), quiet)).rejects.toThrow(/diverged.*last good checkpoint \(step 2\)/s);
    expect(readFileSync(join(dir, 'checkpoint', 'model.safetensors')).equals(before)).toBe(true);
  }, 120_000);

  it('`minichat sft` names the file and line of a bad JSONL line, in one line, without a stack trace', () => {
    const dir = tempDir('mc-sft-bad-');
    const file = join(dir, 'chats.jsonl');
    writeFileSync(file, '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}\n{"messages":[{"role":"robot","content":"beep"}]}\n');
    const r = spawnSync(process.execPath, [bin, 'sft', '--init', base, '--data', file, '--out', join(dir, 'out'), '--steps', '1'], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`${file}:2`);
    expect(r.stderr).toMatch(/robot/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace for a user mistake
  }, 60_000);
});
