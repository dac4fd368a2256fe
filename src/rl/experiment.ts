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
// Each arm runs on the run core's loop (runLoop, src/train/run.ts), ended by its budget (done).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { lineChartSvg } from '../eval/plot.ts';
import { loadCheckpoint } from '../io/checkpoint.ts';
import { parseLoraTargets } from '../model/lora.ts';
import * as T from '../tensor/index.ts';
import { defaultToolRegistry, toolHook } from '../tools/hook.ts';
import { RL_DEFAULTS, algoOptions, heldOutSuccess, problemSource, type RLOptions } from './run.ts';
import { getTask } from '../tasks/index.ts';
import { RLPolicy, type RLStepStats, preparePolicy } from './train.ts';
import { runLoop } from '../train/run.ts';
import { meanStd } from '../util/stats.ts';

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
  temperature: number; // rollout sampling temperature
  mu: number; // optimizer steps per batch of rollouts (with 1 the ratio is always 1 and no clip ever acts)
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
  const overlong = `${maxTokens},${Math.max(1, Math.floor(maxTokens / 4))}`; // DAPO as published: the shaping on
  return {
    grpo: { algo: 'grpo' },
    dapo: { algo: 'dapo', overlong },
    'dapo-no-clip-high': { algo: 'dapo', overlong, clipHigh: false },
    'dapo-no-dynamic-sampling': { algo: 'dapo', overlong, dynamicSampling: false },
    'dapo-no-token-level-loss': { algo: 'dapo', overlong, tokenLevelLoss: false },
    'dapo-no-overlong': { algo: 'dapo', overlong: 'off' },
  };
}

/** The arms' names, in the table's order. */
export const ARM_NAMES = Object.keys(arms(1));

/** The experiment's defaults (the CLI's flags show them): the RL defaults where the two agree
 *  (task, sampling, learning rate, adapter), its own budget, batch and evaluation schedule. */
export const GRPO_VS_DAPO_DEFAULTS: Omit<RLExperimentOptions, 'backend'> = {
  init: 'runs/speedrun/sft', // the SFT checkpoint minichat speedrun ends with
  task: RL_DEFAULTS.task,
  digits: RL_DEFAULTS.digits,
  ops: RL_DEFAULTS.ops,
  tool: RL_DEFAULTS.tool,
  budget: 4800, // ~20 DAPO steps of 16 x 8, the scale of minichat rl's default run
  groupSize: RL_DEFAULTS.groupSize,
  promptsPerStep: RL_DEFAULTS.promptsPerStep,
  mu: 2, // with 1 the importance ratio is always 1 and clip-higher cannot act
  maxTokens: RL_DEFAULTS.maxTokens,
  temperature: RL_DEFAULTS.temperature,
  lr: RL_DEFAULTS.lr,
  loraRank: RL_DEFAULTS.loraRank,
  evalEvery: 2,
  evalProblems: 100,
  target: 0.75, // the speedrun model starts at ~62%
  seeds: [0, 1, 2],
  arms: ARM_NAMES,
  out: 'runs/experiment-grpo-vs-dapo',
};

interface ArmRun {
  arm: string;
  seed: number;
  curve: { step: number; completions: number; success: number }[]; // held-out greedy pass@1
  train: { step: number; success: number; zeroAdvantage: number }[]; // per step, over every sampled completion
  steps: number;
  completions: number;
  seconds: number;
}

const mean = (xs: number[]) => meanStd(xs).mean;
/** "mean ± sample std" (just the mean for one value). */
const pm = (xs: number[], digits: number) => {
  const { mean: m, std, n } = meanStd(xs);
  return `${m.toFixed(digits)}${n > 1 ? ` ± ${std.toFixed(digits)}` : ''}`;
};

/** The first held-out evaluation at or above the target: its optimizer step and completions. */
export function firstCrossing(r: Pick<ArmRun, 'curve'>, target: number): { step: number; completions: number } | null {
  const c = r.curve.find((x) => x.success >= target);
  return c ? { step: c.step, completions: c.completions } : null;
}

