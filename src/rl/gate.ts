// The gate before any RL (issue #19): is the warm start an agent the experiment can learn with?
//
//   known success   greedy first-call success on the known companies (every pair, fresh users)
//   value copy      of the fields those calls carry that the user had told, the share with the
//                   user's value (copying a value from the context into the call)
//   recovery        greedy success at practice companies with fresh random requirements, when a
//                   reply "X: to cancel we need a, b" is in the context (what look-ahead and
//                   memory rely on: reading the requirement off a reply)
//   target success  greedy success on the target pairs before RL (what RL starts from)
//   target pass@k   the share of target tasks with at least one success among k samples at
//                   temperature 1 (is there any signal for reward-only RL to find?)
// The gate passes when known success >= 90% and value copy >= 95% (GATE_THRESHOLDS); the
// experiment refuses to run its arms otherwise. Recovery, target success and pass@k are
// reported with it, not gated on.
import type { Engine } from '../model/engine.ts';
import * as T from '../tensor/index.ts';
import type { Tokenizer } from '../tokenizer/bpe.ts';
import { parseAction } from './envs/actions.ts';
import { bareCall } from './envs/render.ts';
import { companiesOf, drawRequirement, knownValues, makeProfile, needReply, targetPairs, type EpisodeState, type ServiceTask, type ServiceWorld } from './envs/service.ts';
import { fixedTasks, playEpisodes } from './dual.ts';

export const GATE_THRESHOLDS = { knownSuccess: 0.9, valueCopy: 0.95 };

export interface GateResult {
  knownSuccess: number;
  valueCopy: number;
  recovery: number;
  targetSuccess: number;
  targetPassAtK: number;
  k: number;
  passed: boolean;
  /** One line: the numbers and, when it fails, which threshold. */
  line: string;
}

/** Of the values the calls carry for fields the user had told, the share that match. */
export function valueCopyRate(episodes: EpisodeState[]): { hits: number; total: number } {
  let hits = 0, total = 0;
  for (const e of episodes) {
    e.steps.forEach((s, i) => {
      let a;
      try {
        a = parseAction(s.action);
      } catch {
        return;
      }
      if (a.kind !== 'call') return;
      const told = knownValues(e.steps.slice(0, i));
      for (const [f, v] of a.args) {
        if (!told.has(f)) continue;
        total++;
        if (told.get(f) === v) hits++;
      }
    });
  }
  return { hits, total };
}

export interface GateOptions {
  maxTokens: number;
  each: number; // tasks per known pair and per target pair
  k: number; // samples per target task for pass@k
  recoveryTasks: number;
}

export const GATE_DEFAULTS: GateOptions = { maxTokens: 72, each: 2, k: 8, recoveryTasks: 24 };

export async function runGate(engine: Engine, tok: Tokenizer, world: ServiceWorld, o: GateOptions = GATE_DEFAULTS): Promise<GateResult> {
  const play = (tasks: ServiceTask[], G: number, temperature: number, extra: { prefaces?: ReturnType<typeof prefaceOf>[] } = {}) =>
    playEpisodes(engine, tok, world, tasks, G, { temperature, seed: 9001, maxTokens: o.maxTokens, ...extra });
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

  const knownPairs = companiesOf(world, 'known').flatMap((c) => world.requests.map((request) => ({ company: c.name, request })));
  const known = await play(fixedTasks(world, knownPairs, o.each, 777), 1, 0);
  const knownSuccess = mean(known.map((g) => g.rewards[0]));
  const copy = valueCopyRate(known.map((g) => g.episodes[0]));
  const valueCopy = copy.total ? copy.hits / copy.total : 0;

  const rng = new T.Rng(4242);
  const practice = Array.from({ length: o.recoveryTasks }, (): ServiceTask => {
    const company = world.practice[rng.int(world.practice.length)];
    const request = world.requests[rng.int(world.requests.length)];
    return { company, request, profile: makeProfile(rng, world.fields), requires: drawRequirement(rng, world.fields, world.k) };
  });
  const rec = await play(practice, 1, 0, { prefaces: practice.map(prefaceOf) });
  const recovery = mean(rec.map((g) => g.rewards[0]));

  const targets = fixedTasks(world, targetPairs(world), o.each, 888);
  const targetSuccess = mean((await play(targets, 1, 0)).map((g) => g.rewards[0]));
  const sampled = await play(targets, o.k, 1);
  const targetPassAtK = mean(sampled.map((g) => (g.rewards.some((r) => r >= 1) ? 1 : 0)));

  const fails: string[] = [];
  if (knownSuccess < GATE_THRESHOLDS.knownSuccess) fails.push(`known-company success ${pct(knownSuccess)} < ${pct(GATE_THRESHOLDS.knownSuccess)}`);
  if (valueCopy < GATE_THRESHOLDS.valueCopy) fails.push(`value copy ${pct(valueCopy)} < ${pct(GATE_THRESHOLDS.valueCopy)}`);
  const numbers = `known success ${pct(knownSuccess)} (${known.length} tasks), value copy ${pct(valueCopy)} (${copy.total} values), recovery ${pct(recovery)}, target success ${pct(targetSuccess)}, target pass@${o.k} ${pct(targetPassAtK)}`;
  return {
    knownSuccess, valueCopy, recovery, targetSuccess, targetPassAtK, k: o.k, passed: fails.length === 0,
    line: fails.length ? `gate FAILED: ${fails.join('; ')} (${numbers})` : `gate passed: ${numbers}`,
  };
}

/** The preface of a practice task: its bare call and the true "we need" reply. */
function prefaceOf(t: ServiceTask) {
  return [{ action: bareCall(t), observation: needReply(t.company, t.request, t.requires!) }];
}

const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
