// Dual LoRA in the service world (issues #12, #19): the environment inside the batched engine,
// look-ahead (the preview is the full adapter's, in neither loss, and the call sent is the one
// after it), the shuffled control (length and token statistics kept, information destroyed),
// the memory arm's prompt (exactly that company's past failure replies), gradient isolation of
// the rank groups, the gate refusing a model that cannot copy, and an exact --resume.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/model/engine.ts';
import { GPT, PRESETS, type GPTConfig } from '../src/model/gpt.ts';
import { adapterParams } from '../src/model/lora.ts';
import * as T from '../src/tensor/index.ts';
import { SPECIALS, type Tokenizer } from '../src/tokenizer/index.ts';
import { saveCheckpoint, loadCheckpoint, type TrainState } from '../src/io/checkpoint.ts';
import { DUAL_DEFAULTS, DualAgent, attachDualLora, playEpisodes, shuffleReplies, type DualMode } from '../src/rl/dual.ts';
import { rowMasks, serviceSession } from '../src/rl/envs/hook.ts';
import { agentPrompt, bareCall } from '../src/rl/envs/render.ts';
import { createServiceWorld, needReply, oraclePolicy, runEpisode, sampleServiceTask, type ServiceTask, type ServiceWorld } from '../src/rl/envs/service.ts';
import { runGate, valueCopyRate } from '../src/rl/gate.ts';
import { serviceTokenizer } from '../src/rl/warmstart.ts';
import { runRL, RL_DEFAULTS } from '../src/rl/run.ts';
import { cpu } from '../src/backend/cpu.ts';

let world: ServiceWorld;
let tok: Tokenizer;
let config: GPTConfig;
beforeAll(async () => {
  world = createServiceWorld({ seed: 3, companies: 3, targets: 1, practice: 2, requests: 2, space: 6 });
  tok = await serviceTokenizer(world, 600, 0);
  config = { ...PRESETS.tiny, vocabSize: tok.vocabSize, hiddenSize: 16, numLayers: 1, numHeads: 2, numKVHeads: 1, headDim: 8, intermediateSize: 32, maxSeqLen: 256 };
});

const tasks = (n: number, split: 'known' | 'target' = 'known', seed = 1): ServiceTask[] => {
  const rng = new T.Rng(seed);
  return Array.from({ length: n }, () => sampleServiceTask(world, rng, split));
};

/** A small random model with the dual adapter, B made non-zero so both groups act. */
function dualModel(seed = 4, scale = 0.02): GPT {
  const model = new GPT(config, new T.Rng(seed));
  attachDualLora(model, { rank: 8, policyRank: 4, alpha: 8 }, new T.Rng(5));
  for (const p of adapterParams(model)) if (p.name.includes('lora_B')) p.param.assign(T.tensor(new T.Rng(6).normalArray(p.param.size, scale), p.param.shape));
  return model;
}

describe('the service world in the engine', () => {
  it('forces the observations the rules say, and ends each row with its episode', async () => {
    const [task] = tasks(1);
    const session = serviceSession(tok, world, [task], 1);
    const oracle = oraclePolicy(world);
    const call = (text: string) => [tok.specialId(SPECIALS.toolCallStart), ...tok.encodeOrdinary(text), tok.specialId(SPECIALS.toolCallEnd)];
    const model = new GPT(config, new T.Rng(1));
    const specials = Object.values(SPECIALS).map((s) => tok.specialId(s));
    const rows = await new Engine(model).generate([agentPrompt(tok, task)], {
      maxTokens: 200, temperature: 1, topK: 0, topP: 1, seed: 0, stop: [], samplesPerPrompt: 1, suppress: specials,
      afterToken: (row, gen) => {
        const action = call(oracle({ company: task.company, request: task.request, steps: session.episode(row).steps }));
        return [...action, ...(session.afterToken(row, [...gen, ...action]) ?? [])];
      },
    });
    const expected = runEpisode(world, task, oracle);
    expect(session.episode(0).steps).toEqual(expected.steps);
    expect(session.episode(0).reward).toBe(1);
    expect(rows[0].finish).toBe('stop');
    model.dispose();
  });
});

