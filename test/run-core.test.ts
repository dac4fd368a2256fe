// The run core: the spec's validation, the stores, the one checkpoint format in both
// containers, the generic loop's hooks, and `pretrain --data DIR` on shards from `data prepare`.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpu } from '../src/backend/cpu.ts';
import { runPrepare } from '../src/cli/data.ts';
import { DirStore } from '../src/io/dir-store.ts';
import {
  checkpointDirFiles, decodeCheckpointFile, encodeCheckpointFile, readCheckpoint, readCheckpointDir, writeCheckpointDir,
} from '../src/io/checkpoint.ts';
import { type PretrainOptions, pretrain } from '../src/train/pretrain.ts';
import { disposeRun, pretrainCheckpoint, runPretrain, setupPretrain, syntheticData } from '../src/train/run.ts';
import { SPEC_DEFAULTS, SPEC_FIELDS, type RunSpec, flagName, validateSpec } from '../src/train/spec.ts';
import { MemoryStore, type RunStore } from '../src/train/store.ts';
import { tempDir } from './tmp.ts';

const quiet = { log: () => {} };
/** Tiny and fast: the tiny preset on 200 synthetic stories, 2 x 32-token batches. */
const SMALL: Partial<RunSpec> = {
  syntheticStories: 200, vocabSize: 300, batchSize: 2, seqLen: 32, steps: 4, warmupSteps: 1, evalEvery: 0, evalBatches: 2, sampleTokens: 4, ckptEvery: 0,
};
const spec = (o: Partial<RunSpec> = {}) => validateSpec({ ...SMALL, ...o });
const opts = (o: Partial<PretrainOptions>): PretrainOptions => ({ ...spec(), out: tempDir('mc-runcore-'), backend: cpu, ...o });

describe('run spec', () => {
  it('has one default per field, each checked by its own kind', () => {
    expect(Object.keys(SPEC_FIELDS).sort()).toEqual(Object.keys({ ...SPEC_DEFAULTS, qkNorm: 0, tokenizer: 0 }).sort());
    expect(validateSpec({})).toEqual(SPEC_DEFAULTS);
  });

  it('rejects bad values with one line naming the flag', () => {
    expect(() => validateSpec({ batchSize: 0 })).toThrow(/^--batch-size must be a positive integer, got 0$/);
    expect(() => validateSpec({ lr: -1 })).toThrow(/--lr must be a number >= 0, got -1/);
    expect(() => validateSpec({ steps: 2.5 })).toThrow(/--steps must be a positive integer/);
    expect(() => validateSpec({ optimizer: 'sgd' as never })).toThrow(/--optimizer must be one of muon, adamw, got "sgd"/);
    expect(() => validateSpec({ preset: 'huge' })).toThrow(/--preset must be one of tiny, small/);
    expect(() => validateSpec({ warmdownFraction: 1 })).toThrow(/--warmdown-fraction must be in \[0, 1\)/);
    expect(() => validateSpec({ valFraction: 0 })).toThrow(/--val-fraction must be > 0/);
    expect(() => validateSpec({ batchsize: 2 } as never, 'settings')).toThrow(/settings: unknown run setting "batchsize"/);
    expect(flagName('syntheticStories')).toBe('--synthetic-stories');
  });
});

describe('stores', () => {
  it('directory store: checkpoint round trip, metrics appended, files written whole', async () => {
    const dir = tempDir('mc-store-');
    const store: RunStore = new DirStore(dir); // DirStore satisfies the interface
    expect(await store.readCheckpoint()).toBeNull();
    const run = await setupPretrain(spec(), { data: syntheticData(200), store, backend: cpu, log: () => {} });
    const parts = await pretrainCheckpoint(run);
    await store.writeCheckpoint(parts);
    await store.appendMetrics({ step: 1, loss: 2 });
    await store.appendMetrics({ step: 2, loss: 1 });
    await store.writeFile('notes/a.txt', 'hello');
    const back = (await store.readCheckpoint())!;
    expect(back.config).toEqual(parts.config);
    expect(back.state).toEqual(JSON.parse(JSON.stringify(parts.state)));
    expect(Object.keys(back.weights)).toEqual(Object.keys(parts.weights));
    expect(Array.from(back.weights['model.embed_tokens.weight'].data)).toEqual(Array.from(parts.weights['model.embed_tokens.weight'].data));
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)).toEqual([1, 2]);
    expect(readFileSync(join(dir, 'notes', 'a.txt'), 'utf8')).toBe('hello');
    // a trained tokenizer went through the store as tokenizer/
    expect(existsSync(join(dir, 'tokenizer', 'tokenizer.tiktoken'))).toBe(true);
    // no temporary names left behind
    expect(readdirSync(dir).filter((n) => /tmp|\.old/.test(n))).toEqual([]);
    disposeRun(run);
  });

  it('directory store atomicity: a crash between the two renames falls back to checkpoint.old', async () => {
    const dir = tempDir('mc-store-');
    const store = new DirStore(dir);
    const run = await setupPretrain(spec(), { data: syntheticData(200), store, backend: cpu, log: () => {} });
    const parts = await pretrainCheckpoint(run);
    await writeCheckpointDir(join(dir, 'checkpoint.old'), parts); // as if the process died after moving checkpoint -> .old
    expect(existsSync(store.checkpointDir)).toBe(false);
    expect((await store.readCheckpoint())?.state?.step).toBe(0);
    // and a half-written checkpoint.tmp is never read
    writeFileSync(join(dir, 'checkpoint.tmp'), 'garbage');
    expect((await store.readCheckpoint())?.config).toEqual(parts.config);
    disposeRun(run);
  });

  it('memory store keeps what the loop writes', async () => {
    const store = new MemoryStore();
    const run = await setupPretrain(spec({ steps: 3, ckptEvery: 2 }), { data: syntheticData(200), store, backend: cpu, log: () => {} });
    const r = await runPretrain(run, { store, log: () => {} });
    expect(r.losses).toHaveLength(3);
    expect(store.checkpoint?.state?.step).toBe(3);
    expect(store.metrics.filter((m) => 'loss' in m)).toHaveLength(3);
    expect(store.metrics.some((m) => 'val_bpb' in m)).toBe(true); // validation at the end
    expect(store.files.has('tokenizer/tokenizer.json')).toBe(true);
    disposeRun(run);
  });
});

