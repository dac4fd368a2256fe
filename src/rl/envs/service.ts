// A tool-use world for world-model learning (issue #12): service requests at companies.
//
// The agent helps a user get something done at a company (cancel, change_plan, refund, ...)
// by calling tools (the language is in actions.ts):
//
//   ask_user(field)                              → "user: field=value"
//   call(Company, request, field=value, ...)     → "Company: request done"            (reward 1)
//                                                  "Company: to request we need a, b"   (fails)
//                                                  "Company: field does not match our records" (fails)
//   finish()                                     → "finished"                           (reward 0)
//   anything malformed or out of place           → "error: ..."                         (try again)
//
// Each (company, request) has hidden, fixed requirements: 1–3 fields of the user's details.
// The user's profile holds every field's value. An episode ends with reward 1 on a call that
// carries every required field with the user's value; with reward 0 on a failed call, on
// finish(), or after maxTurns actions.
//
// Why it is built this way. Every observation is a deterministic function of the world, the
// episode's task and the action, written with fixed templates, so a world model (the second
// LoRA group of the dual adapter) can learn to predict them exactly; a failed call says
// exactly which fields were missing, so there is something to learn about each company. The
// companies come in two disjoint sets, training and held-out (different names, requirements
// drawn independently), so one can ask whether what was learned transfers to companies never
// seen. A scripted oracle (knows the requirements) and a random policy bracket what a learned
// policy should reach. Everything is generated from one seed. (Pure: no Node imports.)
import { Rng } from '../../tensor/random.ts';
import { check } from '../../util/errors.ts';
import { ActionParseError, formatAction, parseAction, type Action } from './actions.ts';

// ---- the world ------------------------------------------------------------------------------

/** Every field a company can ask for, and how a user's value for it is drawn. */
export const FIELDS = ['card_last4', 'account_email', 'date_of_birth', 'order_id', 'phone_number', 'zip_code', 'member_id'] as const;
export type Field = (typeof FIELDS)[number];

export const REQUESTS = ['cancel', 'change_plan', 'refund', 'update_address', 'close_account'] as const;
export type Request = (typeof REQUESTS)[number];

// Company names are a stem and a suffix: 26 × 8 = 208 possible, shuffled by the seed
const STEMS = ['Acme', 'Bolt', 'Crest', 'Dyna', 'Echo', 'Flux', 'Gala', 'Helio', 'Iris', 'Juno', 'Kite', 'Lumen', 'Mesa',
  'Nova', 'Orbit', 'Pixel', 'Quill', 'Rivet', 'Sol', 'Terra', 'Umber', 'Vale', 'Wren', 'Xeno', 'Yarrow', 'Zephyr'];
const SUFFIXES = ['Tel', 'Bank', 'Mart', 'Air', 'Net', 'Gym', 'Power', 'Box'];
const FIRST_NAMES = ['ana', 'ben', 'cleo', 'dev', 'eli', 'fay', 'gus', 'hana', 'ivo', 'jin', 'kai', 'lea', 'max', 'noor'];

export interface Company {
  name: string;
  split: 'train' | 'test';
  /** The fields each request needs, in the order the company lists them. */
  requires: Record<Request, Field[]>;
}

export type Profile = Record<Field, string>;

export interface ServiceWorldOptions {
  /** Seed for companies and requirements. */
  seed?: number;
  /** Companies in the training set. */
  trainCompanies?: number;
  /** Companies in the held-out set (disjoint from the training set). */
  testCompanies?: number;
  /** Fewest and most required fields per (company, request). */
  minFields?: number;
  maxFields?: number;
  /** Actions before the episode ends with reward 0. */
  maxTurns?: number;
  /**
   * Every profile value is two digits ("07") instead of a realistic one ("ana7@mail.com"):
   * one token to copy, so a tiny model's copying is not what limits it (the dual-LoRA
   * experiment uses this; what it measures is learning the companies' requirements).
   */
  shortValues?: boolean;
}

export const SERVICE_DEFAULTS: Required<ServiceWorldOptions> = {
  seed: 0,
  trainCompanies: 8,
  testCompanies: 4,
  minFields: 1,
  maxFields: 3,
  maxTurns: 8,
  shortValues: false,
};

export interface ServiceWorld {
  options: Required<ServiceWorldOptions>;
  companies: Company[];
}

export function createServiceWorld(opts: ServiceWorldOptions = {}): ServiceWorld {
  const o = { ...SERVICE_DEFAULTS, ...opts };
  const n = o.trainCompanies + o.testCompanies;
  check(o.trainCompanies >= 1 && o.testCompanies >= 0 && n <= STEMS.length * SUFFIXES.length, `service world: need 1..${STEMS.length * SUFFIXES.length} companies in all, got ${n}`);
  check(o.minFields >= 1 && o.minFields <= o.maxFields && o.maxFields <= FIELDS.length, `service world: need 1 <= minFields <= maxFields <= ${FIELDS.length}`);
  check(o.maxTurns >= o.maxFields + 1, `service world: maxTurns must leave room to ask every field and call (>= ${o.maxFields + 1})`);
  const rng = new Rng(o.seed);
  // a shuffled list of distinct names: the first ones train, the rest are held out, so the
  // two sets can never share a name
  const names = shuffle(rng, STEMS.flatMap((s) => SUFFIXES.map((x) => s + x))).slice(0, n);
  const companies = names.map((name, i): Company => {
    const requires = {} as Record<Request, Field[]>;
    for (const r of REQUESTS) {
      const k = o.minFields + rng.int(o.maxFields - o.minFields + 1);
      requires[r] = shuffle(rng, [...FIELDS]).slice(0, k);
    }
    return { name, split: i < o.trainCompanies ? 'train' : 'test', requires };
  });
  return { options: o, companies };
}

