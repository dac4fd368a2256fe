// The command line as a user meets it: help, version, unknown flags, one-line errors with a
// non-zero exit and no stack trace, and the demo job.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './tmp.ts';

const bin = new URL('../bin/minichat.mjs', import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });

describe('minichat CLI', () => {
  it('--help lists every command', () => {
    const r = run('--help');
    expect(r.status).toBe(0);
    for (const c of ['tokenizer', 'data', 'pretrain', 'speedrun', 'generate', 'eval', 'export', 'experiment', 'demo']) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${c}\\b`, 'm'));
    }
  });

  it('--version prints the package version', () => {
    expect(execFileSync(process.execPath, [bin, '--version'], { encoding: 'utf8' }).trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('pretrain --help shows every flag with its default', () => {
    const r = run('pretrain', '--help');
    expect(r.stdout).toMatch(/--preset <name>.*\(default: "tiny"\)/s);
    expect(r.stdout).toMatch(/--steps <n>.*\(default: 300\)/s);
    expect(r.stdout).toMatch(/--no-qk-norm/);
  });

  it('user mistakes are one line on stderr, exit code 1, no stack trace', () => {
    const cases: [string[], RegExp][] = [
      [['pretrain', '--bogus'], /unknown option '--bogus'/],
      [['pretrain', '--steps', 'ten'], /'--steps <n>' argument 'ten' is invalid. expected an integer, got "ten"/],
      [['pretrain', '--steps', '0'], /expected a positive integer, got "0"/],
      [['pretrain', '--preset', 'huge', '--out', '/tmp/mc-cli-never'], /argument 'huge' is invalid. expected one of tiny, small/],
      [['pretrain', '--data', '/nope/data.txt', '--out', '/tmp/mc-cli-never2'], /\/nope\/data\.txt: no such file/],
      [['generate', '--ckpt', '/nope'], /\/nope: no checkpoint found/],
      [['pretrain', '--optimizer', 'sgd'], /expected one of muon, adamw, got "sgd"/],
      [['pretrain', '--threads', '0'], /'--threads <n>' argument '0' is invalid. expected a positive integer, got "0"/],
      [['pretrain', '--backend', 'gpu', '--out', '/tmp/mc-cli-never3'], /--backend must be wasm, cpu or webgpu, got gpu/],
    ];
    for (const [args, msg] of cases) {
      const r = run(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack frames
    }
  });

  it('speedrun can be run again: it replaces its own previous run', () => {
    const out = tempDir('mc-speedrun-');
    const args = ['speedrun', '--steps', '2', '--batch-size', '2', '--seq-len', '16', '--synthetic-stories', '60', '--vocab-size', '300', '--eval-batches', '1', '--sample-tokens', '4',
      '--sft-steps', '1', '--sft-batch-size', '1', '--eval-problems', '1', '--json', '--out', out];
    for (let i = 0; i < 2; i++) {
      const r = run(...args);
      expect(r.status, r.stderr).toBe(0);
      const summary = JSON.parse(r.stdout);
      expect(summary.pretrain.steps).toBe(2);
      expect(summary.sft.steps).toBe(1);
      // every stage of the pipeline left its mark: report, eval table for both models, the chat model
      expect(existsSync(join(out, 'report.md'))).toBe(true);
      expect(new Set(summary.eval.map((e: { model: string }) => e.model))).toEqual(new Set(['base', 'sft']));
      expect(summary.chat).toBe(join(out, 'sft'));
      if (i === 1) expect(r.stderr).toMatch(/replacing the previous run/);
    }
    // pretrain still refuses to overwrite a run
    const r = run('pretrain', '--steps', '1', '--out', join(out, 'base'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/already holds a checkpoint: pass --resume/);
  });

  it('the demo job trains: loss falls and accuracy beats chance', () => {
    const r = run('demo', '--steps', '150', '--json');
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.final_loss).toBeLessThan(j.initial_loss_uniform / 2);
    expect(j.accuracy).toBeGreaterThan(0.8);
  });
});
