// No command deletes or overwrites what it did not create (src/io/run-dir.ts): every refusal
// is one line naming the directory, and the directory is byte-for-byte as it was. Also: a
// pipeline root stands for its last stage, and flags that would be ignored are refused.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Command, CommanderError } from 'commander';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './tmp.ts';
import { cpu } from '../src/backend/cpu.ts';
import { buildProgram } from '../src/cli/main.ts';
import { checkpointNotices, findCheckpointIn } from '../src/io/checkpoint.ts';
import { MADE_BY, claimRunDir, madeBy } from '../src/io/run-dir.ts';
import { PRETRAIN_DEFAULTS, pretrain } from '../src/train/pretrain.ts';
import { UserError } from '../src/util/errors.ts';

/** Every file under `dir` (relative path → sha1 of its bytes): equal snapshots = nothing touched. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash('sha1').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

/** Run the CLI in-process (as main() does, without its process handling): the UserError or
 *  commander error message, or null when the command succeeded. */
async function cli(...args: string[]): Promise<string | null> {
  const program = buildProgram();
  (function quiet(c: Command) {
    c.exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
    c.commands.forEach(quiet);
  })(program);
  const log = console.log;
  console.log = () => {};
  try {
    await program.parseAsync(['node', 'minichat', ...args]);
    return null;
  } catch (e) {
    if (e instanceof UserError || e instanceof CommanderError) return e.message;
    throw e;
  } finally {
    console.log = log;
  }
}

/** One small pretraining run with a checkpoint: the thing that must not be lost. */
let root: string, run: string;
beforeAll(async () => {
  root = tempDir('mc-safety-');
  run = join(root, 'runs', 't1');
  await pretrain(
    { ...PRETRAIN_DEFAULTS, syntheticStories: 60, vocabSize: 300, batchSize: 2, seqLen: 16, steps: 1, evalEvery: 1000, evalBatches: 1, sampleTokens: 4, ckptEvery: 1000, out: run, backend: cpu },
    { log: () => {} },
  );
});

describe('run directories record what made them', () => {
  it('a training run holds made-by.json naming its command and options', () => {
    const m = JSON.parse(readFileSync(join(run, MADE_BY), 'utf8'));
    expect(m.command).toBe('pretrain');
    expect(m.options.steps).toBe(1);
    expect(m.options.vocabSize).toBe(300);
    expect(madeBy(run)).toBe('pretrain');
  });

  it('claimRunDir: new and empty directories are claimed; anything else only by its own command', async () => {
    const d = tempDir('mc-claim-');
    expect(await claimRunDir(join(d, 'a', 'b'), 'export', { mode: 'replace' })).toEqual({ own: false });
    expect(madeBy(join(d, 'a', 'b'))).toBe('export');
    expect(await claimRunDir(join(d, 'a', 'b'), 'export', { mode: 'replace' })).toEqual({ own: true });
    mkdirSync(join(d, 'empty'));
    expect(await claimRunDir(join(d, 'empty'), 'sft', { mode: 'resume' })).toEqual({ own: false });

    // someone's own files
    const mine = join(d, 'mine');
    mkdirSync(mine);
    writeFileSync(join(mine, 'notes.txt'), 'my notes');
    for (const command of ['pretrain', 'sft', 'rl', 'speedrun', 'export', 'tokenizer train', 'data prepare']) {
      await expect(claimRunDir(mine, command, { mode: 'replace', resume: true })).rejects.toThrow(`${mine} is not empty and was not made by minichat ${command}`);
    }
    expect(readdirSync(mine)).toEqual(['notes.txt']);

    // another command's run, with or without --resume
    const before = snapshot(run);
    await expect(claimRunDir(run, 'sft', { mode: 'resume', resume: true })).rejects.toThrow(`${run} was made by minichat pretrain, not sft`);
    await expect(claimRunDir(run, 'speedrun', { mode: 'replace' })).rejects.toThrow(`${run} was made by minichat pretrain, not speedrun`);
    // its own command: continues only with --resume
    await expect(claimRunDir(run, 'pretrain', { mode: 'resume' })).rejects.toThrow(`${run} already holds a checkpoint: pass --resume`);
    expect(await claimRunDir(run, 'pretrain', { mode: 'resume', resume: true })).toEqual({ own: true });
    expect(snapshot(run)).toEqual(before);

    // a file is not a directory; a directory inside a marked run belongs to that run
    await expect(claimRunDir(join(mine, 'notes.txt'), 'export', { mode: 'replace' })).rejects.toThrow('is a file, not a directory');
    await expect(claimRunDir(join(run, 'tokenizer'), 'tokenizer train', { mode: 'replace' })).rejects.toThrow('was not made by minichat tokenizer train');
  });

  it('directories from before made-by.json are recognised by their files', async () => {
    const d = tempDir('mc-legacy-');
    mkdirSync(join(d, 'sr'));
    writeFileSync(join(d, 'sr', 'pipeline.json'), '{"stages":["base"]}');
    expect(await claimRunDir(join(d, 'sr'), 'speedrun', { mode: 'replace' })).toEqual({ own: true });
    expect(madeBy(join(d, 'sr'))).toBe('speedrun'); // adopted: now it has a made-by.json
    expect(existsSync(join(d, 'sr', MADE_BY))).toBe(true);
    mkdirSync(join(d, 'sft'));
    writeFileSync(join(d, 'sft', 'options.json'), '{"stage":"sft"}');
    await expect(claimRunDir(join(d, 'sft'), 'pretrain', { mode: 'resume' })).rejects.toThrow('was made by minichat sft, not pretrain');
  });
});

