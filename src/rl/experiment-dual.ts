// The dual-LoRA experiment: does learning to predict what the environment says (a world
// model in half of the adapter's ranks) make an agent learn the service world in fewer
// episodes than reward alone?
//
//   minichat experiment dual-lora [--steps 6] [--seeds 0,1] [--modes policy,world,dual,early,lookahead]
//
// Protocol (every number below is an option with its default in DUAL_EXPERIMENT_DEFAULTS):
//   1. one service world (8 training companies, 4 held out) and one warm start shared by every
//      run (warmstart.ts: a tokenizer and a fresh small model taught the call format by SFT on
//      oracle episodes of half the training companies); saved as a checkpoint for `minichat rl`;
//   2. for each seed and mode: the warm model plus a fresh dual adapter (seeded), `steps`
//      steps of tasksPerStep × G episodes — EQUAL budgets, the same for every mode — with
//      greedy success on a fixed set of training-company tasks after every `evalEvery` steps;
//   3. one exposure to each held-out company: one learning step on G episodes of one task per
//      held-out company, through the same mode;
//   4. after it: greedy success on fixed held-out tasks, and the world model's next-observation
//      accuracy (exact match of the greedy reply) on held-out (company, call) probes.
// Reported per mode as mean ± standard deviation over seeds; the curve plots the seeds' mean.
// "Episodes to target" counts the episodes sampled before the greedy training success first
// reached the target; a run that never reached it counts as not reached.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/backend.ts';
import { lineChartSvg } from '../eval/plot.ts';
import { saveCheckpoint, type TrainState } from '../io/checkpoint.ts';
import { GPT } from '../model/gpt.ts';
import * as T from '../tensor/index.ts';
import { observationNll } from './world.ts';
import { DUAL_DEFAULTS, DUAL_MODES, DualAgent, attachDualLora, evalTasks, probesFor, type DualMode } from './dual.ts';
import { createServiceWorld, sampleServiceTask } from './envs/service.ts';
import { WARM_START_DEFAULTS, serviceTokenizer, warmStart } from './warmstart.ts';

export interface DualExperimentOptions {
  modes: DualMode[];
  seeds: number[];
  steps: number; // training steps per run (the budget is steps × tasksPerStep × groupSize episodes)
  tasksPerStep: number;
  groupSize: number;
  evalEvery: number; // greedy training success every N steps
  evalTasks: number; // fixed training-company tasks for that success rate
  heldOutTasks: number; // fixed held-out tasks for the success after one exposure
  target: number; // the success rate whose first crossing is reported
  loraRank: number; // total rank of the dual adapter
  policyRank: number; // the policy group's share
  policyLr: number;
  worldLr: number;
  sftSteps: number; // warm start: format SFT steps
  worldSeed: number;
  shortValues: boolean; // two-digit user values: copying is not what limits a tiny model (service.ts)
  out: string;
  backend: Backend;
}

/** The small model the experiment trains (a narrower `tiny`, so five modes fit 15 CPU minutes). */
export const EXPERIMENT_MODEL = { hiddenSize: 64, numLayers: 2, numHeads: 2, numKVHeads: 1, headDim: 32, intermediateSize: 128, maxSeqLen: 256 };

export const DUAL_EXPERIMENT_DEFAULTS: Omit<DualExperimentOptions, 'out' | 'backend'> = {
  modes: [...DUAL_MODES], seeds: [0, 1], steps: 6, tasksPerStep: 4, groupSize: 4, evalEvery: 2, evalTasks: 16, heldOutTasks: 12, target: 0.5,
  loraRank: 16, policyRank: 8, policyLr: 1e-2, worldLr: 1e-2, sftSteps: 300, worldSeed: 0, shortValues: true,
};

interface RunResult {
  mode: DualMode;
  seed: number;
  curve: [number, number][]; // (episodes sampled, greedy training success)
  episodesToTarget: number | null;
  finalTrainSuccess: number;
  heldOutSuccess: number;
  heldOutObsAccuracy: number;
  trainObsAccuracy: number;
  heldOutObsNll: number; // L_world on the held-out probes, nats per observation token
  trainObsNll: number;
  worldLoss: number[]; // per step (NaN where no world step ran)
  seconds: number;
}

