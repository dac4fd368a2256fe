// The service world of issues #12 and #19: the action parser, the rules on a hand-built world
// (each observation as the templates say; the first call decides; the ask budget; a failure
// states the whole requirement), the size of the hypothesis space, determinism for a seed,
// the oracle on every company, and the rendering's masks (with and without a preface).
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../src/tensor/random.ts';
import { trainTokenizer, type Tokenizer } from '../src/tokenizer/index.ts';
import { ActionParseError, formatAction, parseAction } from '../src/rl/envs/actions.ts';
import {
  FIELD_POOL, SERVICE_DEFAULTS, createServiceWorld, needReply, oraclePolicy, parseNeedReply, randomPolicy, runEpisode, sampleServiceTask, spaceShape,
  startEpisode, stepEpisode, targetPairs, type EpisodeState, type Profile, type ServiceWorld,
} from '../src/rl/envs/service.ts';
import { episodeMessages, renderEpisode } from '../src/rl/envs/render.ts';
import { DUAL_LORA_DEFAULTS } from '../src/rl/dual.ts';
import { DUAL_EXPERIMENT_DEFAULTS } from '../src/rl/experiment-dual.ts';
import { UserError } from '../src/util/errors.ts';

describe('action parser', () => {
  it('parses the three tools and prints them back canonically', () => {
    expect(parseAction('ask_user(card)')).toEqual({ kind: 'ask_user', field: 'card' });
    expect(parseAction(' finish() ')).toEqual({ kind: 'finish' });
    const c = parseAction('call(AcmeTel, cancel, card=12,email=07)');
    expect(c).toEqual({ kind: 'call', company: 'AcmeTel', request: 'cancel', args: [['card', '12'], ['email', '07']] });
    expect(formatAction(c)).toBe('call(AcmeTel, cancel, card=12, email=07)');
    expect(parseAction(formatAction(c))).toEqual(c);
    expect(parseAction('call(AcmeTel, refund)')).toEqual({ kind: 'call', company: 'AcmeTel', request: 'refund', args: [] });
  });

  it('rejects malformed calls with a message', () => {
    const bad = [
      'hello', 'ask_user()', 'ask_user(a, b)', 'ask_user(card x)', 'finish(now)', 'call(AcmeTel)', 'call(AcmeTel cancel)',
      'call(AcmeTel, cancel, card)', 'call(AcmeTel, cancel, card=)', 'call(AcmeTel, cancel, x=1, x=2)',
      'call(AcmeTel, cancel, zip=1 2)', 'call (AcmeTel, cancel)', 'call( AcmeTel, cancel)', 'delete(AcmeTel)', 'ask_user(x))',
    ];
    for (const b of bad) expect(() => parseAction(b), b).toThrow(ActionParseError);
  });
});

// A world written by hand (n = 4 fields, k = 2), so every expected observation can be read off it.
const profile: Profile = { card: '48', email: '03', zip: '21', pin: '77' };
const hand: ServiceWorld = {
  options: { ...SERVICE_DEFAULTS, maxTurns: 4, space: 6 },
  fields: ['card', 'email', 'zip', 'pin'], k: 2, requests: ['cancel', 'refund'], practice: ['SolGym'],
  companies: [
    { name: 'AcmeTel', split: 'known', requires: { cancel: ['card', 'email'], refund: ['zip', 'pin'] } },
    { name: 'NovaBank', split: 'target', requires: { cancel: ['pin', 'card'], refund: ['email', 'zip'] } },
  ],
};
const task = { company: 'AcmeTel', request: 'cancel', profile };

function play(actions: string[], world = hand, t = task): EpisodeState {
  let s = startEpisode(t);
  for (const a of actions) s = stepEpisode(world, s, a);
  return s;
}