/** A user with a value for every field, drawn from `rng` (two digits each when `short`). */
export function makeProfile(rng: Rng, short = false): Profile {
  if (short) return Object.fromEntries(FIELDS.map((f) => [f, String(rng.int(100)).padStart(2, '0')])) as Profile;
  const digits = (k: number) => Array.from({ length: k }, () => rng.int(10)).join('');
  const two = (v: number) => String(v).padStart(2, '0');
  return {
    card_last4: digits(4),
    account_email: `${FIRST_NAMES[rng.int(FIRST_NAMES.length)]}${rng.int(100)}@mail.com`,
    date_of_birth: `${1950 + rng.int(56)}-${two(1 + rng.int(12))}-${two(1 + rng.int(28))}`,
    order_id: `ORD-${digits(6)}`,
    phone_number: `555${digits(7)}`,
    zip_code: digits(5),
    member_id: `M${digits(8)}`,
  };
}

// ---- episodes -------------------------------------------------------------------------------

/** What the user wants: a request at a company, with the user's details behind it. */
export interface ServiceTask {
  company: string;
  request: Request;
  profile: Profile;
}

export function sampleServiceTask(world: ServiceWorld, rng: Rng, split: 'train' | 'test'): ServiceTask {
  const pool = world.companies.filter((c) => c.split === split);
  check(pool.length > 0, `service world: no '${split}' companies`);
  const company = pool[rng.int(pool.length)].name;
  const request = REQUESTS[rng.int(REQUESTS.length)];
  return { company, request, profile: makeProfile(rng, world.options.shortValues) };
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

/** The tools, as the system prompt states them (fixed text). */
export function serviceSystemPrompt(): string {
  return (
    'You handle service requests for a user by calling tools, one per tool call:\n' +
    'call(COMPANY, REQUEST, field=value, ...) sends the request with the fields the company needs.\n' +
    'ask_user(field) asks the user for one of their details.\n' +
    'finish() ends the conversation.\n' +
    `Fields: ${FIELDS.join(', ')}.`
  );
}

/** The user's opening message (fixed template). */
export function serviceUserMessage(task: ServiceTask): string {
  return `Request for ${task.company}: ${task.request}.`;
}

export function startEpisode(task: ServiceTask): EpisodeState {
  return { task, steps: [], done: false, reward: 0 };
}

/** The world's answer to one action: a pure function of (world, task, action text). */
export function observe(world: ServiceWorld, task: ServiceTask, actionText: string): { observation: string; done: boolean; reward: number } {
  let a: Action;
  try {
    a = parseAction(actionText);
  } catch (e) {
    if (e instanceof ActionParseError) return { observation: `error: ${e.message}`, done: false, reward: 0 };
    throw e;
  }
  if (a.kind === 'finish') return { observation: 'finished', done: true, reward: 0 };
  if (a.kind === 'ask_user') {
    if (!isField(a.field)) return { observation: `error: unknown field ${a.field}`, done: false, reward: 0 };
    return { observation: `user: ${a.field}=${task.profile[a.field]}`, done: false, reward: 0 };
  }
  const company = world.companies.find((c) => c.name === a.company);
  if (!company) return { observation: `error: unknown company ${a.company}`, done: false, reward: 0 };
  if (!isRequest(a.request)) return { observation: `error: unknown request ${a.request}`, done: false, reward: 0 };
  if (a.company !== task.company || a.request !== task.request) {
    return { observation: `error: the user asked for ${task.request} at ${task.company}`, done: false, reward: 0 };
  }
  for (const [f] of a.args) if (!isField(f)) return { observation: `error: unknown field ${f}`, done: false, reward: 0 };
  const given = new Map(a.args);
  const required = company.requires[task.request];
  const missing = required.filter((f) => !given.has(f));
  if (missing.length > 0) return { observation: `${company.name}: to ${task.request} we need ${missing.join(', ')}`, done: true, reward: 0 };
  const wrong = required.find((f) => given.get(f) !== task.profile[f]);
  if (wrong) return { observation: `${company.name}: ${wrong} does not match our records`, done: true, reward: 0 };
  return { observation: `${company.name}: ${task.request} done`, done: true, reward: 1 };
}

/** Apply one action; past maxTurns actions the episode ends with reward 0. */
export function stepEpisode(world: ServiceWorld, state: EpisodeState, actionText: string): EpisodeState {
  check(!state.done, 'service world: the episode is over');
  const r = observe(world, state.task, actionText);
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

/** Knows every requirement: asks for each needed field once, then calls. */
export function oraclePolicy(world: ServiceWorld): ServicePolicy {
  return (view) => {
    const company = world.companies.find((c) => c.name === view.company)!;
    const required = company.requires[view.request];
    const known = knownValues(view.steps);
    const next = required.find((f) => !known.has(f));
    if (next) return formatAction({ kind: 'ask_user', field: next });
    return formatAction({ kind: 'call', company: view.company, request: view.request, args: required.map((f) => [f, known.get(f)!]) });
  };
}

/** Random but well-formed: ask a random field, call with what it knows, or finish. */
export function randomPolicy(rng: Rng): ServicePolicy {
  return (view) => {
    const u = rng.uniform();
    if (u < 0.5) return formatAction({ kind: 'ask_user', field: FIELDS[rng.int(FIELDS.length)] });
    if (u < 0.85) return formatAction({ kind: 'call', company: view.company, request: view.request, args: [...knownValues(view.steps)] });
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

const isField = (f: string): f is Field => (FIELDS as readonly string[]).includes(f);
const isRequest = (r: string): r is Request => (REQUESTS as readonly string[]).includes(r);

/** Fisher–Yates on a copy. */
function shuffle<T>(rng: Rng, xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
