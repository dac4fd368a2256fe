// A tool-use world for world-model learning (issues #12, #19): service requests at companies.
//
// The agent helps a user get something done at a company (cancel, refund, ...) by calling
// tools (the language is in actions.ts):
//
//   ask_user(field)                           → "user: field=07"                     (at most k asks)
//   call(Company, request, field=value, ...)  → "Company: request done"              (reward 1)
//                                               "Company: to request we need a, b"   (fails)
//                                               "Company: a does not match our records" (fails)
//   finish()                                  → "finished"                           (reward 0)
//   anything malformed or out of place        → "error: ..."                         (try again)
//
// Each (company, request) has hidden, fixed requirements: exactly k of the world's n fields.
// The pair (n, k) is the hypothesis space: C(n, k) possible requirement sets (6 = C(4,2),
// 28 = C(8,2), 120 = C(10,3)); `space` picks it. The user's profile holds a two-digit value
// for every field.
//
// The rules that make the experiment of issue #19 measure what it claims:
//   - the FIRST call decides: success ends with reward 1, a failed call ends with reward 0, so
//     success means the agent knew the requirement before acting;
//   - a budget of k asks: a (k+1)-th ask ends the episode with reward 0, so "ask for every
//     field" is no shortcut; the agent must know WHICH fields;
//   - a failed call for missing fields states the whole requirement ("to cancel we need a, b",
//     in the company's order, whatever the call carried): everything there is to learn about
//     a pair is in one failure reply, which is what a world model can learn to predict.
//
// Companies come in two disjoint sets: `known` companies (the warm start is trained on them)
// and `target` companies (never seen before RL: what is learned about them can only come from
// their failure replies). A third set of names, the `practice` companies, never appears in
// RL: the warm start's recovery demonstrations use them, each time with fresh random
// requirements, so the only way to get those right is to read the reply in the context.
// Every observation is a deterministic function of the world, the task and the action, from
// fixed templates. Everything is generated from one seed. (Pure: no Node imports.)
import { Rng } from '../../tensor/random.ts';
import { check, UserError } from '../../util/errors.ts';
import { ActionParseError, formatAction, parseAction, type Action } from './actions.ts';

// ---- the world ------------------------------------------------------------------------------

/** Every field a company can ask for: single words, so each is one token of the world's tokenizer. */
export const FIELD_POOL = ['card', 'email', 'birthday', 'order', 'phone', 'zip', 'member', 'pin', 'address', 'account'] as const;
export type Field = string;

/** The requests a user can make (single words, as the fields). */
export const REQUEST_POOL = ['cancel', 'refund', 'upgrade', 'pause', 'close'] as const;
export type Request = string;

// Company names are a stem and a suffix: 26 × 8 = 208 possible, shuffled by the seed
const STEMS = ['Acme', 'Bolt', 'Crest', 'Dyna', 'Echo', 'Flux', 'Gala', 'Helio', 'Iris', 'Juno', 'Kite', 'Lumen', 'Mesa',
  'Nova', 'Orbit', 'Pixel', 'Quill', 'Rivet', 'Sol', 'Terra', 'Umber', 'Vale', 'Wren', 'Xeno', 'Yarrow', 'Zephyr'];
const SUFFIXES = ['Tel', 'Bank', 'Mart', 'Air', 'Net', 'Gym', 'Power', 'Box'];

export type Split = 'known' | 'target';

export interface Company {
  name: string;
  split: Split;
  /** The k fields each request needs, in the order the company lists them. */
  requires: Record<Request, Field[]>;
}

export type Profile = Record<Field, string>;

export interface ServiceWorldOptions {
  /** Seed for companies, fields and requirements. */
  seed?: number;
  /** Companies the warm start knows. */
  companies?: number;
  /** Companies never seen before RL (their pairs are the targets). */
  targets?: number;
  /** Names for the warm start's recovery demonstrations (never in RL). */
  practice?: number;
  /** Requests per company (the first ones of REQUEST_POOL). */
  requests?: number;
  /** Size of the hypothesis space C(n, k): 6, 10, 15, 20, 21, 28, 35, 36, 45, 56, 70, 84, 120, ... */
  space?: number;
  /** Actions before the episode ends with reward 0 (errors included). */
  maxTurns?: number;
}