describe('commands refuse to overwrite what they did not make', () => {
  it('speedrun --out: a pretraining run, or a directory of your own, is left as it was', async () => {
    const before = snapshot(run);
    expect(await cli('speedrun', '--out', run)).toBe(`${run} was made by minichat pretrain, not speedrun (see its made-by.json): choose another --out`);
    expect(snapshot(run)).toEqual(before);
    const mine = tempDir('mc-mine-');
    writeFileSync(join(mine, 'notes.txt'), 'my notes');
    expect(await cli('speedrun', '--out', mine)).toMatch(/is not empty and was not made by minichat speedrun/);
    expect(readdirSync(mine)).toEqual(['notes.txt']);
  });

  it('pretrain, sft and rl --out on another run: refused, nothing written', async () => {
    const before = snapshot(run);
    expect(await cli('sft', '--init', run, '--out', run, '--backend', 'cpu')).toMatch(`${run} was made by minichat pretrain, not sft`);
    expect(await cli('sft', '--init', run, '--out', run, '--resume', '--backend', 'cpu')).toMatch(`${run} was made by minichat pretrain, not sft`);
    expect(await cli('rl', '--init', run, '--out', run, '--backend', 'cpu')).toMatch(`${run} was made by minichat pretrain, not rl`);
    expect(await cli('pretrain', '--out', run, '--backend', 'cpu')).toMatch(`${run} already holds a checkpoint: pass --resume`);
    expect(await cli('pretrain', '--out', join(root, 'runs'), '--backend', 'cpu')).toMatch(/runs is not empty and was not made by minichat pretrain/);
    expect(snapshot(run)).toEqual(before);
  });

  it('export --out: never the source run, a directory holding it, or a file it did not write', async () => {
    const before = snapshot(run), entries = readdirSync(root);
    const src = join(run, 'checkpoint');
    expect(await cli('export', '--ckpt', run, '--out', run)).toMatch(`--out ${run} is (or holds, or is inside) the checkpoint being exported, ${src}`);
    expect(await cli('export', '--ckpt', run, '--out', join(root, 'runs'))).toMatch(/is \(or holds, or is inside\) the checkpoint being exported/);
    expect(await cli('export', '--ckpt', run, '--format', 'file', '--out', join(src, 'model.safetensors'))).toMatch(/the checkpoint being exported/);
    const mine = join(root, 'mine.safetensors');
    writeFileSync(mine, 'not a checkpoint');
    expect(await cli('export', '--ckpt', run, '--format', 'file', '--out', mine)).toBe(`${mine} exists and was not written by minichat export: choose another --out, or remove it yourself`);
    expect(await cli('export', '--ckpt', run, '--format', 'file', '--merge-lora', '--out', join(root, 'x.safetensors'))).toMatch(/--merge-lora applies to --format hf only/);
    const hfMine = join(root, 'hf-mine');
    mkdirSync(hfMine);
    writeFileSync(join(hfMine, 'config.json'), '{}');
    expect(await cli('export', '--ckpt', run, '--out', hfMine)).toMatch(/hf-mine is not empty and was not made by minichat export/);
    expect(snapshot(run)).toEqual(before);
    expect(readdirSync(root).sort()).toEqual([...entries, 'hf-mine', 'mine.safetensors'].sort()); // nothing else written (no x.safetensors)
    expect(readFileSync(mine, 'utf8')).toBe('not a checkpoint');
    expect(readdirSync(hfMine)).toEqual(['config.json']);
  });

  it('export writes into a missing parent directory, and replaces only its own output', async () => {
    const file = join(root, 'out', 'deeper', 't1.safetensors');
    expect(await cli('export', '--ckpt', run, '--format', 'file', '--out', file)).toBeNull();
    expect(await cli('export', '--ckpt', run, '--format', 'file', '--out', file)).toBeNull(); // its own file: replaced
    expect(await cli('generate', '--ckpt', file, '--max-tokens', '2', '--backend', 'cpu')).toBeNull(); // and it loads
    const hf = join(root, 'out', 'hf', 't1');
    expect(await cli('export', '--ckpt', run, '--out', hf)).toBeNull();
    expect(madeBy(hf)).toBe('export');
    expect(readdirSync(hf)).toContain('model.safetensors');
    expect(await cli('export', '--ckpt', run, '--out', hf)).toBeNull(); // its own directory: replaced
    expect(readdirSync(join(root, 'out', 'hf'))).toEqual(['t1']); // no temporary directory left beside it
  });
});

