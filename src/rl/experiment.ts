// The GRPO-vs-DAPO experiment: does DAPO reach a target success rate in a third of GRPO's
// steps (the claim), on a task a CPU-trained model can learn?
//
//   minichat experiment grpo-vs-dapo --init runs/speedrun/sft
//
// Fairness: every arm starts from the same SFT checkpoint with the same fresh LoRA adapter
// (same seed), samples problems from the same stream, and gets the same budget of sampled
// completions (the unit that costs time: DAPO's dynamic sampling spends extra completions on
// refilling its batch, so it takes fewer optimizer steps for the same budget). Held-out pass@1
// (greedy, a fixed set of test-split problems) is measured every `evalEvery` steps.
//
// Arms: GRPO; DAPO (all four changes); and one ablation row per DAPO change — DAPO with that
// change switched off — so each change's contribution shows on its own.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { lineChartSvg } from '../eval/plot.ts';
import { loadCheckpoint } from '../io/checkpoint.ts';
import { parseLoraTargets } from '../model/lora.ts';
import * as T from '../tensor/index.ts';
import { defaultToolRegistry, toolHook } from '../tools/hook.ts';
import { algoOptions, heldOutSuccess, problemSource, type RLOptions } from './run.ts';
import { getTask } from '../tasks/index.ts';
import { RLPolicy, preparePolicy } from './train.ts';

export interface RLExperimentOptions {
  init: string; // the SFT checkpoint every arm starts from
  task: string;
  digits: number;
  ops: string;
  tool: boolean;
  budget: number; // completions sampled per arm
  groupSize: number;
  promptsPerStep: number;
  maxTokens: number;
  lr: number;
  loraRank: number;
  evalEvery: number; // steps between held-out evaluations
  evalProblems: number;
  target: number; // the success rate whose first crossing is compared
  seeds: number[];
  arms: string[]; // subset of ARMS' names
  out: string;
  backend: Backend;
}

type Switches = Pick<RLOptions, 'algo' | 'clipHigh' | 'dynamicSampling' | 'tokenLevelLoss' | 'overlong'>;

/** Each arm as switches over the --algo presets. */
export function arms(maxTokens: number): Record<string, Switches> {
  const overlong = `${maxTokens},${Math.max(1, Math.floor(maxTokens / 4))}`;
  return {
    grpo: { algo: 'grpo' },
    dapo: { algo: 'dapo', overlong },
    'dapo-no-clip-high': { algo: 'dapo', overlong, clipHigh: false },
    'dapo-no-dynamic-sampling': { algo: 'dapo', overlong, dynamicSampling: false },
    'dapo-no-token-level-loss': { algo: 'dapo', overlong, tokenLevelLoss: false },
    'dapo-no-overlong': { algo: 'dapo', overlong: 'off' },
  };
}

interface ArmRun {
  arm: string;
  seed: number;
  curve: { step: number; completions: number; success: number }[];
  steps: number;
  completions: number;
  seconds: number;
}

