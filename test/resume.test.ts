// Exact resume of every stage, as a user meets it: the real CLI (`node bin/minichat.mjs`) is
// killed with SIGKILL at a random moment after it has written a checkpoint and before it ends,
// then the same command with --resume finishes the run, and its weights and optimizer state
// (LoRA adapters included, for RL) are byte-identical to those of one uninterrupted run. Each
// stage runs under its default schedule (warmup and warmdown on), and `speedrun --resume` is
// killed twice, once in pretraining and once in SFT.
//
// The kill lands at a random point: the test waits until the checkpoint on disk has reached a
// random step, then waits a random few milliseconds more, so the process may be training,
// evaluating or halfway through writing the next checkpoint (whose atomic replace must leave
// the previous one readable). The chosen step and delay are in the assertion messages.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cpu } from '../src/backend/cpu.ts';
import { readSafetensorsTensors } from '../src/io/checkpoint.ts';
import { PRETRAIN_DEFAULTS, pretrain } from '../src/train/pretrain.ts';
import { tinyArithmeticPolicy } from './rl-fixture.ts';
import { tempDir } from './tmp.ts';

const bin = new URL('../bin/minichat.mjs', import.meta.url).pathname;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function start(args: string[]): { child: ChildProcess; exit: Promise<Exit> } {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exit = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stderr })));
  return { child, exit };
}

