// Dual LoRA in the service world (issue #12): the environment inside the batched engine (the
// observations forced per row are the rules' observations, rows end with their episode), the
// look-ahead preview's bookkeeping, L_world's mask (exactly the observation tokens), and the
// gradient isolation of the two rank groups (each loss moves only its own group; dual moves both).
import { beforeAll, describe, expect, it } from 'vitest';
import { Engine, type RowOutput } from '../src/model/engine.ts';
import { GPT, PRESETS, type GPTConfig } from '../src/model/gpt.ts';
import { adapterParams } from '../src/model/lora.ts';
import { tokenLogprobs } from '../src/model/logprobs.ts';
import * as T from '../src/tensor/index.ts';
import { SPECIALS, renderForCompletion, type Tokenizer } from '../src/tokenizer/index.ts';
import { DUAL_DEFAULTS, DualAgent, attachDualLora, withGroup, type EpisodeGroup } from '../src/rl/dual.ts';
import { replayRow, rowMasks, serviceSession } from '../src/rl/envs/hook.ts';
import { renderEpisode, servicePrompt } from '../src/rl/envs/render.ts';
import { createServiceWorld, oraclePolicy, runEpisode, sampleServiceTask, type ServiceTask, type ServiceWorld } from '../src/rl/envs/service.ts';
import { serviceTokenizer } from '../src/rl/warmstart.ts';
import { packWorldBatch, worldLoss } from '../src/rl/world.ts';

let world: ServiceWorld;
let tok: Tokenizer;
let config: GPTConfig;
beforeAll(async () => {
  world = createServiceWorld({ seed: 3, trainCompanies: 3, testCompanies: 1 });
  tok = await serviceTokenizer(world, 700, 0);
  config = { ...PRESETS.tiny, vocabSize: tok.vocabSize, hiddenSize: 16, numLayers: 1, numHeads: 2, numKVHeads: 1, headDim: 8, intermediateSize: 32, maxSeqLen: 320 };
});

const tasks = (n: number, seed = 1): ServiceTask[] => {
  const rng = new T.Rng(seed);
  return Array.from({ length: n }, () => sampleServiceTask(world, rng, 'train'));
};