describe('a pipeline root is a checkpoint argument', () => {
  it('runs/speedrun stands for its last stage with a checkpoint, and says which', async () => {
    const sr = tempDir('mc-pipeline-');
    writeFileSync(join(sr, 'pipeline.json'), JSON.stringify({ stages: ['base', 'sft'] }));
    cpSync(run, join(sr, 'base'), { recursive: true });
    const said: string[] = [];
    checkpointNotices.log = (l) => said.push(l);
    try {
      // the sft stage has no checkpoint yet: the base is the last one that does
      expect(await findCheckpointIn(sr)).toBe(join(sr, 'base', 'checkpoint'));
      expect(said).toEqual([`${sr} → ${join(sr, 'base')} (the pipeline's last stage with a checkpoint: sft has none)`]);
      cpSync(run, join(sr, 'sft'), { recursive: true });
      expect(await findCheckpointIn(sr)).toBe(join(sr, 'sft', 'checkpoint'));
      expect(said[1]).toBe(`${sr} → ${join(sr, 'sft')} (the pipeline's last stage)`);
      expect(await cli('generate', '--ckpt', sr, '--max-tokens', '2', '--backend', 'cpu')).toBeNull();
    } finally {
      checkpointNotices.log = () => {};
    }
    const empty = tempDir('mc-nopipeline-');
    expect(await findCheckpointIn(empty)).toBeNull();
  });
});

describe('flags are validated strictly, never ignored', () => {
  it('integers and numbers: the whole value, in every command', async () => {
    for (const args of [['pretrain', '--steps', '10abc'], ['sft', '--init', 'x', '--steps', '1.5'], ['demo', '--steps', '10abc'], ['data', 'synthetic', '--stories', ''],
      ['tokenizer', 'train', '--input', 'x', '--out', 'y', '--vocab-size', '4k'], ['rl', '--init', 'x', '--group-size', '0x10'], ['eval', 'loss', '--ckpt', 'x', '--tokens', 'y', '--threads', '2e']]) {
      expect(await cli(...args), args.join(' ')).toMatch(/is invalid\. expected an integer/);
    }
    expect(await cli('pretrain', '--lr', '1e-3x')).toMatch(/is invalid\. expected a number, got "1e-3x"/);
    expect(await cli('data', 'prepare', '--data', 'x', '--tokenizer', 'y', '--out', 'z', '--val-fraction', '0.1.2')).toMatch(/expected a number/);
  });

  it('--threads with a backend that has no threads is refused', async () => {
    expect(await cli('generate', '--ckpt', run, '--backend', 'cpu', '--threads', '2')).toBe('--threads 2 applies to --backend wasm only (the cpu backend has no worker threads)');
  });

  it('the real binary prints a refusal as one line, exit code 1', () => {
    const bin = new URL('../bin/minichat.mjs', import.meta.url).pathname;
    const before = snapshot(run);
    const r = spawnSync(process.execPath, [bin, 'speedrun', '--out', run], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`minichat: ${run} was made by minichat pretrain, not speedrun (see its made-by.json): choose another --out\n`);
    expect(snapshot(run)).toEqual(before);
  });
});