describe('look-ahead', () => {
  it('the preview is the full adapter\'s greedy reply, in neither mask; the call sent is the one after it', async () => {
    const model = dualModel(4, 0.5);
    const [task] = tasks(1, 'target', 2);
    const engine = new Engine(model);
    const [g] = await playEpisodes(engine, tok, world, [task], 1, { temperature: 0, seed: 0, maxTokens: 60, lookahead: true });
    const row = g.rows[0];
    const prompt = agentPrompt(tok, task, [], bareCall(task));
    expect(tok.decode(prompt)).toMatch(new RegExp(`<\\|tool_call_start\\|>call\\(${task.company}, ${task.request}\\)<\\|tool_call_end\\|><\\|tool_result_start\\|>$`));
    const [[a, b]] = g.previews[0];
    expect(a).toBe(0);
    // the same greedy continuation of the same prompt by the full model (both groups)
    const resultEnd = tok.specialId(SPECIALS.toolResultEnd);
    const [ref] = await engine.generate([prompt], { maxTokens: b, temperature: 0, topK: 0, topP: 1, seed: 0, stop: [resultEnd, tok.specialId(SPECIALS.assistantEnd), tok.bosId], suppress: [tok.bosId] });
    expect(row.tokens.slice(0, b)).toEqual(ref.tokens.slice(0, b));
    // with the world group switched off the preview would differ: it is not the policy ranks' alone
    for (const p of adapterParams(model, 'world')) if (p.name.includes('lora_B')) p.param.assign(T.zeros(p.param.shape));
    const [noWorld] = await new Engine(model).generate([prompt], { maxTokens: b, temperature: 0, topK: 0, topP: 1, seed: 0, stop: [resultEnd], suppress: [tok.bosId] });
    expect(noWorld.tokens.slice(0, b)).not.toEqual(ref.tokens.slice(0, b));
    // in neither mask; the episode's steps start after the preview (nothing was sent for it)
    const m = rowMasks(row, g.previews[0]);
    for (let j = a; j < b; j++) expect([m.action[j], g.obsMasks[0][j], row.forced[j]]).toEqual([0, 0, true]); // rows[].forced marks non-actions for packBatch
    expect(b).toBeGreaterThan(0);
    const ep = g.episodes[0];
    if (ep.steps.length) {
      const firstCall = tok.decode(row.tokens.slice(b)).split('<|tool_call_end|>')[0];
      expect(firstCall).toBe(`<|tool_call_start|>${ep.steps[0].action}`);
    }
    model.dispose();
  });
});

describe('the shuffled control', () => {
  it('keeps the length and the token distribution of a failure reply, and destroys what it says', () => {
    const reply = needReply(world.companies[0].name, world.requests[0], world.companies[0].requires[world.requests[0]]);
    const sp = (s: string) => tok.specialId(s);
    const tokens = [sp(SPECIALS.toolCallStart), ...tok.encodeOrdinary(bareCall({ company: world.companies[0].name, request: world.requests[0] })), sp(SPECIALS.toolCallEnd),
      sp(SPECIALS.toolResultStart), ...tok.encodeOrdinary(reply), sp(SPECIALS.toolResultEnd)];
    const obs = tokens.map((_, j) => (j >= tokens.indexOf(sp(SPECIALS.toolResultStart)) ? 1 : 0));
    const rng = new T.Rng(1);
    const counts = new Map<string, number>();
    let same = 0;
    const n = 600;
    for (let i = 0; i < n; i++) {
      const out = shuffleReplies(tok, world, tokens, obs, rng);
      expect(out.length).toBe(tokens.length);
      const text = tok.decode(out.slice(tokens.indexOf(sp(SPECIALS.toolResultStart)) + 1, -1));
      const m = /^(.*) we need (.*)$/.exec(text)!;
      expect(m[1]).toBe(reply.split(' we need ')[0]); // company and request untouched
      const fields = m[2].split(', ');
      expect(new Set(fields).size).toBe(world.k);
      for (const f of fields) counts.set(f, (counts.get(f) ?? 0) + 1);
      if (m[2] === reply.split(' we need ')[1]) same++;
    }
    // every field about equally often (k/n of the draws each: the world's own requirement distribution)
    for (const f of world.fields) expect(Math.abs(counts.get(f)! / n - world.k / world.fields.length)).toBeLessThan(0.08);
    // the true list survives only by chance (1/6 ordered-insensitive at most in this space)
    expect(same / n).toBeLessThan(0.25);
  });
});