/** Run a command to its end; it must succeed. */
async function minichat(...args: string[]): Promise<string> {
  const r = await start(args).exit;
  expect(r.code, `minichat ${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r.stderr;
}

/** The step of the checkpoint in `dir` (or its .old twin, as loading falls back), or 0. */
function savedStep(dir: string): number {
  for (const d of [dir, dir + '.old']) {
    try {
      return JSON.parse(readFileSync(join(d, 'state.json'), 'utf8')).step;
    } catch {
      // not there (yet), or being replaced: try the other
    }
  }
  return 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Start `args`, kill it with SIGKILL once `ckptDir` holds a checkpoint of step >= a random step
 * in [1, maxStep] plus a random delay, and return the step on disk after the kill (< `steps`:
 * the run had not ended).
 */
async function killMidRun(args: string[], ckptDir: string, maxStep: number, steps: number): Promise<{ step: number; why: string }> {
  const target = 1 + Math.floor(Math.random() * maxStep), delay = Math.floor(Math.random() * 40);
  const why = `killed after checkpoint step ${target} + ${delay} ms`;
  const { child, exit } = start(args);
  let ended = false;
  void exit.then(() => (ended = true));
  while (!ended && savedStep(ckptDir) < target) await sleep(5);
  if (!ended) {
    await sleep(delay);
    child.kill('SIGKILL');
  }
  const r = await exit;
  expect(r.signal, `${why}: the run must still be going when killed\n${r.stderr}`).toBe('SIGKILL');
  const step = savedStep(ckptDir);
  expect(step, why).toBeGreaterThanOrEqual(target);
  expect(step, `${why}: the checkpoint on disk is of a step before the end`).toBeLessThan(steps);
  return { step, why };
}

/** The files of two checkpoint directories are byte-identical. */
function expectSameCheckpoint(a: string, b: string, files: string[], why: string) {
  for (const f of files) {
    const x = readFileSync(join(a, f)), y = readFileSync(join(b, f));
    expect(y.equals(x), `${f}: resumed equals uninterrupted (${why})`).toBe(true);
  }
  // the train state too: step, RNG, data position, loss history
  const state = (d: string) => {
    const s = JSON.parse(readFileSync(join(d, 'state.json'), 'utf8'));
    return { step: s.step, rng: s.rng, loader: s.loader, history: s.history, metrics: s.metrics };
  };
  expect(state(b), why).toEqual(state(a));
}

/** The per-step losses in a run's metrics.jsonl: once per step, whatever was killed and rerun. */
function stepLosses(run: string): [number, number][] {
  return readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => 'loss' in m).map((m) => [m.step, m.loss]);
}

/** Uninterrupted run, killed run, resumed run; compare. */
async function killAndResume(o: { args: (out: string) => string[]; steps: number; files: string[] }) {
  const root = tempDir('mc-resume-');
  const straight = join(root, 'straight'), killed = join(root, 'killed');
  await minichat(...o.args(straight));
  const { step, why } = await killMidRun(o.args(killed), join(killed, 'checkpoint'), Math.floor(o.steps / 2), o.steps);
  const log = await minichat(...o.args(killed), '--resume');
  expect(log, why).toMatch(new RegExp(`resumed from .* at step ${step}\\b`));
  expectSameCheckpoint(join(straight, 'checkpoint'), join(killed, 'checkpoint'), o.files, why);
  expect(stepLosses(killed), why).toEqual(stepLosses(straight));
  return { straight, killed };
}

const MODEL = ['model.safetensors', 'optimizer.safetensors'];

describe('kill -9, then --resume, equals one uninterrupted run', () => {
  let base: string, policy: string;
  beforeAll(async () => {
    base = join(tempDir('mc-resume-base-'), 'base');
    await pretrain({ ...PRETRAIN_DEFAULTS, syntheticStories: 100, vocabSize: 300, batchSize: 2, seqLen: 32, steps: 1, evalEvery: 0, evalBatches: 1, sampleTokens: 4, ckptEvery: 0, out: base, backend: cpu }, { log: () => {} });
    policy = await tinyArithmeticPolicy();
  }, 120_000);

  it('pretrain (warmup and warmdown on: the default schedule)', async () => {
    await killAndResume({
      args: (out) => ['pretrain', '--synthetic-stories', '100', '--vocab-size', '300', '--batch-size', '2', '--seq-len', '32', '--steps', '12', '--warmup-steps', '3',
        '--ckpt-every', '1', '--eval-every', '4', '--eval-batches', '1', '--sample-every', '6', '--sample-tokens', '4', '--out', out],
      steps: 12, files: MODEL,
    });
  });

  it('sft (warmdown on: the default schedule)', async () => {
    await killAndResume({
      args: (out) => ['sft', '--init', base, '--builtin-examples', '60', '--batch-size', '2', '--seq-len', '64', '--steps', '12', '--ckpt-every', '1', '--eval-every', '4', '--out', out],
      steps: 12, files: MODEL,
    });
  });

  it('rl with a LoRA policy: adapters and their optimizer state', async () => {
    const { killed } = await killAndResume({
      args: (out) => ['rl', '--init', policy, '--task', 'arithmetic', '--digits', '1', '--ops', '+', '--no-tool', '--temperature', '1', '--steps', '12', '--group-size', '4', '--prompts-per-step', '4',
        '--max-tokens', '6', '--lora-rank', '4', '--eval-every', '4', '--eval-problems', '8', '--ckpt-every', '1', '--out', out],
      steps: 12, files: [...MODEL, 'adapters.safetensors'],
    });
    // the adapters trained: their B matrices (zero at the start) are not all zero
    const adapters = await readSafetensorsTensors(join(killed, 'checkpoint', 'adapters.safetensors'));
    const B = [...adapters].filter(([name]) => name.includes('lora_B'));
    expect(B.length).toBeGreaterThan(0);
    expect(B.some(([, t]) => t.data.some((x) => x !== 0))).toBe(true);
    const history = readFileSync(join(killed, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(history.filter((m) => 'held_out_success' in m).map((m) => m.step)).toEqual([0, 4, 8, 12]);
  });

  it('speedrun --resume: killed in pretraining, then in SFT, finishes as one run would', async () => {
    const root = tempDir('mc-resume-speedrun-');
    const args = (out: string) => ['speedrun', '--steps', '8', '--batch-size', '2', '--seq-len', '16', '--synthetic-stories', '60', '--vocab-size', '300', '--eval-batches', '1',
      '--sample-tokens', '4', '--sft-steps', '8', '--sft-batch-size', '1', '--eval-problems', '1', '--ckpt-every', '1', '--json', '--out', out];
    const straight = join(root, 'straight'), killed = join(root, 'killed');
    await minichat(...args(straight));
    const first = await killMidRun(args(killed), join(killed, 'base', 'checkpoint'), 4, 8);
    expect(existsSync(join(killed, 'sft')), first.why).toBe(false);
    // resumed with the flags it was started with left out: pipeline.json keeps them
    const second = await killMidRun(['speedrun', '--out', killed, '--resume'], join(killed, 'sft', 'checkpoint'), 4, 8);
    const why = `${first.why}; ${second.why}`;
    expect(savedStep(join(killed, 'base', 'checkpoint')), why).toBe(8);
    const log = await minichat(...args(killed), '--resume');
    expect(log, why).toContain(`resumed from ${join(killed, 'sft')} at step ${second.step}\n`);
    for (const stage of ['base', 'sft']) {
      expectSameCheckpoint(join(straight, stage, 'checkpoint'), join(killed, stage, 'checkpoint'), MODEL, `${stage}: ${why}`);
      expect(stepLosses(join(killed, stage)), `${stage}: ${why}`).toEqual(stepLosses(join(straight, stage)));
    }
    expect(existsSync(join(killed, 'report.md'))).toBe(true);
  });
});
