// The RL stage end to end, as a learner runs it: the real binary (`node bin/minichat.mjs rl`)
// on a tiny SFT policy (test/rl-fixture.ts). One run is checked for what it prints and keeps
// (a progress line per step with the zero-advantage fraction, metrics.jsonl, the held-out
// evaluations, summary.json, a checkpoint holding the LoRA adapters); the checkpoint reloads
// with its adapters, and `export --merge-lora` writes a model whose logits equal the unmerged
// model's; `rl --resume` with another task or group size is refused and changes nothing; a
// learning rate that blows the weights up stops the run with the last good checkpoint kept.
// (Exact --resume after kill -9 is test/resume.test.ts.)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cpu } from '../src/backend/cpu.ts';
import { loadCheckpoint, readSafetensorsTensors } from '../src/io/checkpoint.ts';
import { GPT } from '../src/model/gpt.ts';
import * as T from '../src/tensor/index.ts';
import { tinyArithmeticPolicy } from './rl-fixture.ts';
import { tempDir } from './tmp.ts';

const bin = new URL('../bin/minichat.mjs', import.meta.url).pathname;

function minichat(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** sha1 of every file under `dir`: equal snapshots = untouched. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(dir, f)).isFile()).map((f) => [f, createHash('sha1').update(readFileSync(join(dir, f))).digest('hex')]),
  );
}