export const SERVICE_DEFAULTS: Required<ServiceWorldOptions> = {
  seed: 0, companies: 8, targets: 2, practice: 8, requests: 3, space: 28, maxTurns: 6,
};

export interface ServiceWorld {
  options: Required<ServiceWorldOptions>;
  fields: Field[]; // the n fields of this world
  k: number; // fields per requirement (and the ask budget)
  requests: Request[];
  companies: Company[]; // known then target
  practice: string[]; // names of the practice companies
}

const choose = (n: number, k: number): number => (k === 0 ? 1 : (choose(n - 1, k - 1) * n) / k);

/** (n, k) with C(n, k) = space: the fewest fields, then the smallest k >= 2 (k <= n/2). */
export function spaceShape(space: number): { n: number; k: number } {
  for (let n = 4; n <= FIELD_POOL.length; n++) for (let k = 2; 2 * k <= n; k++) if (Math.round(choose(n, k)) === space) return { n, k };
  const ok: number[] = [];
  for (let n = 4; n <= FIELD_POOL.length; n++) for (let k = 2; 2 * k <= n; k++) ok.push(Math.round(choose(n, k)));
  throw new UserError(`--space must be a number of requirement sets C(n, k) with 4 <= n <= ${FIELD_POOL.length}, 2 <= k <= n/2: one of ${[...new Set(ok)].sort((a, b) => a - b).join(', ')}; got ${space}`);
}

export function createServiceWorld(opts: ServiceWorldOptions = {}): ServiceWorld {
  const o = { ...SERVICE_DEFAULTS, ...opts };
  const names = STEMS.length * SUFFIXES.length;
  const all = o.companies + o.targets + o.practice;
  if (!(Number.isInteger(o.companies) && o.companies >= 1)) throw new UserError(`--companies must be an integer >= 1, got ${o.companies}`);
  if (!(Number.isInteger(o.targets) && o.targets >= 1)) throw new UserError(`--targets must be an integer >= 1, got ${o.targets}`);
  if (all > names) throw new UserError(`service world: at most ${names} companies in all (known + targets + practice), got ${all}`);
  if (!(Number.isInteger(o.requests) && o.requests >= 1 && o.requests <= REQUEST_POOL.length)) throw new UserError(`--requests must be 1..${REQUEST_POOL.length}, got ${o.requests}`);
  const { n, k } = spaceShape(o.space);
  check(o.maxTurns >= k + 1, `service world: maxTurns must leave room to ask every field and call (>= ${k + 1})`);
  const rng = new Rng(o.seed);
  const fields = rng.shuffle([...FIELD_POOL]).slice(0, n);
  const requests = REQUEST_POOL.slice(0, o.requests);
  // a shuffled list of distinct names: known, then targets, then practice, never shared
  const pool = rng.shuffle(STEMS.flatMap((s) => SUFFIXES.map((x) => s + x))).slice(0, all);
  const companies = pool.slice(0, o.companies + o.targets).map((name, i): Company => {
    const requires: Record<Request, Field[]> = {};
    for (const r of requests) requires[r] = drawRequirement(rng, fields, k);
    return { name, split: i < o.companies ? 'known' : 'target', requires };
  });
  return { options: o, fields, k, requests, companies, practice: pool.slice(o.companies + o.targets) };
}

/** k distinct fields, uniformly among the C(n, k) sets, in a random order (the company's). */
export function drawRequirement(rng: Rng, fields: Field[], k: number): Field[] {
  return rng.shuffle([...fields]).slice(0, k);
}

/** A user with a two-digit value ("07") for every field: one token to copy. */
export function makeProfile(rng: Rng, fields: readonly Field[] = FIELD_POOL): Profile {
  return Object.fromEntries(fields.map((f) => [f, String(rng.int(100)).padStart(2, '0')]));
}