const meanStd = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean: m, std: Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1)) };
};

export async function runDualExperiment(o: DualExperimentOptions, log: (s: string) => void) {
  const t0 = performance.now();
  await mkdir(o.out, { recursive: true });
  const world = createServiceWorld({ seed: o.worldSeed, shortValues: o.shortValues });
  const tok = await serviceTokenizer(world, WARM_START_DEFAULTS.vocabSize, o.worldSeed);
  log(`world: ${world.companies.filter((c) => c.split === 'train').length} training and ${world.companies.filter((c) => c.split === 'test').length} held-out companies; tokenizer ${tok.vocabSize} tokens`);
  const warm = await warmStart(world, tok, { ...WARM_START_DEFAULTS, sftSteps: o.sftSteps, config: EXPERIMENT_MODEL }, o.backend);
  log(`warm start: format SFT ${o.sftSteps} steps, loss ${warm.losses[0].toFixed(3)} -> ${warm.losses.at(-1)!.toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(0)}s)`);
  await saveCheckpoint(join(o.out, 'warm', 'checkpoint'), { model: warm.model, tokenizer: tok, optimizerState: null, state: null as unknown as TrainState });
  const weights = new Map(warm.model.namedParams().map((p) => [p.name, Float32Array.from(p.param.dataSync())]));
  const config = warm.model.config;
  warm.model.dispose();

  const trainTasks = evalTasks(world, 'train', o.evalTasks);
  const testTasks = evalTasks(world, 'test', o.heldOutTasks);
  const testProbes = probesFor(tok, world, testTasks);
  const trainProbes = probesFor(tok, world, trainTasks.slice(0, 8));
  const runs: RunResult[] = [];
  for (const seed of o.seeds) {
    for (const mode of o.modes) {
      const r0 = performance.now();
      const model = T.noGrad(() => new GPT(config, new T.Rng(1), o.backend));
      for (const p of model.namedParams()) p.param.assign(T.noGrad(() => T.tensor(weights.get(p.name)!, p.param.shape, { backend: o.backend })));
      attachDualLora(model, { rank: o.loraRank, policyRank: o.policyRank, alpha: o.loraRank }, new T.Rng(1000 + seed));
      const agent = new DualAgent(model, tok, world, {
        ...DUAL_DEFAULTS, mode, groupSize: o.groupSize, tasksPerStep: o.tasksPerStep, policyLr: o.policyLr, worldLr: o.worldLr, totalSteps: o.steps, seed,
      });
      const rng = new T.Rng(seed * 7919 + 1);
      const curve: [number, number][] = [[0, await agent.success(trainTasks)]];
      const worldLoss: number[] = [];
      while (agent.step < o.steps) {
        const s = await agent.trainStep(rng);
        worldLoss.push(s.worldLoss);
        if (agent.step % o.evalEvery === 0 || agent.step === o.steps) curve.push([agent.episodes, await agent.success(trainTasks)]);
        log(`  ${mode} seed ${seed} step ${s.step}: ${s.episodes} episodes, sampled success ${(100 * s.success).toFixed(0)}%, policy loss ${s.policyLoss.toFixed(3)}, world loss ${s.worldLoss.toFixed(3)}, ${s.seconds.toFixed(1)}s`);
      }
      const trainObsAccuracy = await agent.observationAccuracy(trainProbes);
      const trainObsNll = await observationNll(model, tok, trainProbes);
      // one exposure to each held-out company: one task each, G episodes, one learning step
      const exposureRng = new T.Rng(seed + 99);
      const heldOut = world.companies.filter((c) => c.split === 'test').map((c) => {
        for (;;) {
          const t = sampleServiceTask(world, exposureRng, 'test');
          if (t.company === c.name) return t;
        }
      });
      const exposure = await agent.rollouts(heldOut, o.groupSize, DUAL_DEFAULTS.temperature, seed * 31 + 7);
      await agent.learn(exposure);
      const run: RunResult = {
        mode, seed, curve, episodesToTarget: curve.find(([, s]) => s >= o.target)?.[0] ?? null, finalTrainSuccess: curve.at(-1)![1],
        heldOutSuccess: await agent.success(testTasks), heldOutObsAccuracy: await agent.observationAccuracy(testProbes), trainObsAccuracy,
        heldOutObsNll: await observationNll(model, tok, testProbes), trainObsNll,
        worldLoss, seconds: (performance.now() - r0) / 1000,
      };
      runs.push(run);
      log(`${mode} seed ${seed}: train success ${curve.map(([e, s]) => `${e}:${(100 * s).toFixed(0)}%`).join(' ')}; held-out success ${(100 * run.heldOutSuccess).toFixed(0)}%, held-out obs acc ${(100 * run.heldOutObsAccuracy).toFixed(0)}%, train obs acc ${(100 * trainObsAccuracy).toFixed(0)}%, obs NLL train ${trainObsNll.toFixed(2)} held-out ${run.heldOutObsNll.toFixed(2)} (${run.seconds.toFixed(0)}s)`);
      model.dispose();
    }
  }

  // ---- the report ----
  const budget = o.steps * o.tasksPerStep * o.groupSize;
  const colors: Record<DualMode, string> = { policy: '#d62728', world: '#7f7f7f', dual: '#1f77b4', early: '#2ca02c', lookahead: '#9467bd' };
  const meanCurve = (mode: DualMode): [number, number][] => {
    const rs = runs.filter((r) => r.mode === mode);
    return rs[0].curve.map(([e], i) => [e, meanStd(rs.map((r) => r.curve[i][1])).mean]);
  };
  const svg = lineChartSvg(
    o.modes.map((m) => ({ name: m, points: meanCurve(m), color: colors[m], width: 2 })),
    { title: `dual LoRA: greedy success on training companies (mean of ${o.seeds.length} seeds)`, xLabel: 'episodes sampled', yLabel: 'success rate', yMax: 1, hLine: o.target },
  );
  await writeFile(join(o.out, 'dual-lora.svg'), svg);
  const pct = (xs: number[]) => {
    const { mean, std } = meanStd(xs);
    return `${(100 * mean).toFixed(0)}% ± ${(100 * std).toFixed(0)}`;
  };
  const rows = o.modes.map((m) => {
    const rs = runs.filter((r) => r.mode === m);
    const reached = rs.filter((r) => r.episodesToTarget !== null).map((r) => r.episodesToTarget!);
    const toTarget = reached.length ? `${meanStd(reached).mean.toFixed(0)} (${reached.length}/${rs.length} runs)` : `not reached (0/${rs.length})`;
    const nll = (xs: number[]) => `${meanStd(xs).mean.toFixed(2)} ± ${meanStd(xs).std.toFixed(2)}`;
    return `| ${m} | ${pct(rs.map((r) => r.curve[0][1]))} | ${pct(rs.map((r) => r.finalTrainSuccess))} | ${toTarget} | ${pct(rs.map((r) => r.heldOutSuccess))} | ${pct(rs.map((r) => r.trainObsAccuracy))} | ${pct(rs.map((r) => r.heldOutObsAccuracy))} | ${nll(rs.map((r) => r.trainObsNll))} | ${nll(rs.map((r) => r.heldOutObsNll))} |`;
  });
  const table = [
    `| mode | train success at start | train success after ${budget} episodes | episodes to ${(100 * o.target).toFixed(0)}% train success | held-out success after one exposure | next-obs accuracy, train probes | next-obs accuracy, held-out probes | obs NLL, train probes | obs NLL, held-out probes |`,
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  const seconds = (performance.now() - t0) / 1000;
  const summary = {
    options: { ...o, backend: o.backend.name }, budget_episodes: budget, seconds, warm_sft_loss: [warm.losses[0], warm.losses.at(-1)],
    runs: runs.map((r) => ({ ...r, worldLoss: r.worldLoss.map((x) => (Number.isFinite(x) ? x : null)) })),
  };
  await writeFile(join(o.out, 'dual-lora.json'), JSON.stringify(summary, null, 2) + '\n');
  await writeFile(join(o.out, 'dual-lora-table.md'), `${table}\n\n![success vs episodes](dual-lora.svg)\n`);
  log(`done in ${seconds.toFixed(0)}s`);
  return { table, summary };
}