/** The results table (per arm, mean ± sample std over seeds) and the claim's ratio line. */
export function summarise(runs: ArmRun[], armNames: string[], target: number): { table: string; claim: string } {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lines = [
    `| arm | seeds at ${(100 * target).toFixed(0)}% | steps to ${(100 * target).toFixed(0)}% | completions to ${(100 * target).toFixed(0)}% | final held-out pass@1 | start | sampled success | zero-adv groups | RL steps | completions | wall time |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const name of armNames) {
    const rs = runs.filter((r) => r.arm === name);
    if (!rs.length) continue;
    const hit = rs.map((r) => firstCrossing(r, target)).filter((x) => x !== null);
    const finals = rs.map((r) => r.curve.at(-1)!.success);
    const trainMean = (f: (t: ArmRun['train'][number]) => number) => rs.map((r) => mean(r.train.map(f)));
    lines.push(
      `| ${name} | ${hit.length}/${rs.length} | ${hit.length ? pm(hit.map((h) => h.step), 1) : 'not reached'} | ${hit.length ? pm(hit.map((h) => h.completions), 0) : '—'} | ` +
        `${pm(finals.map((f) => 100 * f), 1)}%${rs.length > 1 ? ` (${finals.map((f) => (100 * f).toFixed(0)).join(', ')})` : ''} | ${pct(mean(rs.map((r) => r.curve[0].success)))} | ` +
        `${pm(trainMean((t) => 100 * t.success), 1)}% | ${pm(trainMean((t) => 100 * t.zeroAdvantage), 0)}% | ${mean(rs.map((r) => r.steps)).toFixed(0)} | ${mean(rs.map((r) => r.completions)).toFixed(0)} | ${mean(rs.map((r) => r.seconds)).toFixed(0)} s |`,
    );
  }
  // the claim: DAPO reaches the target in a third of GRPO's steps (ratio GRPO / DAPO = 3)
  const reach = (name: string) => runs.filter((r) => r.arm === name).map((r) => firstCrossing(r, target));
  const g = reach('grpo'), d = reach('dapo');
  let claim = 'claim (DAPO at a third of GRPO\'s steps): needs both the grpo and dapo arms';
  if (g.length && d.length) {
    const all = (xs: typeof g) => xs.length > 0 && xs.every((x) => x !== null);
    if (all(g) && all(d)) {
      const gs = mean(g.map((x) => x!.step)), ds = mean(d.map((x) => x!.step));
      const gc = mean(g.map((x) => x!.completions)), dc = mean(d.map((x) => x!.completions));
      claim = `claim (DAPO at a third of GRPO's steps, ratio 3): GRPO/DAPO steps to ${(100 * target).toFixed(0)}% = ${gs.toFixed(1)}/${ds.toFixed(1)} = ${(gs / ds).toFixed(2)}x; completions ${gc.toFixed(0)}/${dc.toFixed(0)} = ${(gc / dc).toFixed(2)}x`;
    } else {
      claim = `claim (DAPO at a third of GRPO's steps): not measurable at this target — GRPO reached it on ${g.filter((x) => x).length}/${g.length} seeds, DAPO on ${d.filter((x) => x).length}/${d.length}`;
    }
  }
  return { table: lines.join('\n'), claim };
}