describe('the memory arm', () => {
  it('its prompt holds exactly the past failure replies of that company', async () => {
    const model = dualModel();
    const agent = new DualAgent(model, tok, world, { ...DUAL_DEFAULTS, mode: 'memory', totalSteps: 1 });
    const [target] = tasks(1, 'target', 3);
    const other = world.companies.find((c) => c.split === 'known')!;
    const fake = (company: string, request: string, obs: string) => ({ task: { company, request, profile: target.profile }, steps: [{ action: 'call(x, y)', observation: obs }], done: true, reward: 0 });
    const t = world.companies.find((c) => c.name === target.company)!;
    const r0 = needReply(t.name, world.requests[0], t.requires[world.requests[0]]), r1 = needReply(t.name, world.requests[1], t.requires[world.requests[1]]);
    agent.remember([{ episodes: [fake(t.name, world.requests[0], r0), fake(t.name, world.requests[0], r0), fake(t.name, world.requests[1], r1),
      fake(t.name, world.requests[0], `${t.name}: card does not match our records`), fake(other.name, world.requests[0], needReply(other.name, world.requests[0], other.requires[world.requests[0]]))] } as never]);
    const [g] = await agent.rollouts([target], 1, 0, 0);
    const text = tok.decode(g.prompt.ids);
    const results = [...text.matchAll(/<\|tool_result_start\|>(.*?)<\|tool_result_end\|>/g)].map((m) => m[1]);
    expect(results).toEqual([r0, r1]);
    model.dispose();
  });
});

describe('gradient isolation of the rank groups', () => {
  const snap = (model: GPT, g: 'policy' | 'world') => adapterParams(model, g).map((p) => Array.from(p.param.dataSync()));
  const changed = (a: number[][], b: number[][]) => a.some((x, i) => x.some((v, j) => v !== b[i][j]));
  // hand-made groups: the oracle (reward 1) and a bare call (reward 0), as sampled rows would be
  async function groups(agent: DualAgent) {
    const ts = tasks(2, 'known', 7);
    const gs = await agent.rollouts(ts, 2, 1, 3);
    // force a reward difference so DAPO keeps the groups (the rows' content does not matter for isolation)
    for (const g of gs) g.rewards = [1, 0];
    return gs;
  }

  for (const mode of ['policy', 'world', 'dual', 'shared'] as DualMode[]) {
    it(`${mode}: moves exactly the groups its losses train`, async () => {
      const model = dualModel();
      const agent = new DualAgent(model, tok, world, { ...DUAL_DEFAULTS, mode, totalSteps: 1, maxTokens: 40, policyLr: 1e-2, worldLr: 1e-2 });
      const gs = await groups(agent);
      const hasObs = gs.some((g) => g.obsMasks.some((m) => m.some(Boolean)));
      const p0 = snap(model, 'policy'), w0 = snap(model, 'world');
      const s = await agent.learn(gs);
      const pMoved = changed(p0, snap(model, 'policy')), wMoved = changed(w0, snap(model, 'world'));
      if (mode === 'policy') expect([pMoved, wMoved, s.worldLoss]).toEqual([true, false, null]);
      if (mode === 'world') expect([pMoved, wMoved, s.policyLoss]).toEqual([false, hasObs, null]);
      if (mode === 'dual') expect([pMoved, wMoved]).toEqual([true, hasObs]);
      if (mode === 'shared') expect([pMoved, wMoved]).toEqual([true, true]);
      expect(adapterParams(model).every((p) => p.param.requiresGrad)).toBe(true);
      model.dispose();
    });
  }
});

