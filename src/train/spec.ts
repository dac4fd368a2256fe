// The run spec: every knob of a training run, in one typed object with one defaults table
// and one validation function. Everything else is a view of it:
//   - `minichat pretrain` / `speedrun` flags (src/cli/pretrain.ts) are generated from SPEC_FIELDS
//     (flag name, help, default, parser), so a default is stated exactly once, here;
//   - the page's settings (web/src/protocol.ts) are a subset of RunSpec under the same names,
//     with the same defaults;
//   - experiments (src/train/experiment.ts) start from SPEC_DEFAULTS and override a few fields;
//   - a checkpoint stores the spec it was trained with (state.json "spec"), so a resumed run,
//     or the page loading a CLI checkpoint, knows the schedule, batch shape and data.
//
// Browser-safe: no Node imports.
import { DEFAULT_SYNTHETIC_STORIES } from '../data/synthetic.ts';
import { PRESETS } from '../model/gpt.ts';
import { UserError } from '../util/errors.ts';

export interface RunSpec {
  preset: string; // model preset (PRESETS in src/model/gpt.ts)
  qkNorm?: boolean; // override the preset's QK-norm (undefined = the preset's choice)
  data: string; // 'synthetic' (built in), a .txt/.jsonl/.parquet file or directory, or a shard directory
  textField: string; // JSONL/parquet field holding the text
  maxChars: number; // read at most this many characters of data (0 = all)
  syntheticStories: number; // size of the built-in synthetic corpus
  tokenizer?: string; // an existing tokenizer directory (CLI); else one is trained on the data
  vocabSize: number; // vocabulary of a trained tokenizer (0 = the preset's)
  valFraction: number; // fraction of documents held out for validation
  steps: number; // optimizer steps in total (a resumed run counts from its checkpoint)
  batchSize: number; // B: sequences per micro-batch
  seqLen: number; // T: tokens per sequence
  gradAccum: number; // micro-batches per optimizer step
  tokensPerStep: number; // 0 = B*T*gradAccum; else the tokens of one optimizer step: gradAccum = this / (B*T)
  recompute: boolean; // activation recomputation per block: keep block inputs, re-run each block in backward
  ceChunk: number; // LM head + cross-entropy over at most this many positions at a time (0 = all at once)
  lr: number; // peak learning rate (Muon and AdamW share it: Moonlight scaling)
  optimizer: 'muon' | 'adamw'; // Muon on hidden matrices + AdamW on the rest, or AdamW for all
  weightDecay: number; // decoupled weight decay on the roles that decay (matrices, embeddings)
  warmupSteps: number; // linear warmup from 0 to lr
  warmdownFraction: number; // the last fraction of `steps` decays linearly to 0
  gradClip: number; // clip the global gradient norm to this (0 = off)
  evalEvery: number; // validate every N steps, and at the end (0 = only at the end)
  evalBatches: number; // batches per validation
  sampleEvery: number; // a sample every N steps, and at the end (0 = only at the end)
  sampleTokens: number; // tokens per sample
  ckptEvery: number; // checkpoint every N steps, and at the end (0 = only at the end)
  seed: number; // model init, data order and samples
}

/** How a field is parsed from a flag (or a URL query) and checked. */
export type FieldKind = 'posInt' | 'nonNegInt' | 'nonNeg' | 'fraction' | 'string' | 'choice' | 'bool';

export interface FieldInfo<V> {
  default: V;
  kind: FieldKind;
  help: string; // the flag's help line (the page shows it as a tooltip)
  choices?: readonly string[]; // for 'choice'
  flag?: string; // the flag's name when it is not the field's kebab-case name
  offHelp?: string; // for 'bool': what turning it off means (the --no-... flag's help)
}