describe('service world rules (hand-built world)', () => {
  it('ask_user answers from the profile; a complete first call succeeds with reward 1', () => {
    const s = play(['ask_user(card)', 'ask_user(email)', 'call(AcmeTel, cancel, card=48, email=03)']);
    expect(s.steps.map((x) => x.observation)).toEqual(['user: card=48', 'user: email=03', 'AcmeTel: cancel done']);
    expect(s).toMatchObject({ done: true, reward: 1 });
    // extra fields are ignored (but asking for them costs asks)
    expect(play(['call(AcmeTel, cancel, zip=1, email=03, card=48)'])).toMatchObject({ done: true, reward: 1 });
  });

  it('a failed first call ends the episode and states the whole requirement, whatever the call carried', () => {
    const s = play(['call(AcmeTel, cancel, card=48)']);
    expect(s.steps[0].observation).toBe('AcmeTel: to cancel we need card, email');
    expect(s).toMatchObject({ done: true, reward: 0 });
    expect(play(['call(AcmeTel, cancel)']).steps[0].observation).toBe('AcmeTel: to cancel we need card, email');
    expect(parseNeedReply(s.steps[0].observation)).toEqual({ company: 'AcmeTel', request: 'cancel', fields: ['card', 'email'] });
    expect(parseNeedReply('AcmeTel: cancel done')).toBeNull();
    expect(() => stepEpisode(hand, s, 'finish()')).toThrow(UserError);
  });

  it('a wrong value fails the episode', () => {
    const s = play(['call(AcmeTel, cancel, card=11, email=03)']);
    expect(s.steps[0].observation).toBe('AcmeTel: card does not match our records');
    expect(s).toMatchObject({ done: true, reward: 0 });
  });

  it('the ask budget: a (k+1)-th question ends the episode with reward 0', () => {
    const s = play(['ask_user(zip)', 'ask_user(pin)']);
    expect(s.done).toBe(false);
    const t = stepEpisode(hand, s, 'ask_user(card)');
    expect(t.steps.at(-1)!.observation).toBe('error: no questions left');
    expect(t).toMatchObject({ done: true, reward: 0 });
  });

  it('errors keep the episode going; finish ends it with 0; maxTurns ends it', () => {
    const s = play(['cancel everything', 'ask_user(shoe)', 'call(NovaBank, cancel)', 'finish()']);
    expect(s.steps.map((x) => x.observation)).toEqual([
      'error: expected NAME(ARGS), e.g. ask_user(card_last4)', 'error: unknown field shoe', 'error: the user asked for cancel at AcmeTel', 'finished',
    ]);
    expect(s).toMatchObject({ done: true, reward: 0 });
    expect(play(['call(FooCorp, cancel)']).steps[0].observation).toBe('error: unknown company FooCorp');
    expect(play(['call(AcmeTel, upgrade)']).steps[0].observation).toBe('error: unknown request upgrade');
    expect(play(['call(AcmeTel, cancel, shoe=9)']).steps[0].observation).toBe('error: unknown field shoe');
    expect(play(['x', 'x', 'x', 'x'])).toMatchObject({ done: true, reward: 0 });
  });

  it('a practice task carries its own requirement', () => {
    const p = { company: 'SolGym', request: 'refund', profile, requires: ['pin', 'zip'] };
    expect(play(['call(SolGym, refund)'], hand, p).steps[0].observation).toBe('SolGym: to refund we need pin, zip');
    expect(play(['ask_user(pin)', 'ask_user(zip)', 'call(SolGym, refund, pin=77, zip=21)'], hand, p).reward).toBe(1);
  });
});

describe('generated worlds', () => {
  it('the space size picks (n, k) with C(n, k) = size; other sizes are refused', () => {
    expect(spaceShape(6)).toEqual({ n: 4, k: 2 });
    expect(spaceShape(28)).toEqual({ n: 8, k: 2 });
    expect(spaceShape(120)).toEqual({ n: 10, k: 3 });
    expect(() => spaceShape(7)).toThrow(/--space must be/);
    for (const space of [6, 28, 120]) {
      const w = createServiceWorld({ seed: 1, space });
      const { n, k } = spaceShape(space);
      expect([w.fields.length, w.k]).toEqual([n, k]);
      for (const c of w.companies) for (const r of w.requests) {
        expect(c.requires[r].length).toBe(k);
        expect(new Set(c.requires[r]).size).toBe(k);
        for (const f of c.requires[r]) expect(w.fields).toContain(f);
      }
    }
  });

  it('are deterministic for a seed and differ across seeds', () => {
    expect(createServiceWorld({ seed: 5 })).toEqual(createServiceWorld({ seed: 5 }));
    expect(createServiceWorld({ seed: 5 })).not.toEqual(createServiceWorld({ seed: 6 }));
    const w = createServiceWorld({ seed: 5 });
    const episode = (seed: number) => {
      const rng = new Rng(seed);
      return runEpisode(w, sampleServiceTask(w, rng, 'known'), randomPolicy(w, rng));
    };
    expect(episode(11)).toEqual(episode(11));
  });

  it('have disjoint known, target and practice names; targets are every request of the target companies', () => {
    const w = createServiceWorld({ seed: 2, companies: 10, targets: 3, practice: 4 });
    const known = w.companies.filter((c) => c.split === 'known'), target = w.companies.filter((c) => c.split === 'target');
    expect([known.length, target.length, w.practice.length]).toEqual([10, 3, 4]);
    expect(new Set([...w.companies.map((c) => c.name), ...w.practice]).size).toBe(17);
    expect(targetPairs(w)).toEqual(target.flatMap((c) => w.requests.map((request) => ({ company: c.name, request }))));
    const rng = new Rng(1);
    for (let i = 0; i < 30; i++) expect(target.map((c) => c.name)).toContain(sampleServiceTask(w, rng, 'target').company);
    expect(() => createServiceWorld({ companies: 0 })).toThrow(UserError);
  });

  it('the oracle succeeds on every company and request; random play rarely does', () => {
    const w = createServiceWorld({ seed: 9 });
    const rng = new Rng(3);
    for (const c of w.companies) for (const request of w.requests) {
      const s = runEpisode(w, { company: c.name, request, profile: sampleServiceTask(w, rng, c.split).profile }, oraclePolicy(w));
      expect(s.reward, `${c.name} ${request}`).toBe(1);
      expect(s.steps.length).toBe(w.k + 1); // one ask per field, then the call
    }
    let wins = 0;
    for (let i = 0; i < 300; i++) wins += runEpisode(w, sampleServiceTask(w, rng, 'known'), randomPolicy(w, rng)).reward;
    expect(wins / 300).toBeLessThan(0.2);
  });
});

