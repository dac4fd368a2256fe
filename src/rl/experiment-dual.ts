// The dual-LoRA experiment (issue #19): does learning to predict what the world replies make an
// agent learn a new company's requirements from its failures in fewer episodes than reward alone
// — and if something helps, which mechanism carries it?
//
//   minichat experiment dual-lora [--seeds 0,1,2] [--space 28] [--modes policy,world,...]
//
// Protocol (every number is an option with its default in DUAL_EXPERIMENT_DEFAULTS):
//   1. one service world per (world seed, space size): known companies, target companies,
//      practice names (envs/service.ts); the warm start of that world, cached under
//      runs/warmstart/ (warmstart.ts: a tokenizer, pretraining and SFT, built once);
//   2. the gate (gate.ts), printed and written into the results; when it fails the
//      experiment stops there, in one line, without running an arm;
//   3. for each seed and arm: the warm model plus a fresh dual adapter (seeded), `steps`
//      steps of tasksPerStep × G episodes on the TARGET pairs — equal episode budgets for
//      every arm — with greedy first-call success on fixed target tasks (other users than the
//      training ones) before the first step and after every `evalEvery` steps;
//   4. the transfer probe (dual.ts transferProbe) before and after the run: the change of the
//      log-probability of the required fields at the `ask_user(` position on the target tasks
//      (the world-only arm's is the one the claim is about; every arm's is reported).
// Reported per arm, mean ± std over seeds: episodes until greedy target success first reaches
// `target` (80%; a run that never does counts as not reached), the area under the success
// curve (mean success over the evaluated points, trapezoids over episodes, 0..1), the final
// success, and the probe's Δ for required and for other fields. A plot of the seeds' mean
// success against episodes per arm. With several --space values, one such table per size
// (the scaling table): each size is its own world and warm start.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { lineChartSvg } from '../eval/plot.ts';
import { GPT } from '../model/gpt.ts';
import * as T from '../tensor/index.ts';
import { runLoop } from '../train/run.ts';
import { UserError } from '../util/errors.ts';
import { DUAL_DEFAULTS, DUAL_MODES, DualAgent, MODE_NOTES, attachDualLora, fixedTasks, transferProbe, type DualMode } from './dual.ts';
import { SERVICE_DEFAULTS, createServiceWorld, targetPairs, type ServiceTask } from './envs/service.ts';
import { GATE_DEFAULTS, runGate, type GateResult } from './gate.ts';
import { WARM_START_DEFAULTS, cachedWarmStart } from './warmstart.ts';
import { meanStd } from '../util/stats.ts';

export interface DualExperimentOptions {
  modes: DualMode[];
  seeds: number[];
  spaces: number[]; // sizes of the requirement space C(n, k); more than one = the scaling table
  steps: number; // training steps per run (the budget is steps × tasksPerStep × groupSize episodes)
  tasksPerStep: number;
  groupSize: number;
  evalEvery: number; // greedy target success every N steps
  evalEach: number; // fixed evaluation tasks per target pair
  target: number; // the success rate whose first crossing is reported
  loraRank: number; // total rank of the dual adapter
  policyRank: number; // the policy group's share
  policyLr: number;
  worldLr: number;
  worldSeed: number;
  companies: number; // known companies
  targets: number; // target companies
  requests: number;
  warmRoot: string; // where warm starts are cached
  out: string;
  backend: Backend;
}

export const DUAL_EXPERIMENT_DEFAULTS: Omit<DualExperimentOptions, 'out' | 'backend'> = {
  modes: DUAL_MODES.filter((m) => m !== 'early'), seeds: [0, 1, 2], spaces: [SERVICE_DEFAULTS.space], steps: 6, tasksPerStep: 4, groupSize: 4,
  evalEvery: 1, evalEach: 2, target: 0.8, loraRank: 16, policyRank: 8, policyLr: 3e-3, worldLr: 1e-2, worldSeed: 0,
  companies: SERVICE_DEFAULTS.companies, targets: SERVICE_DEFAULTS.targets, requests: SERVICE_DEFAULTS.requests, warmRoot: 'runs/warmstart',
};

export interface RunResult {
  space: number;
  mode: DualMode;
  seed: number;
  curve: [number, number][]; // (episodes sampled, greedy target success)
  episodesToTarget: number | null;
  auc: number;
  finalSuccess: number;
  probeBefore: { required: number; other: number };
  probeAfter: { required: number; other: number };
  worldLoss: (number | null)[]; // per step
  sampledSuccess: number[]; // per step: the share of that step's episodes that succeeded
  seconds: number;
}