/** THE defaults table: the only place a run's default numbers are written. */
export const SPEC_FIELDS: { [K in keyof RunSpec]-?: FieldInfo<RunSpec[K]> } = {
  preset: { default: 'tiny', kind: 'choice', choices: Object.keys(PRESETS), help: 'model preset' },
  qkNorm: { default: undefined, kind: 'bool', help: 'QK-norm (per-head RMSNorm on q and k, as in Qwen3)', offHelp: 'the Llama-2 / MiniMind2 baseline' },
  data: { default: 'synthetic', kind: 'string', help: "'synthetic' (built in, offline), a .txt/.jsonl/.parquet file or directory, or a shard directory from `minichat data prepare`" },
  textField: { default: 'text', kind: 'string', help: 'JSONL/parquet field holding the text' },
  maxChars: { default: 0, kind: 'nonNegInt', help: 'read at most this many characters of data (0 = all)' },
  syntheticStories: { default: DEFAULT_SYNTHETIC_STORIES, kind: 'posInt', help: 'stories in the built-in corpus' },
  tokenizer: { default: undefined, kind: 'string', help: 'use this tokenizer directory instead of training one on the data' },
  vocabSize: { default: 0, kind: 'nonNegInt', help: "vocabulary of the tokenizer trained on the data (0 = the preset's)" },
  valFraction: { default: 0.05, kind: 'fraction', help: 'fraction of documents held out for validation' },
  steps: { default: 300, kind: 'posInt', help: 'optimizer steps in total' },
  batchSize: { default: 8, kind: 'posInt', help: 'sequences per micro-batch (B)' },
  seqLen: { default: 128, kind: 'posInt', help: 'tokens per sequence (T)' },
  gradAccum: { default: 1, kind: 'posInt', help: 'micro-batches per optimizer step' },
  tokensPerStep: { default: 0, kind: 'nonNegInt', help: 'tokens per optimizer step, a multiple of B x T: sets --grad-accum to it / (B x T) (0 = B x T x --grad-accum)' },
  recompute: { default: false, kind: 'bool', help: 'activation recomputation: keep only each block\'s input, re-run the block in backward (less memory, ~1/3 more compute; docs/memory.md)' },
  ceChunk: { default: 0, kind: 'nonNegInt', help: 'LM head + loss over at most N positions at a time, so no (B*T, vocab) logits tensor exists whole (0 = off; docs/memory.md)' },
  lr: { default: 3e-3, kind: 'nonNeg', help: 'peak learning rate (shared by Muon and AdamW)' },
  optimizer: { default: 'muon', kind: 'choice', choices: ['muon', 'adamw'], help: 'muon (hidden matrices) + adamw (the rest), or adamw for all' },
  weightDecay: { default: 0, kind: 'nonNeg', help: 'decoupled weight decay on matrices and embeddings' },
  warmupSteps: { default: 10, kind: 'nonNegInt', help: 'linear warmup steps' },
  warmdownFraction: { default: 0.3, kind: 'fraction', help: 'final fraction of steps with linear decay to 0' },
  gradClip: { default: 1, kind: 'nonNeg', help: 'clip the global gradient norm (0 = off)' },
  evalEvery: { default: 100, kind: 'nonNegInt', help: 'validate every N steps and at the end (0 = only at the end)' },
  evalBatches: { default: 8, kind: 'posInt', help: 'batches per validation' },
  sampleEvery: { default: 0, kind: 'nonNegInt', help: 'a sample every N steps and at the end (0 = only at the end)' },
  sampleTokens: { default: 64, kind: 'posInt', help: 'tokens per sample' },
  ckptEvery: { default: 100, kind: 'nonNegInt', help: 'checkpoint every N steps and at the end (0 = only at the end)' },
  seed: { default: 0, kind: 'nonNegInt', help: 'random seed (init, data order, samples)' },
};

/** The defaults as a RunSpec (derived from the table, never written out a second time). */
export const SPEC_DEFAULTS: RunSpec = Object.fromEntries(
  Object.entries(SPEC_FIELDS).filter(([, f]) => f.default !== undefined).map(([k, f]) => [k, f.default]),
) as unknown as RunSpec;

/** `batchSize` → `--batch-size` (what a user typed, for error messages). */
export function flagName(key: keyof RunSpec): string {
  return '--' + (SPEC_FIELDS[key].flag ?? key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()));
}