describe('the service world in the engine', () => {
  it('forces the observations the rules say, and ends each row with its episode', async () => {
    // The model samples noise; a driver forces the agent's actions (a scripted policy) and
    // hands the closed call to the service hook, whose forced reply and END_ROW go through the
    // engine like any tool result. Row 0 plays the oracle; row 1 calls with no fields at once.
    const ts = tasks(1);
    const task = ts[0];
    const session = serviceSession(tok, world, ts, 2);
    const oracle = oraclePolicy(world);
    const scripts = [
      (steps: { action: string; observation: string }[]) => oracle({ company: task.company, request: task.request, steps }),
      () => `call(${task.company}, ${task.request})`,
    ];
    const call = (text: string) => [tok.specialId(SPECIALS.toolCallStart), ...tok.encodeOrdinary(text), tok.specialId(SPECIALS.toolCallEnd)];
    const model = new GPT(config, new T.Rng(1));
    const specials = Object.values(SPECIALS).map((s) => tok.specialId(s));
    const rows = await new Engine(model).generate([renderForCompletion(tok, servicePrompt(task))], {
      maxTokens: 200, temperature: 1, topK: 0, topP: 1, seed: 0, stop: [], samplesPerPrompt: 2, suppress: specials,
      afterToken: (row, gen) => {
        const action = call(scripts[row](session.episode(row).steps));
        return [...action, ...(session.afterToken(row, [...gen, ...action]) ?? [])];
      },
    });
    for (const [r, expected] of [[0, runEpisode(world, task, oracle)], [1, runEpisode(world, task, () => scripts[1]([]))]] as const) {
      const ep = session.episode(r);
      expect(ep.steps).toEqual(expected.steps);
      expect(ep.reward).toBe(expected.reward);
      expect(rows[r].finish).toBe('stop'); // ended by END_ROW, not by the token limit
      expect(rows[r].tokens.at(-1)).toBe(tok.specialId(SPECIALS.toolResultEnd));
      // the forced spans decode to the observations (after each call, with their markers)
      const text = tok.decode(rows[r].tokens.filter((_, j) => rows[r].forced[j]));
      expect(text).toBe(expected.steps.map((s) => `<|tool_call_start|>${s.action}<|tool_call_end|><|tool_result_start|>${s.observation}<|tool_result_end|>`).join(''));
    }
    expect(session.episode(0).reward).toBe(1);
    expect(session.episode(1).reward).toBe(0);
    expect(session.episode(1).steps[0].observation).toMatch(new RegExp(`^${task.company}: to ${task.request} we need `));
    model.dispose();
  });

  it('look-ahead: a call is first answered by the model (a preview, in neither mask), then run for real', () => {
    const [task] = tasks(1, 2);
    const sp = (s: string) => tok.specialId(s);
    const action = `call(${task.company}, ${task.request})`;
    const callIds = [sp(SPECIALS.toolCallStart), ...tok.encodeOrdinary(action), sp(SPECIALS.toolCallEnd)];
    const guess = tok.encodeOrdinary(`${task.company}: ${task.request} done`);
    // sampled call, forced <|tool_result_start|>, sampled guess and <|tool_result_end|>, the same call again
    const first = [...callIds, sp(SPECIALS.toolResultStart), ...guess, sp(SPECIALS.toolResultEnd)];
    const session = serviceSession(tok, world, [task], 1, { lookahead: true });
    const tokens: number[] = [];
    const forced: boolean[] = [];
    const feed = (ids: number[], isForced: boolean) => {
      for (const id of ids) {
        tokens.push(id);
        forced.push(isForced);
        if (!isForced) {
          const more = session.afterToken(0, [...tokens]);
          if (more) feed(more.filter((x) => x >= 0), true);
        }
      }
    };
    feed(callIds, false);
    expect(forced.at(-1)).toBe(true); // only <|tool_result_start|> was forced: the model writes the reply
    expect(session.episode(0).steps).toEqual([]); // the call did not run
    feed([...guess, sp(SPECIALS.toolResultEnd)], false);
    feed(callIds, false);
    const ep = session.episode(0);
    expect(ep.steps).toEqual([{ action, observation: runEpisode(world, task, () => action).steps[0].observation }]);
    expect(ep.done).toBe(true);
    // the episode is a function of the row's tokens: replaying them gives it back
    expect(replayRow(tok, world, task, { tokens, forced }, { lookahead: true })).toEqual(ep);
    const previews = session.previews(0);
    expect(previews).toEqual([[callIds.length + 1, first.length]]);
    const m = rowMasks({ tokens, forced }, previews);
    for (let j = 0; j < tokens.length; j++) {
      const inPreview = j >= callIds.length && j < first.length; // the marker and the guess
      if (inPreview) expect([m.action[j], m.obs[j]], `token ${j}`).toEqual([0, 0]);
    }
    // the real reply is the observation; the agent's two calls are its actions
    expect(m.obs.reduce((a, b) => a + b, 0)).toBe(forced.slice(first.length).filter(Boolean).length);
    expect(m.action.reduce((a, b) => a + b, 0)).toBe(2 * callIds.length);
  });
});

describe('L_world', () => {
  it('masks exactly the observation tokens, and is their mean negative log-prob', async () => {
    const eps = tasks(2, 5).map((t) => renderEpisode(tok, runEpisode(world, t, oraclePolicy(world))));
    const b = packWorldBatch(eps.map((e) => ({ ids: e.ids, obsMask: e.obsMask })));
    // position t is trained iff token t+1 is an observation token
    eps.forEach((e, n) => {
      for (let t = 0; t < b.L - 1; t++) expect(b.mask[n * (b.L - 1) + t], `row ${n} pos ${t}`).toBe(t + 1 < e.ids.length ? e.obsMask[t + 1] : 0);
    });
    // the masked set is non-trivial: observation tokens, never the agent's, never the prompt
    expect(b.mask.reduce((a, v) => a + v, 0)).toBe(eps.reduce((s, e) => s + e.obsMask.reduce((a, v) => a + v, 0), 0));
    eps.forEach((e) => e.obsMask.forEach((o, j) => expect(o && e.lossMask[j]).toBeFalsy()));
    const model = new GPT(config, new T.Rng(2));
    const loss = T.noGrad(() => worldLoss(model, b).itemSync());
    const logp = T.noGrad(() => tokenLogprobs(model, b.ids, b.N, b.L).dataSync());
    let s = 0, c = 0;
    for (let i = 0; i < b.mask.length; i++) if (b.mask[i]) (s -= logp[i]), c++;
    // Tolerance: the same float32 log-probs summed in a different order (~1e-7 relative per term)
    expect(Math.abs(loss - s / c)).toBeLessThan(1e-5 * Math.abs(s / c));
    model.dispose();
  });
});