export async function runGrpoVsDapo(o: RLExperimentOptions, log: (s: string) => void): Promise<{ table: string; claim: string; runs: ArmRun[] }> {
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
      const algo = algoOptions({ ...sw, beta: 0, drGrpo: false, mu: o.mu, maxGenRounds: 3, maxTokens: o.maxTokens });
      const afterToken = o.tool ? toolHook(tok, defaultToolRegistry()) : undefined;
      const policy = new RLPolicy(model, tok, { algo, groupSize: o.groupSize, promptsPerStep: o.promptsPerStep, maxTokens: o.maxTokens, temperature: o.temperature, lr: o.lr, seed }, afterToken);
      const source = problemSource(task, tok, o.tool);
      const rng = new T.Rng(seed);
      const run: ArmRun = { arm: name, seed, curve: [], train: [], steps: 0, completions: 0, seconds: 0 };
      // the run core's loop (src/train/run.ts), until the arm has spent its budget of completions
      let s: RLStepStats | null = null; // the step just taken
      await runLoop({
        at: () => policy.step,
        steps: Infinity,
        done: () => run.completions >= o.budget,
        step: async () => {
          const st = await policy.trainStep(source, rng);
          return { step: st.step, loss: st.loss, lr: o.lr, seconds: st.seconds, stats: st };
        },
        tokensPerStep: 0,
        onStep: (_, { stats }) => {
          s = stats;
          run.completions += stats.completions;
          run.train.push({ step: stats.step, success: stats.success, zeroAdvantage: stats.zeroAdvantage ?? NaN });
        },
        evalEvery: o.evalEvery,
        evalAtStart: true,
        evaluate: async (step) => {
          const success = await heldOutSuccess(policy, source, o.evalProblems, o.maxTokens, afterToken);
          run.curve.push({ step, completions: run.completions, success });
          return { held_out_success: success };
        },
        sampleEvery: 0,
        ckptEvery: 0,
        // after each step's evaluation: the line shows the newest held-out number
        between: async () => {
          const t = s!;
          log(`${name} seed ${seed}: step ${policy.step}, ${run.completions}/${o.budget} completions, sampled success ${(100 * t.success).toFixed(1)}%, zero-adv ${(100 * (t.zeroAdvantage ?? NaN)).toFixed(0)}%, kept ${t.keptGroups}/${t.keptGroups + t.droppedGroups} groups, held-out ${(100 * run.curve.at(-1)!.success).toFixed(1)}%`);
        },
      });
      run.steps = policy.step;
      run.seconds = (performance.now() - t0) / 1000;
      runs.push(run);
      model.dispose();
    }
  }

  const { table, claim } = summarise(runs, o.arms, o.target);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  // mean over seeds at each evaluation index, with the min–max band behind it
  const seriesBy = (x: (c: ArmRun['curve'][number]) => number) =>
    o.arms.map((name, i) => {
      const rs = runs.filter((r) => r.arm === name);
      const n = Math.min(...rs.map((r) => r.curve.length));
      const at = (j: number) => ({ x: mean(rs.map((r) => x(r.curve[j]))), ys: rs.map((r) => r.curve[j].success) });
      const pts = Array.from({ length: n }, (_, j) => at(j));
      return {
        name, color: colors[i % colors.length], dashed: name.includes('-no-'),
        points: pts.map((p) => [p.x, mean(p.ys)] as [number, number]),
        band: rs.length > 1 ? pts.map((p) => [p.x, Math.min(...p.ys), Math.max(...p.ys)] as [number, number, number]) : undefined,
      };
    });
  const seedNote = o.seeds.length > 1 ? `, mean of ${o.seeds.length} seeds, band min–max` : '';
  await writeFile(join(o.out, 'grpo-vs-dapo.svg'), lineChartSvg(seriesBy((c) => c.completions), { title: `GRPO vs DAPO: held-out pass@1 (${o.task}${seedNote})`, xLabel: 'completions sampled', yLabel: 'held-out success', yMax: 1, hLine: o.target }));
  await writeFile(join(o.out, 'grpo-vs-dapo-steps.svg'), lineChartSvg(seriesBy((c) => c.step), { title: `GRPO vs DAPO: held-out pass@1 against RL steps${seedNote}`, xLabel: 'RL step (one batch of rollouts, mu optimizer steps)', yLabel: 'held-out success', yMax: 1, hLine: o.target }));
  await writeFile(join(o.out, 'runs.json'), JSON.stringify({ options: { ...o, backend: o.backend.name }, runs }, null, 2) + '\n');
  await writeFile(join(o.out, 'table.md'), table + '\n\n' + claim + '\n');
  return { table, claim, runs };
}