export async function runGrpoVsDapo(o: RLExperimentOptions, log: (s: string) => void): Promise<{ table: string; runs: ArmRun[] }> {
  await mkdir(o.out, { recursive: true });
  const all = arms(o.maxTokens);
  const task = await getTask(o.task, { arithmetic: { digits: o.digits, ops: [...o.ops] as never } });
  const runs: ArmRun[] = [];
  for (const seed of o.seeds) {
    for (const name of o.arms) {
      const sw = all[name];
      if (!sw) throw new Error(`unknown arm ${name}`);
      const t0 = performance.now();
      const { model, tokenizer: tok } = await loadCheckpoint(o.init, { backend: o.backend });
      preparePolicy(model, { loraRank: o.loraRank, loraAlpha: 2 * o.loraRank, loraTargets: parseLoraTargets('all') }, new T.Rng(seed + 5));
      const algo = algoOptions({ ...sw, beta: 0, drGrpo: false, mu: 1, maxGenRounds: 3, maxTokens: o.maxTokens });
      const afterToken = o.tool ? toolHook(tok, defaultToolRegistry()) : undefined;
      const policy = new RLPolicy(model, tok, { algo, groupSize: o.groupSize, promptsPerStep: o.promptsPerStep, maxTokens: o.maxTokens, temperature: 1, lr: o.lr, seed }, afterToken);
      const source = problemSource(task, tok, o.tool);
      const rng = new T.Rng(seed);
      const run: ArmRun = { arm: name, seed, curve: [], steps: 0, completions: 0, seconds: 0 };
      const measure = async () => run.curve.push({ step: policy.step, completions: run.completions, success: await heldOutSuccess(policy, source, o.evalProblems, o.maxTokens, afterToken) });
      await measure();
      while (run.completions < o.budget) {
        const s = await policy.trainStep(source, rng);
        run.completions += s.completions;
        if (policy.step % o.evalEvery === 0 || run.completions >= o.budget) await measure();
        log(`${name} seed ${seed}: step ${policy.step}, ${run.completions}/${o.budget} completions, train success ${(100 * s.success).toFixed(1)}%, kept ${s.keptGroups}/${s.keptGroups + s.droppedGroups} groups, held-out ${(100 * run.curve.at(-1)!.success).toFixed(1)}%`);
      }
      run.steps = policy.step;
      run.seconds = (performance.now() - t0) / 1000;
      runs.push(run);
      model.dispose();
    }
  }

  // ---- the table: per arm, mean (and spread) over seeds ----
  const stepsTo = (r: ArmRun) => r.curve.find((c) => c.success >= o.target)?.step ?? null;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const spread = (xs: number[]) => (xs.length > 1 ? ` ± ${(Math.max(...xs) - Math.min(...xs)).toFixed(xs[0] < 2 ? 3 : 0)}` : '');
  const lines = [
    `| arm | steps to ${(100 * o.target).toFixed(0)}% held-out | final held-out pass@1 | start | optimizer steps | completions | wall time |`,
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const name of o.arms) {
    const rs = runs.filter((r) => r.arm === name);
    const reached = rs.map(stepsTo);
    const stepsCell = reached.every((x) => x !== null) ? `${mean(reached as number[]).toFixed(1)}${spread(reached as number[])}` : `${reached.map((x) => x ?? 'not reached').join(' / ')}`;
    const finals = rs.map((r) => r.curve.at(-1)!.success);
    lines.push(
      `| ${name} | ${stepsCell} | ${(100 * mean(finals)).toFixed(1)}%${rs.length > 1 ? ` (${finals.map((f) => (100 * f).toFixed(0)).join(', ')})` : ''} | ${(100 * mean(rs.map((r) => r.curve[0].success))).toFixed(1)}% | ` +
        `${mean(rs.map((r) => r.steps)).toFixed(0)} | ${mean(rs.map((r) => r.completions)).toFixed(0)} | ${mean(rs.map((r) => r.seconds)).toFixed(0)} s |`,
    );
  }
  const table = lines.join('\n');
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  const series = o.arms.map((name, i) => {
    const rs = runs.filter((r) => r.arm === name);
    // the mean over seeds at each evaluation index
    const n = Math.min(...rs.map((r) => r.curve.length));
    const points = Array.from({ length: n }, (_, j) => [mean(rs.map((r) => r.curve[j].completions)), mean(rs.map((r) => r.curve[j].success))] as [number, number]);
    return { name, points, color: colors[i % colors.length], dashed: name.includes('-no-') };
  });
  await writeFile(join(o.out, 'grpo-vs-dapo.svg'), lineChartSvg(series, { title: `GRPO vs DAPO: held-out pass@1 (${o.task})`, xLabel: 'completions sampled', yLabel: 'held-out success', yMax: 1, hLine: o.target }));
  const stepsSeries = o.arms.map((name, i) => {
    const rs = runs.filter((r) => r.arm === name);
    const n = Math.min(...rs.map((r) => r.curve.length));
    return { name, points: Array.from({ length: n }, (_, j) => [mean(rs.map((r) => r.curve[j].step)), mean(rs.map((r) => r.curve[j].success))] as [number, number]), color: colors[i % colors.length], dashed: name.includes('-no-') };
  });
  await writeFile(join(o.out, 'grpo-vs-dapo-steps.svg'), lineChartSvg(stepsSeries, { title: `GRPO vs DAPO: held-out pass@1 against optimizer steps`, xLabel: 'optimizer step', yLabel: 'held-out success', yMax: 1, hLine: o.target }));
  await writeFile(join(o.out, 'runs.json'), JSON.stringify({ options: { ...o, backend: o.backend.name }, runs }, null, 2) + '\n');
  await writeFile(join(o.out, 'table.md'), table + '\n');
  return { table, runs };
}