describe('gradient isolation of the rank groups', () => {
  /** A hand-built group: oracle (reward 1) and a bare call (reward 0) on one task, with
   *  π_old from the model itself, laid out as the engine returns rows. */
  function groupOf(model: GPT, task: ServiceTask): EpisodeGroup {
    const prompt = renderForCompletion(tok, servicePrompt(task));
    const eps = [runEpisode(world, task, oraclePolicy(world)), runEpisode(world, task, () => `call(${task.company}, ${task.request})`)];
    const rows: RowOutput[] = eps.map((ep, s) => {
      const r = renderEpisode(tok, ep);
      expect(r.ids.slice(0, prompt.length)).toEqual(prompt);
      const tokens = r.ids.slice(prompt.length);
      const lp = T.noGrad(() => tokenLogprobs(model, Int32Array.from(r.ids), 1, r.ids.length).dataSync());
      return {
        prompt: 0, sample: s, tokens, forced: r.obsMask.slice(prompt.length).map(Boolean), finish: 'stop',
        logprobs: tokens.map(() => NaN), rawLogprobs: tokens.map((_, j) => lp[prompt.length + j - 1]),
      };
    });
    return {
      task, episodes: eps, obsMasks: eps.map((ep) => renderEpisode(tok, ep).obsMask.slice(prompt.length)),
      prompt: { ids: prompt, reward: () => 0 }, rows, rewards: eps.map((e) => e.reward),
    };
  }
  const snap = (model: GPT, g: 'policy' | 'world') => adapterParams(model, g).map((p) => Array.from(p.param.dataSync()));
  const changed = (a: number[][], b: number[][]) => a.some((x, i) => x.some((v, j) => v !== b[i][j]));

  async function agentFor(mode: 'policy' | 'world' | 'dual') {
    const model = new GPT(config, new T.Rng(4));
    attachDualLora(model, { rank: 8, policyRank: 4, alpha: 8 }, new T.Rng(5));
    // B starts at 0; make it non-zero so both groups' A factors get gradients too
    for (const p of adapterParams(model)) if (p.name.includes('lora_B')) p.param.assign(T.tensor(new T.Rng(6).normalArray(p.param.size, 0.02), p.param.shape));
    return new DualAgent(model, tok, world, { ...DUAL_DEFAULTS, mode, totalSteps: 1, policyLr: 1e-2, worldLr: 1e-2 });
  }

  it('a policy-loss update leaves the world group bit-identical; a world update leaves the policy bit-identical', async () => {
    for (const mode of ['policy', 'world'] as const) {
      const agent = await agentFor(mode);
      const groups = tasks(2, 7).map((t) => groupOf(agent.model, t));
      const p0 = snap(agent.model, 'policy'), w0 = snap(agent.model, 'world');
      const s = await agent.learn(groups);
      const p1 = snap(agent.model, 'policy'), w1 = snap(agent.model, 'world');
      if (mode === 'policy') {
        expect(Number.isFinite(s.policyLoss) && Number.isNaN(s.worldLoss)).toBe(true);
        expect(changed(p0, p1)).toBe(true);
        expect(w1).toEqual(w0);
      } else {
        expect(Number.isFinite(s.worldLoss) && Number.isNaN(s.policyLoss)).toBe(true);
        expect(changed(w0, w1)).toBe(true);
        expect(p1).toEqual(p0);
      }
      // every adapter records gradients again afterwards (the detach is undone)
      expect(adapterParams(agent.model).every((p) => p.param.requiresGrad)).toBe(true);
      agent.model.dispose();
    }
  });

  it('dual mode moves both groups, each by its own loss', async () => {
    const agent = await agentFor('dual');
    const groups = tasks(2, 7).map((t) => groupOf(agent.model, t));
    const p0 = snap(agent.model, 'policy'), w0 = snap(agent.model, 'world');
    const s = await agent.learn(groups);
    expect(Number.isFinite(s.policyLoss) && Number.isFinite(s.worldLoss)).toBe(true);
    expect(changed(p0, snap(agent.model, 'policy'))).toBe(true);
    expect(changed(w0, snap(agent.model, 'world'))).toBe(true);
    agent.model.dispose();
  });

  it('withGroup detaches the other group: its gradient stays empty through a backward', async () => {
    const agent = await agentFor('dual');
    const e = renderEpisode(tok, runEpisode(world, tasks(1)[0], oraclePolicy(world)));
    const b = packWorldBatch([{ ids: e.ids, obsMask: e.obsMask }]);
    await withGroup(agent.model, 'world', async () => T.tidy(() => T.backward(worldLoss(agent.model, b))));
    expect(adapterParams(agent.model, 'policy').every((p) => !p.param.grad)).toBe(true);
    expect(adapterParams(agent.model, 'world').some((p) => p.param.grad)).toBe(true);
    agent.model.dispose();
  });
});