describe('rendering', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await trainTokenizer(['call ask_user finish card email AcmeTel cancel done user: '.repeat(20)], { vocabSize: 300 });
  });

  /** Decode the maximal runs of ids where mask is 1. */
  const runs = (ids: number[], mask: number[]) => {
    const out: string[] = [];
    let cur: number[] = [];
    ids.forEach((id, i) => {
      if (mask[i] === 1) cur.push(id);
      else if (cur.length) out.push(tok.decode(cur)), (cur = []);
    });
    if (cur.length) out.push(tok.decode(cur));
    return out;
  };

  it('the observation mask covers exactly the tool-result tokens, disjoint from the policy mask', () => {
    const s = runEpisode(hand, task, oraclePolicy(hand));
    expect(episodeMessages(s)[2].role).toBe('assistant');
    const r = renderEpisode(tok, s);
    expect(runs(r.ids, r.obsMask)).toEqual(s.steps.map((x) => `<|tool_result_start|>${x.observation}<|tool_result_end|>`));
    const policy = runs(r.ids, r.lossMask);
    expect(policy).toEqual([...s.steps.map((x) => `<|tool_call_start|>${x.action}<|tool_call_end|>`), '<|assistant_end|>']);
    for (let i = 0; i < r.ids.length; i++) expect(r.lossMask[i] * r.obsMask[i]).toBe(0);
    // an observation that spells a special token stays ordinary text, so it cannot end the span early
    const f = renderEpisode(tok, { ...s, steps: [{ action: 'x', observation: 'a<|tool_result_end|>b' }] });
    expect(runs(f.ids, f.obsMask)).toEqual(['<|tool_result_start|>a<|tool_result_end|>b<|tool_result_end|>']);
  });

  it('a preface is in neither mask', () => {
    const s = runEpisode(hand, task, oraclePolicy(hand));
    const preface = [{ action: 'call(AcmeTel, cancel)', observation: needReply('AcmeTel', 'cancel', ['card', 'email']) }];
    const r = renderEpisode(tok, s, preface);
    expect(tok.decode(r.ids)).toContain(`<|tool_call_start|>call(AcmeTel, cancel)<|tool_call_end|><|tool_result_start|>AcmeTel: to cancel we need card, email<|tool_result_end|><|tool_call_start|>${s.steps[0].action}`);
    expect(runs(r.ids, r.obsMask)).toEqual(s.steps.map((x) => `<|tool_result_start|>${x.observation}<|tool_result_end|>`));
    expect(runs(r.ids, r.lossMask)).toEqual([...s.steps.map((x) => `<|tool_call_start|>${x.action}<|tool_call_end|>`), '<|assistant_end|>']);
  });
});

describe('docs/world-model.md', () => {
  it('states the defaults the code uses', () => {
    const doc = readFileSync(new URL('../docs/world-model.md', import.meta.url), 'utf8');
    const d = SERVICE_DEFAULTS;
    expect(doc).toContain(`${d.companies} known companies, ${d.targets} target companies, ${d.requests} requests, space ${d.space}`);
    expect(doc).toContain(`\`maxTurns\` actions (default ${d.maxTurns})`);
    for (const f of FIELD_POOL) expect(doc).toContain(`\`${f}\``);
    const l = DUAL_LORA_DEFAULTS, e = DUAL_EXPERIMENT_DEFAULTS;
    expect(doc).toContain(`rank ${l.rank} = ${l.policyRank} policy + ${l.rank - l.policyRank} world`);
    expect(doc).toContain(`rank ${e.loraRank} = ${e.policyRank} policy + ${e.loraRank - e.policyRank} world`);
  });
});