async function logitsOf(model: GPT, ids: number[]): Promise<Float32Array> {
  return T.noGrad(() => T.tidy(async () => Float32Array.from(await model.forward(T.tensor(ids, [1, ids.length], { dtype: 'int32', backend: model.backend })).data())));
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

const STEPS = 6;
const runArgs = (policy: string, out: string) => [
  'rl', '--init', policy, '--task', 'arithmetic', '--digits', '1', '--ops', '+', '--no-tool', '--temperature', '1', '--steps', String(STEPS), '--group-size', '4', '--prompts-per-step', '4',
  '--max-tokens', '6', '--lora-rank', '4', '--lr', '0.01', '--eval-every', '3', '--eval-problems', '8', '--ckpt-every', '3', '--out', out,
];

let policy: string, root: string, out: string, run: ReturnType<typeof minichat>;
beforeAll(async () => {
  policy = await tinyArithmeticPolicy();
  root = tempDir('mc-rl-e2e-');
  out = join(root, 'rl');
  run = minichat(...runArgs(policy, out));
}, 180_000);

describe('minichat rl, end to end', () => {
  it('prints a progress line per step and keeps metrics, held-out evaluations, a summary and the adapters', () => {
    expect(run.status, run.stderr).toBe(0);
    const progress = run.stderr.split('\n').filter((l) => /^step \d+\/\d+ /.test(l));
    expect(progress.map((l) => l.split(' ')[1])).toEqual(Array.from({ length: STEPS }, (_, i) => `${i + 1}/${STEPS}`));
    for (const l of progress) expect(l).toMatch(/ reward -?\d\.\d{3}  success \d+\.\d%  zero-adv \d+%  len /);

    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const steps = metrics.filter((m) => 'loss' in m);
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const m of steps) {
      expect(m.zeroAdvantage).toBeGreaterThanOrEqual(0);
      expect(m.zeroAdvantage).toBeLessThanOrEqual(1);
      expect(m.success).toBeGreaterThanOrEqual(0);
      expect(m.completions).toBeGreaterThanOrEqual(16);
    }
    // the console line shows the same numbers as metrics.jsonl
    progress.forEach((l, i) => expect(l).toContain(`zero-adv ${(100 * steps[i].zeroAdvantage).toFixed(0)}%`));
    const evals = metrics.filter((m) => 'held_out_success' in m);
    expect(evals.map((m) => m.step)).toEqual([0, 3, 6]);

    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary.metrics).toMatchObject({ steps: STEPS, held_out_before: evals[0].held_out_success, held_out_after: evals[2].held_out_success });
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    expect(run.stdout).toContain(`done: ${STEPS} steps, held-out pass@1 ${pct(evals[0].held_out_success)} -> ${pct(evals[2].held_out_success)}`);
    expect(readdirSync(join(out, 'checkpoint'))).toEqual(expect.arrayContaining(['adapters.safetensors', 'adapter_config.json', 'model.safetensors', 'optimizer.safetensors', 'state.json']));
    expect(JSON.parse(readFileSync(join(out, 'checkpoint', 'state.json'), 'utf8')).step).toBe(STEPS);
  });

  it('the checkpoint reloads with its trained adapters; export --merge-lora gives the same logits', async () => {
    const { model, tokenizer } = await loadCheckpoint(out, { backend: cpu });
    expect(model.adapter).not.toBeNull();
    const ids = tokenizer.encode('What is 3 + 4?');
    const unmerged = await logitsOf(model, ids);
    // the adapters changed the model (so the comparison below could fail): without them the
    // logits are the SFT model's, which differ
    const adapter = model.adapter;
    model.adapter = null;
    const base = await logitsOf(model, ids);
    model.adapter = adapter;
    const scale = unmerged.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    expect(maxAbsDiff(base, unmerged)).toBeGreaterThan(1e-3 * scale);

    const hf = join(root, 'hf');
    const exported = minichat('export', '--ckpt', out, '--merge-lora', '--out', hf);
    expect(exported.status, exported.stderr).toBe(0);
    const merged = new GPT(model.config, new T.Rng(99), cpu);
    merged.loadWeights(await readSafetensorsTensors(join(hf, 'model.safetensors')), 'export');
    expect(merged.adapter).toBeNull();
    // Tolerance: merging reassociates x(W + sBA)ᵀ as xWᵀ + s(xAᵀ)Bᵀ; float32 sums of 32–64
    // terms round at ~1e-6 relative, so 1e-5 of the largest logit is ample (as in lora.test.ts)
    expect(maxAbsDiff(await logitsOf(merged, ids), unmerged)).toBeLessThan(1e-5 * scale);
    model.dispose();
    merged.dispose();
  });

  it('--resume with another task or group size is refused, and the checkpoint is untouched', () => {
    const ckpt = join(out, 'checkpoint');
    const before = snapshot(ckpt);
    const r = minichat('rl', '--init', policy, '--out', out, '--resume', '--steps', '8', '--task', 'countdown', '--group-size', '8');
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--resume: .* was started with other options: .*--task "arithmetic" \(now "countdown"\).*--group-size 4 \(now 8\)/);
    expect(snapshot(ckpt)).toEqual(before);
  });

  it('weights that blow up stop the run: one line, the last good checkpoint kept', async () => {
    // a copy of the finished run, resumed for two more steps at --lr 1e30 (the learning rate
    // is one of the options a resume may change): the first update makes the adapters ~1e30
    // and the next forward overflows float32
    const dir = join(root, 'diverged');
    cpSync(out, dir, { recursive: true });
    const before = snapshot(join(dir, 'checkpoint'));
    const r = minichat('rl', '--init', policy, '--out', dir, '--resume', '--steps', String(STEPS + 2), '--lr', '1e30');
    expect(r.status).toBe(1);
    // (the step that trips depends on when a kept group first moves the weights: 7 or 8)
    const m = new RegExp(`^minichat: RL diverged at step (\\d+): .*not finite.*The last good checkpoint \\(step ${STEPS}\\) is kept in .*; try a lower --lr \\(now 1e\\+30\\)\\.$`, 'm').exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(+m![1]).toBeGreaterThan(STEPS);
    expect(snapshot(join(dir, 'checkpoint'))).toEqual(before);
    const { model, tokenizer, state } = await loadCheckpoint(dir, { backend: cpu });
    expect(state!.step).toBe(STEPS);
    expect((await logitsOf(model, tokenizer.encode('What is 1 + 2?'))).every(Number.isFinite)).toBe(true);
    model.dispose();
  });
});