export const companiesOf = (world: ServiceWorld, split: Split): Company[] => world.companies.filter((c) => c.split === split);

/** The target pairs: (company, request) of every target company. */
export function targetPairs(world: ServiceWorld): { company: string; request: Request }[] {
  return companiesOf(world, 'target').flatMap((c) => world.requests.map((request) => ({ company: c.name, request })));
}

// ---- episodes -------------------------------------------------------------------------------

/** What the user wants: a request at a company, with the user's details behind it. */
export interface ServiceTask {
  company: string;
  request: Request;
  profile: Profile;
  /** A practice company's requirement for this episode (the warm start's recovery demonstrations). */
  requires?: Field[];
}

export function sampleServiceTask(world: ServiceWorld, rng: Rng, split: Split): ServiceTask {
  const pool = companiesOf(world, split);
  check(pool.length > 0, `service world: no '${split}' companies`);
  const company = pool[rng.int(pool.length)].name;
  const request = world.requests[rng.int(world.requests.length)];
  return { company, request, profile: makeProfile(rng, world.fields) };
}

export interface Step {
  action: string;
  observation: string;
}

export interface EpisodeState {
  task: ServiceTask;
  steps: Step[];
  done: boolean;
  reward: number;
}

/** The tools, as the system prompt states them (fixed text, short: every token is compute). */
export function serviceSystemPrompt(): string {
  return 'Tools: call, ask_user, finish.';
}

/** The user's opening message (fixed template). */
export function serviceUserMessage(task: Pick<ServiceTask, 'company' | 'request'>): string {
  return `Request for ${task.company}: ${task.request}.`;
}

export function startEpisode(task: ServiceTask): EpisodeState {
  return { task, steps: [], done: false, reward: 0 };
}

/** The reply to a call of (company, request) that lacks fields: the whole requirement. */
export function needReply(company: string, request: Request, requires: Field[]): string {
  return `${company}: to ${request} we need ${requires.join(', ')}`;
}

/** The fields a "to X we need a, b" reply states, or null for any other text. */
export function parseNeedReply(text: string): { company: string; request: string; fields: string[] } | null {
  const m = /^([A-Za-z]+): to ([a-z]+) we need ([a-z]+(?:, [a-z]+)*)$/.exec(text);
  return m ? { company: m[1], request: m[2], fields: m[3].split(', ') } : null;
}

/**
 * The world's answer to one action, a pure function of (world, task, what was done so far,
 * action text). A task's own `requires` stands for a practice company's requirement (the warm
 * start's recovery demonstrations draw fresh ones each episode).
 */
export function observe(world: ServiceWorld, task: ServiceTask, steps: Step[], actionText: string): { observation: string; done: boolean; reward: number } {
  const requires = task.requires;
  let a: Action;
  try {
    a = parseAction(actionText);
  } catch (e) {
    if (e instanceof ActionParseError) return { observation: `error: ${e.message}`, done: false, reward: 0 };
    throw e;
  }
  if (a.kind === 'finish') return { observation: 'finished', done: true, reward: 0 };
  if (a.kind === 'ask_user') {
    if (!world.fields.includes(a.field)) return { observation: `error: unknown field ${a.field}`, done: false, reward: 0 };
    if (asksSoFar(steps) >= world.k) return { observation: `error: no questions left`, done: true, reward: 0 };
    return { observation: `user: ${a.field}=${task.profile[a.field]}`, done: false, reward: 0 };
  }
  const company = world.companies.find((c) => c.name === a.company);
  const isPractice = requires !== undefined && a.company === task.company;
  if (!company && !isPractice) return { observation: `error: unknown company ${a.company}`, done: false, reward: 0 };
  if (!world.requests.includes(a.request)) return { observation: `error: unknown request ${a.request}`, done: false, reward: 0 };
  if (a.company !== task.company || a.request !== task.request) {
    return { observation: `error: the user asked for ${task.request} at ${task.company}`, done: false, reward: 0 };
  }
  for (const [f] of a.args) if (!world.fields.includes(f)) return { observation: `error: unknown field ${f}`, done: false, reward: 0 };
  const given = new Map(a.args);
  const required = requires ?? company!.requires[task.request];
  if (required.some((f) => !given.has(f))) return { observation: needReply(task.company, task.request, required), done: true, reward: 0 };
  const wrong = required.find((f) => given.get(f) !== task.profile[f]);
  if (wrong) return { observation: `${task.company}: ${wrong} does not match our records`, done: true, reward: 0 };
  return { observation: `${task.company}: ${task.request} done`, done: true, reward: 1 };
}

