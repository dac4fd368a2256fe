// The page's run settings: the URL query -> the form -> Settings (protocol.ts), and the
// wasm backend's "CPU threads" field. main.ts calls these; the form's ids are in index.html.
import { defaultThreads } from '../../src/backend/platform.ts';
import { presetConfig } from '../../src/model/gpt.ts';
import { checkField, flagName } from '../../src/train/spec.ts';
import { DEFAULT_SETTINGS, type Settings } from './protocol.ts';

export const $ = <E extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as E;
export const query = new URLSearchParams(location.search);

// ---------------------------------------------------------------------------------------
// settings: URL query → form → Settings
// ---------------------------------------------------------------------------------------

/** The number inputs: spec field → the form's input id. */
const NUMBER_INPUTS = {
  steps: 'steps', lr: 'lr', batchSize: 'batch', seqLen: 'seq', vocabSize: 'vocab', syntheticStories: 'stories',
  sampleEvery: 'sampleEvery', sampleTokens: 'sampleTokens', evalEvery: 'evalEvery',
} as const satisfies Partial<Record<keyof Settings, string>>;
type NumberField = keyof typeof NUMBER_INPUTS;
/** Tokens the prompt box generates (?genTokens=N: tests on a slow GPU ask for fewer). */
export const GEN_TOKENS = Number(query.get('genTokens') ?? 64);

export function initForm(): void {
  const s: Settings = { ...DEFAULT_SETTINGS };
  for (const k of Object.keys(NUMBER_INPUTS) as NumberField[]) if (query.has(k)) s[k] = Number(query.get(k));
  if (query.has('preset')) s.preset = query.get('preset')!;
  if (query.has('optimizer')) s.optimizer = query.get('optimizer') as Settings['optimizer'];
  if (query.has('qkNorm')) s.qkNorm = query.get('qkNorm') !== '0' && query.get('qkNorm') !== 'false';
  if (query.has('seed')) s.seed = Number(query.get('seed'));
  setForm(s);
}

/**
 * The wasm backend's threads (the "CPU threads" field; ?threads=N sets it). Not part of the run
 * spec: threads change the speed, never the numbers. Its first value is the URL's, else the
 * CLI's default, min(cores, 8) (src/backend/platform.ts), when the page is cross-origin
 * isolated; without isolation there are no helper threads (no shared memory): 1.
 */
export function initThreads(): void {
  const field = $<HTMLInputElement>('threads');
  field.value = query.get('threads') ?? String(crossOriginIsolated ? defaultThreads(navigator.hardwareConcurrency) : 1);
  field.disabled = true; // until the worker says the wasm backend runs
}

/** A thread count as typed, checked as the CLI checks MINICHAT_THREADS (a whole number ≥ 1). */
export function parseThreads(raw: string): number {
  const n = /^\s*\+?\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!(Number.isSafeInteger(n) && n >= 1)) throw new Error(`threads must be a positive integer, got "${raw}"`);
  return n;
}

/** The threads field; undefined when it is off (the backend is not wasm). */
export function readThreads(): number | undefined {
  const field = $<HTMLInputElement>('threads');
  return field.disabled ? undefined : parseThreads(field.value);
}

/** The seed is not in the form: it comes from the URL query or a loaded checkpoint. */
let seed = DEFAULT_SETTINGS.seed;

export function setForm(s: Settings): void {
  for (const [k, id] of Object.entries(NUMBER_INPUTS) as [NumberField, string][]) $<HTMLInputElement>(id).value = String(s[k]);
  $<HTMLSelectElement>('preset').value = s.preset;
  $<HTMLSelectElement>('optimizer').value = s.optimizer;
  // undefined = the preset's choice: show what that is
  $<HTMLInputElement>('qkNorm').checked = s.qkNorm ?? presetConfig(s.preset).qkNorm;
  seed = s.seed;
}

/** The form as Settings; throws with the spec's message (naming the field) when a value is wrong. */
export function readForm(): Settings {
  const s: Settings = {
    preset: $<HTMLSelectElement>('preset').value,
    optimizer: $<HTMLSelectElement>('optimizer').value as Settings['optimizer'],
    qkNorm: $<HTMLInputElement>('qkNorm').checked,
    seed,
  } as Settings;
  for (const [k, id] of Object.entries(NUMBER_INPUTS) as [NumberField, string][]) {
    const raw = $<HTMLInputElement>(id).value;
    s[k] = raw.trim() === '' ? NaN : Number(raw);
    const msg = checkField(k, s[k]);
    if (msg) throw new Error(`${flagName(k).slice(2)} ${msg}`);
  }
  return s;
}