describe('the gate', () => {
  it('refuses a model that cannot copy', async () => {
    const model = dualModel(9);
    const g = await runGate(new Engine(model), tok, world, { maxTokens: 40, each: 1, k: 2, recoveryTasks: 2 });
    expect(g.passed).toBe(false);
    expect(g.line).toMatch(/^gate FAILED: known-company success \d+% < 90%/);
    model.dispose();
  });

  it('value copy counts the told fields a call carries, and how many match', () => {
    const [task] = tasks(1);
    const ep = runEpisode(world, task, oraclePolicy(world));
    expect(valueCopyRate([ep])).toEqual({ hits: world.k, total: world.k });
    const wrong = { ...ep, steps: [...ep.steps.slice(0, -1), { action: ep.steps.at(-1)!.action.replace(/=(\d\d)/, '=xx'), observation: '' }] };
    expect(valueCopyRate([wrong])).toEqual({ hits: world.k - 1, total: world.k });
  });
});

describe('rl --task service-env --resume', () => {
  it('continues exactly: interrupted + resumed adapters and optimizer equal an uninterrupted run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'minichat-dual-'));
    const init = join(dir, 'init');
    const model = new GPT(config, new T.Rng(11));
    await saveCheckpoint(init, { model, tokenizer: tok, optimizerState: null, state: null as unknown as TrainState });
    model.dispose();
    const o = {
      ...RL_DEFAULTS, task: 'service-env', mode: 'dual', init, backend: cpu, steps: 3, groupSize: 2, promptsPerStep: 2, maxTokens: 40, loraRank: 4, loraAlpha: 4,
      evalProblems: 2, evalEvery: 0, ckptEvery: 1, worldSeed: 3, space: 6, companies: 3, targets: 1, lr: 1e-2, worldLr: 1e-2,
    };
    const log = { log: () => {} };
    await runRL({ ...o, out: join(dir, 'a') } as never, log);
    await runRL({ ...o, out: join(dir, 'b'), steps: 2 } as never, log);
    await runRL({ ...o, out: join(dir, 'b'), resume: true } as never, log);
    const a = await loadCheckpoint(join(dir, 'a', 'checkpoint'), { withOptimizer: true });
    const b = await loadCheckpoint(join(dir, 'b', 'checkpoint'), { withOptimizer: true });
    expect(b.state!.step).toBe(3);
    const ad = (m: GPT) => adapterParams(m).map((p) => [p.name, Array.from(p.param.dataSync())]);
    expect(ad(b.model)).toEqual(ad(a.model));
    expect(Object.keys(b.optimizerState!).sort()).toEqual(Object.keys(a.optimizerState!).sort());
    for (const k of Object.keys(a.optimizerState!)) expect(Array.from(b.optimizerState![k].dataSync()), k).toEqual(Array.from(a.optimizerState![k].dataSync()));
    // and the run moved at all
    expect(ad(a.model).some(([, v]) => (v as number[]).some((x) => x !== 0))).toBe(true);
  }, 60_000);
});

describe('rl --task service-env flags', () => {
  it('refuses every typed flag it has no use for, in one line, and --init is only optional for it', async () => {
    const { Command } = await import('commander');
    const { registerRl } = await import('../src/cli/rl.ts');
    const run = async (...args: string[]) => {
      const program = new Command().exitOverride();
      registerRl(program);
      try {
        await program.parseAsync(['node', 'minichat', 'rl', ...args]);
        return 'ran';
      } catch (e) {
        return (e as Error).message;
      }
    };
    for (const [flag, value] of [['--beta', '0.1'], ['--mu', '2'], ['--max-gen-rounds', '1'], ['--overlong', '64,16'], ['--digits', '2'], ['--tool', undefined]] as const) {
      const msg = await run('--task', 'service-env', flag, ...(value ? [value] : []));
      expect(msg, flag).toMatch(new RegExp(`^${flag} does not apply to --task service-env \\(`));
      expect(msg).not.toContain('\n');
    }
    expect(await run('--task', 'arithmetic')).toMatch(/^--init is required for --task arithmetic/);
    expect(await run('--task', 'arithmetic', '--init', 'x', '--space', '6')).toMatch(/^--space applies to --task service-env only/);
  });
});