/** ask_user actions answered so far (the budget counts them). */
function asksSoFar(steps: Step[]): number {
  return steps.filter((s) => s.observation.startsWith('user: ')).length;
}

/** Apply one action; past maxTurns actions the episode ends with reward 0. */
export function stepEpisode(world: ServiceWorld, state: EpisodeState, actionText: string): EpisodeState {
  check(!state.done, 'service world: the episode is over');
  const r = observe(world, state.task, state.steps, actionText);
  const steps = [...state.steps, { action: actionText, observation: r.observation }];
  const done = r.done || steps.length >= world.options.maxTurns;
  return { task: state.task, steps, done, reward: r.reward };
}

// ---- reference policies ---------------------------------------------------------------------

/** What a policy sees: the task's public part (no profile) and the steps so far. */
export interface AgentView {
  company: string;
  request: Request;
  steps: Step[];
}

export type ServicePolicy = (view: AgentView) => string;

/** The fields the user has told so far, read back from the observations' fixed template. */
export function knownValues(steps: Step[]): Map<string, string> {
  const known = new Map<string, string>();
  for (const s of steps) {
    const m = /^user: ([a-z_0-9]+)=(.+)$/.exec(s.observation);
    if (m) known.set(m[1], m[2]);
  }
  return known;
}

/** Asks for each of `required` once, then calls with them in that order. */
export function scriptedPolicy(required: Field[]): ServicePolicy {
  return (view) => {
    const known = knownValues(view.steps);
    const next = required.find((f) => !known.has(f));
    if (next) return formatAction({ kind: 'ask_user', field: next });
    return formatAction({ kind: 'call', company: view.company, request: view.request, args: required.map((f) => [f, known.get(f)!]) });
  };
}

/** The requirement of a task: its own (practice) or its company's. */
export function requirementOf(world: ServiceWorld, task: Pick<ServiceTask, 'company' | 'request' | 'requires'>): Field[] {
  if (task.requires) return task.requires;
  const c = world.companies.find((x) => x.name === task.company);
  check(c !== undefined, `service world: unknown company ${task.company}`);
  return c.requires[task.request];
}

/** Knows every requirement: asks for each needed field once, then calls. */
export function oraclePolicy(world: ServiceWorld): ServicePolicy {
  return (view) => scriptedPolicy(requirementOf(world, view))(view);
}

/** Random but well-formed: ask a random field, call with what it knows, or finish. */
export function randomPolicy(world: ServiceWorld, rng: Rng): ServicePolicy {
  return (view) => {
    const u = rng.uniform();
    if (u < 0.55) return formatAction({ kind: 'ask_user', field: world.fields[rng.int(world.fields.length)] });
    if (u < 0.95) return formatAction({ kind: 'call', company: view.company, request: view.request, args: [...knownValues(view.steps)] });
    return formatAction({ kind: 'finish' });
  };
}

/** Play one episode of `policy` on `task` to the end. */
export function runEpisode(world: ServiceWorld, task: ServiceTask, policy: ServicePolicy): EpisodeState {
  let state = startEpisode(task);
  while (!state.done) state = stepEpisode(world, state, policy({ company: task.company, request: task.request, steps: state.steps }));
  return state;
}

// ---- helpers --------------------------------------------------------------------------------