/** Area under a success curve over episodes, normalised to 0..1 (trapezoids). */
export function curveArea(curve: [number, number][]): number {
  if (curve.length < 2) return curve[0]?.[1] ?? 0;
  let a = 0;
  for (let i = 1; i < curve.length; i++) a += ((curve[i][1] + curve[i - 1][1]) / 2) * (curve[i][0] - curve[i - 1][0]);
  return a / (curve.at(-1)![0] - curve[0][0]);
}

export async function runDualExperiment(o: DualExperimentOptions, log: (s: string) => void) {
  const t0 = performance.now();
  await mkdir(o.out, { recursive: true });
  const runs: RunResult[] = [];
  const gates: Record<number, GateResult & { warmSeconds: number; warmDir: string | null }> = {};
  const tables: string[] = [];
  for (const space of o.spaces) {
    const world = createServiceWorld({ seed: o.worldSeed, space, companies: o.companies, targets: o.targets, requests: o.requests });
    log(`world ${o.worldSeed}, space ${space} (${world.fields.length} fields, ${world.k} per requirement): ${o.companies} known companies, ${o.targets} target companies (${targetPairs(world).length} target pairs)`);
    const warm = await cachedWarmStart(o.warmRoot, world, WARM_START_DEFAULTS, o.backend, log);
    const gateAgent = new DualAgent(attachForGate(warm.model), warm.tok, world, { ...DUAL_DEFAULTS, mode: 'policy', totalSteps: 1 });
    const gate = await runGate(gateAgent.engine, warm.tok, world, { ...GATE_DEFAULTS, maxTokens: DUAL_DEFAULTS.maxTokens });
    gates[space] = { ...gate, warmSeconds: warm.seconds, warmDir: warm.dir };
    log(`space ${space}: ${gate.line}`);
    if (!gate.passed) {
      await writeFile(join(o.out, 'dual-lora.json'), JSON.stringify({ options: { ...o, backend: o.backend.name }, gates, runs }, null, 2) + '\n');
      warm.model.dispose();
      throw new UserError(`the warm start of world ${o.worldSeed} (space ${space}) fails the gate, so the arms were not run: ${gate.line.replace(/^gate FAILED: /, '')}`);
    }
    // the warm weights, copied into a fresh model per run (the adapter is what differs)
    const weights = new Map(warm.model.namedParams().filter((p) => p.role !== 'adapter').map((p) => [p.name, Float32Array.from(p.param.dataSync())]));
    const config = warm.model.config;
    warm.model.dispose();
    const evalSet = fixedTasks(world, targetPairs(world), o.evalEach);
    for (const seed of o.seeds) {
      for (const mode of o.modes) {
        const r0 = performance.now();
        const model = T.noGrad(() => new GPT(config, new T.Rng(1), o.backend));
        for (const p of model.namedParams()) p.param.assign(T.noGrad(() => T.tensor(weights.get(p.name)!, p.param.shape, { backend: o.backend })));
        attachDualLora(model, { rank: o.loraRank, policyRank: o.policyRank, alpha: o.loraRank }, new T.Rng(1000 + seed));
        const agent = new DualAgent(model, warm.tok, world, { ...DUAL_DEFAULTS, mode, groupSize: o.groupSize, tasksPerStep: o.tasksPerStep, policyLr: o.policyLr, worldLr: o.worldLr, totalSteps: o.steps, seed });
        const rng = new T.Rng(seed * 7919 + 1);
        const probeBefore = await transferProbe(model, warm.tok, world, evalSet);
        const { curve, worldLoss, sampledSuccess } = await trainArm(agent, evalSet, o, rng);
        const probeAfter = await transferProbe(model, warm.tok, world, evalSet);
        const run: RunResult = {
          space, mode, seed, curve, episodesToTarget: curve.find(([, s]) => s >= o.target)?.[0] ?? null, auc: curveArea(curve), finalSuccess: curve.at(-1)![1],
          probeBefore, probeAfter, worldLoss, sampledSuccess, seconds: (performance.now() - r0) / 1000,
        };
        runs.push(run);
        log(`  ${mode} seed ${seed}: target success ${curve.map(([e, s]) => `${e}:${(100 * s).toFixed(0)}%`).join(' ')}; probe Δ required ${(probeAfter.required - probeBefore.required).toFixed(3)}, other ${(probeAfter.other - probeBefore.other).toFixed(3)} (${run.seconds.toFixed(0)}s)`);
        model.dispose();
      }
    }
    tables.push(resultTable(runs.filter((r) => r.space === space), o, space));
  }

  // ---- the report ----
  const space = o.spaces[0];
  const colors: Record<DualMode, string> = { policy: '#d62728', world: '#7f7f7f', dual: '#1f77b4', shared: '#17becf', lookahead: '#9467bd', shuffled: '#8c564b', memory: '#2ca02c', early: '#bcbd22' };
  const meanCurve = (mode: DualMode): [number, number][] => {
    const rs = runs.filter((r) => r.mode === mode && r.space === space);
    return rs[0].curve.map(([e], i) => [e, meanStd(rs.map((r) => r.curve[i][1])).mean]);
  };
  const svg = lineChartSvg(
    o.modes.map((m) => ({ name: m, points: meanCurve(m), color: colors[m], width: 2 })),
    { title: `dual LoRA, space ${space}: greedy first-call success on the targets (mean of ${o.seeds.length} seeds)`, xLabel: 'episodes sampled', yLabel: 'success rate', yMax: 1, hLine: o.target },
  );
  await writeFile(join(o.out, 'dual-lora.svg'), svg);
  const gateLines = o.spaces.map((s) => `- space ${s}: ${gates[s].line}${gates[s].warmSeconds ? ` (warm start built in ${gates[s].warmSeconds.toFixed(0)}s)` : ' (warm start from the cache)'}`);
  const seconds = (performance.now() - t0) / 1000;
  const text = [...gateLines, '', ...tables].join('\n');
  await writeFile(join(o.out, 'dual-lora.json'), JSON.stringify({ options: { ...o, backend: o.backend.name }, seconds, gates, runs }, null, 2) + '\n');
  await writeFile(join(o.out, 'dual-lora-table.md'), `${text}\n\n![success vs episodes](dual-lora.svg)\n`);
  log(`done in ${seconds.toFixed(0)}s`);
  return { table: text, runs, gates, seconds };
}