describe('one checkpoint format', () => {
  it('the one-file and the directory forms hold the same parts, and convert losslessly', async () => {
    const r = await pretrain(opts({ steps: 2 }), quiet);
    const dirParts = await readCheckpointDir(join(r.run_dir, 'checkpoint'));
    const file = join(r.run_dir, 'ckpt.safetensors');
    writeFileSync(file, encodeCheckpointFile(dirParts));
    const { parts: fileParts, where } = await readCheckpoint(file);
    expect(where).toBe(file);
    expect(fileParts.state).toEqual(dirParts.state);
    expect(fileParts.config).toEqual(dirParts.config);
    expect(fileParts.tokenizer.toTiktokenRanks()).toBe(dirParts.tokenizer.toTiktokenRanks());
    // file -> directory files -> byte-identical to what pretrain wrote
    const files = checkpointDirFiles(fileParts);
    for (const name of ['model.safetensors', 'optimizer.safetensors', 'config.json', 'state.json', 'tokenizer/tokenizer.tiktoken', 'tokenizer/tokenizer.json']) {
      const onDisk = readFileSync(join(r.run_dir, 'checkpoint', name));
      expect(Buffer.from(files[name] as Uint8Array | string).equals(onDisk), name).toBe(true);
    }
  });

  it('rejects a file that is not a checkpoint, naming it', () => {
    expect(() => decodeCheckpointFile(new TextEncoder().encode('not a checkpoint'), 'junk.safetensors')).toThrow(/junk\.safetensors/);
  });
});

describe('the loop hooks', () => {
  it('shouldStop pauses after a step and saves; calling again continues to the same weights as one call', async () => {
    const straightStore = new MemoryStore();
    const a = await setupPretrain(spec({ steps: 4 }), { data: syntheticData(200), store: straightStore, backend: cpu, log: () => {} });
    await runPretrain(a, { store: straightStore, log: () => {} });

    const store = new MemoryStore();
    const b = await setupPretrain(spec({ steps: 4 }), { data: syntheticData(200), store, backend: cpu, log: () => {} });
    let seen = 0;
    const first = await runPretrain(b, { store, log: () => {}, onStep: () => seen++, shouldStop: () => seen >= 2 });
    expect(first.stopped).toBe(true);
    expect(store.checkpoint?.state?.step).toBe(2); // saved on stop
    // resume from that checkpoint in a fresh setup, as the page does after a reload
    const c = await setupPretrain(spec({ steps: 4 }), { data: syntheticData(200), store, backend: cpu, log: () => {}, resume: true });
    expect(c.trainer.step).toBe(2);
    await runPretrain(c, { store, log: () => {} });
    expect(Array.from(store.checkpoint!.weights['model.norm.weight'].data)).toEqual(Array.from(straightStore.checkpoint!.weights['model.norm.weight'].data));
    expect(Array.from(store.checkpoint!.weights['model.layers.0.self_attn.q_proj.weight'].data)).toEqual(
      Array.from(straightStore.checkpoint!.weights['model.layers.0.self_attn.q_proj.weight'].data),
    );
    [a, b, c].forEach(disposeRun);
  });
});

describe('pretrain --data DIR (shards from data prepare)', () => {
  it('trains on the shards with their tokenizer, and refuses another tokenizer', async () => {
    const d = tempDir('mc-shards-');
    // a tokenizer, trained the way pretrain trains one, saved as a directory
    const first = await pretrain(opts({ steps: 1 }), quiet);
    const tokDir = join(first.run_dir, 'tokenizer');
    await runPrepare({ data: 'synthetic', tokenizer: tokDir, out: join(d, 'shards'), textField: 'text', split: 'auto', valFraction: 0.05, stories: 200, seed: 0, json: true }, () => {});
    const r = await pretrain(opts({ data: join(d, 'shards'), tokenizer: tokDir, steps: 3 }), quiet);
    expect(r.steps).toBe(3);
    expect(Number.isFinite(r.val_loss)).toBe(true);
    // without a tokenizer, and with another one: clear errors
    await expect(pretrain(opts({ data: join(d, 'shards') }), quiet)).rejects.toThrow(/holds token shards: pass --tokenizer/);
    const other = await pretrain(opts({ steps: 1, vocabSize: 280 }), quiet);
    await expect(pretrain(opts({ data: join(d, 'shards'), tokenizer: join(other.run_dir, 'tokenizer') }), quiet)).rejects.toThrow(/were made with a different tokenizer/);
  });
});