/** Check one value against its field's kind; returns a message, or null when it is fine. */
export function checkField(key: keyof RunSpec, v: unknown): string | null {
  const f = SPEC_FIELDS[key] as FieldInfo<unknown>;
  if (v === undefined) return f.default === undefined ? null : 'is missing';
  const n = v as number;
  switch (f.kind) {
    case 'posInt':
      return Number.isInteger(n) && n > 0 ? null : `must be a positive integer, got ${v}`;
    case 'nonNegInt':
      return Number.isInteger(n) && n >= 0 ? null : `must be an integer >= 0, got ${v}`;
    case 'nonNeg':
      return typeof v === 'number' && Number.isFinite(n) && n >= 0 ? null : `must be a number >= 0, got ${v}`;
    case 'fraction':
      return typeof v === 'number' && n >= 0 && n < 1 ? null : `must be in [0, 1), got ${v}`;
    case 'string':
      return typeof v === 'string' && v.length > 0 ? null : `must be a non-empty string, got ${JSON.stringify(v)}`;
    case 'choice':
      return f.choices!.includes(v as string) ? null : `must be one of ${f.choices!.join(', ')}, got ${JSON.stringify(v)}`;
    case 'bool':
      return typeof v === 'boolean' ? null : `must be true or false, got ${JSON.stringify(v)}`;
  }
}

/**
 * THE validation: every field's kind, then the rules that tie fields together. Each error is
 * one UserError naming the flag. Unknown keys are errors too (a misspelt setting must not be
 * silently ignored). Returns a complete spec (defaults filled in).
 */
export function validateSpec(partial: Partial<RunSpec>, where = ''): RunSpec {
  const at = where ? `${where}: ` : '';
  for (const k of Object.keys(partial)) {
    if (!(k in SPEC_FIELDS)) throw new UserError(`${at}unknown run setting "${k}" (known: ${Object.keys(SPEC_FIELDS).join(', ')})`);
  }
  const s = { ...SPEC_DEFAULTS, ...dropUndefined(partial) } as RunSpec;
  for (const k of Object.keys(SPEC_FIELDS) as (keyof RunSpec)[]) {
    const msg = checkField(k, s[k]);
    if (msg) throw new UserError(`${at}${flagName(k)} ${msg}`);
  }
  if (s.valFraction === 0) throw new UserError(`${at}--val-fraction must be > 0: validation needs held-out documents`);
  if (s.tokensPerStep > 0) {
    const per = s.batchSize * s.seqLen, k = s.tokensPerStep / per;
    if (!Number.isInteger(k)) {
      const near = [Math.floor(k) * per, Math.ceil(k) * per].filter((n) => n > 0).join(' or ');
      throw new UserError(`${at}--tokens-per-step ${s.tokensPerStep} is not a multiple of --batch-size x --seq-len = ${per}: try ${near}`);
    }
    if (s.gradAccum !== 1 && s.gradAccum !== k) {
      throw new UserError(`${at}--tokens-per-step ${s.tokensPerStep} means --grad-accum ${k} at ${s.batchSize} x ${s.seqLen}, not ${s.gradAccum}: give one of the two`);
    }
  }
  return s;
}

/** Micro-batches per optimizer step: --grad-accum, or --tokens-per-step / (B x T) when given. */
export function gradAccumOf(s: Pick<RunSpec, 'gradAccum' | 'tokensPerStep' | 'batchSize' | 'seqLen'>): number {
  return s.tokensPerStep > 0 ? s.tokensPerStep / (s.batchSize * s.seqLen) : s.gradAccum;
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Just the RunSpec fields of a bigger object (CLI flags, the page's messages). */
export function pickSpec(o: Record<string, unknown>): Partial<RunSpec> {
  return Object.fromEntries(Object.keys(SPEC_FIELDS).filter((k) => o[k] !== undefined).map((k) => [k, o[k]])) as Partial<RunSpec>;
}

/** Is `every` due at `step`? (0 = never, except at the end, which the caller checks.) */
export function due(every: number, step: number): boolean {
  return every > 0 && step % every === 0;
}