/**
 * One arm's run over the run core's loop (src/train/run.ts): `steps` steps of the agent, with
 * greedy target success on `evalSet` before the first step, every `evalEvery` steps and at the
 * end, against the episodes sampled so far. No files: the experiment keeps what it reports.
 */
export async function trainArm(agent: DualAgent, evalSet: ServiceTask[], o: Pick<DualExperimentOptions, 'steps' | 'evalEvery'>, rng: T.Rng) {
  const curve: [number, number][] = []; // (episodes sampled, greedy target success)
  const worldLoss: (number | null)[] = [], sampledSuccess: number[] = [];
  await runLoop({
    at: () => agent.step,
    steps: o.steps,
    step: async () => {
      const s = await agent.trainStep(rng);
      return { step: s.step, loss: s.policyLoss ?? 0, lr: agent.o.policyLr, seconds: s.seconds, stats: s };
    },
    tokensPerStep: 0,
    onStep: (_, { stats: s }) => {
      worldLoss.push(s.worldLoss);
      sampledSuccess.push(s.success);
    },
    evalEvery: o.evalEvery,
    evalAtStart: true,
    evaluate: async () => {
      const s = await agent.success(evalSet);
      curve.push([agent.episodes, s]);
      return { target_success: s };
    },
    sampleEvery: 0,
    ckptEvery: 0,
  });
  return { curve, worldLoss, sampledSuccess };
}

/** The gate runs the warm model as is: a dual adapter at zero (B = 0) changes nothing. */
function attachForGate(model: GPT): GPT {
  attachDualLora(model, { rank: 2, policyRank: 1, alpha: 2 }, new T.Rng(0));
  return model;
}

function resultTable(rs: RunResult[], o: DualExperimentOptions, space: number): string {
  const budget = o.steps * o.tasksPerStep * o.groupSize;
  const f = (xs: number[], d = 2) => `${meanStd(xs).mean.toFixed(d)} ± ${meanStd(xs).std.toFixed(d)}`;
  const pct = (xs: number[]) => `${(100 * meanStd(xs).mean).toFixed(0)}% ± ${(100 * meanStd(xs).std).toFixed(0)}`;
  const rows = o.modes.map((m) => {
    const mine = rs.filter((r) => r.mode === m);
    const reached = mine.filter((r) => r.episodesToTarget !== null).map((r) => r.episodesToTarget!);
    const toTarget = reached.length ? `${f(reached, 0)} (${reached.length}/${mine.length} runs)` : `not reached (0/${mine.length})`;
    return `| ${m} | ${MODE_NOTES[m]} | ${pct(mine.map((r) => r.curve[0][1]))} | ${pct(mine.map((r) => r.finalSuccess))} | ${toTarget} | ${f(mine.map((r) => r.auc))} | ${f(mine.map((r) => r.probeAfter.required - r.probeBefore.required), 3)} | ${f(mine.map((r) => r.probeAfter.other - r.probeBefore.other), 3)} |`;
  });
  return [
    `space ${space}, ${o.seeds.length} seeds, ${budget} episodes per run:`,
    '',
    `| arm | what | target success at start | after ${budget} episodes | episodes to ${(100 * o.target).toFixed(0)}% | AUC | probe Δ log p, required fields | probe Δ log p, other fields |`,
    '|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
