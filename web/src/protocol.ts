// The messages between the page (main.ts) and the training worker (worker.ts).
//
// The page never touches a tensor: it sends commands and draws what comes back. Every model
// operation (a training step, a sample, a save) happens in the worker, one at a time, so the
// page stays responsive even while a step takes seconds on a slow GPU.
//
//   page → worker                          worker → page
//   init     {backend, reason, threads} →  backend  {name, reason, adapter, threads}
//   start    {settings, data, threads}  →  (backend, if the thread count changed) status / ready / step / val / sample / saved
//   pause, resume, reset             →     state    {running, finished}
//   generate {prompt, ...}           →     generated {id, text}
//   save                             →     checkpoint {bytes, step} (a one-file checkpoint to download)
//   load     {bytes, name, data}     →     ready (with the file's history), saved (it becomes the last run)
//   restore                          →     ready, if this browser's IndexedDB holds a run
//   sft      {settings}              →     sft-ready, then sft-step / sft-val / saved, state;
//                                          ready (stage 'chat') when it ends
//   chat     {id, messages, ...}     →     chat-delta {id, delta, part} ... chat-done {id, ...}
//                                          error    {message, where} (anything that failed)
//
// The settings are a view of the run spec (src/train/spec.ts): the same field names, the same
// defaults, the same validation, so a run started here is the run `minichat pretrain` would make
// with the same flags, and its checkpoint continues on the command line.
//
// SFT settings are a view of the SFT spec (src/train/sft-run.ts) in the same way; the URL
// names them with an `sft` prefix (?sftSteps=5&sftSeqLen=64) so they do not collide with
// pretraining's.
import { type RunSpec, SPEC_DEFAULTS } from '../../src/train/spec.ts';
import { type SftSpec, SFT_SPEC_DEFAULTS } from '../../src/train/sft-run.ts';
import type { History } from '../../src/io/checkpoint.ts';
import type { AssistantPart, Message } from '../../src/tokenizer/chat.ts';

export type { History, AssistantPart, Message };

/** The spec fields the page's form shows (also read from the URL query, under these names). */
export const SETTINGS_KEYS = [
  'preset', 'steps', 'lr', 'optimizer', 'qkNorm', 'batchSize', 'seqLen', 'vocabSize', 'syntheticStories',
  'sampleEvery', 'sampleTokens', 'evalEvery', 'seed',
] as const;

/** Everything the user can set before pressing Start. */
export type Settings = Pick<RunSpec, (typeof SETTINGS_KEYS)[number]>;

/** The spec's defaults, except that the live view wants a sample and a validation point every
 *  50 steps (the CLI's defaults: only at the end, and every 100) so the chart has points early. */
export const DEFAULT_SETTINGS: Settings = {
  ...(Object.fromEntries(SETTINGS_KEYS.map((k) => [k, SPEC_DEFAULTS[k]])) as Settings),
  sampleEvery: 50,
  evalEvery: 50,
};

/** The SFT spec fields the page's "Fine-tune for chat" form shows. */
export const SFT_SETTINGS_KEYS = ['steps', 'lr', 'batchSize', 'seqLen', 'builtinExamples', 'evalEvery'] as const;

export type SftSettings = Pick<SftSpec, (typeof SFT_SETTINGS_KEYS)[number]>;

/** The SFT spec's defaults, except: 1000 built-in conversations rather than 3000 (rendering
 *  them all happens in the worker before the first step, and 1000 is already several epochs'
 *  worth of the default 200 steps x 8 rows), and validation every 25 steps so the chart has
 *  points early. */
export const DEFAULT_SFT_SETTINGS: SftSettings = {
  ...(Object.fromEntries(SFT_SETTINGS_KEYS.map((k) => [k, SFT_SPEC_DEFAULTS[k]])) as SftSettings),
  builtinExamples: 1000,
  evalEvery: 25,
};

/** Text the user dropped on the page, or null for the built-in synthetic corpus. */
export interface DataSource {
  name: string; // file name, shown in the page
  text: string; // the whole file
}

export type ToWorker =
  // reference: the plain-TypeScript cpu backend, not wasm (?backend=cpu); threads: the wasm
  // backend's (the page's setting; absent: min(cores, 8), as the CLI)
  | { type: 'init'; backend: 'auto' | 'cpu'; reason: string; reference?: boolean; threads?: number }
  | { type: 'start'; settings: Settings; data: DataSource | null; threads?: number } // threads: remake the wasm backend if it has another count
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'reset' }
  | { type: 'generate'; id: number; prompt: string; maxTokens: number; temperature: number }
  | { type: 'save' }
  | { type: 'load'; bytes: ArrayBuffer; name: string; data: DataSource | null }
  | { type: 'restore' }
  | { type: 'sft'; settings: SftSettings }
  | { type: 'chat'; id: number; messages: Message[]; maxTokens?: number; temperature?: number } // absent: the chat defaults (CHAT_DEFAULTS)
  | { type: 'chat-stop'; id: number };

export interface ModelInfo {
  preset: string;
  params: number; // parameter count (countParams of the config)
  vocab: number;
  config: Record<string, unknown>;
  dataName: string; // where the tokens came from
  trainTokens: number; // 0 when the checkpoint was loaded for generation only
  valTokens: number;
  unigram: number; // the "learned nothing" loss to beat
  steps: number; // the run's target
  step: number; // steps done (nonzero after a load)
  settings: Settings; // what the run was started with (the form shows them after a load)
  trainable: boolean; // false: loaded for generation only (its data is not here)
  stage: 'base' | 'chat'; // 'chat': fine-tuned for chat (SFT), the chat panel talks to it
}

export type FromWorker =
  | { type: 'backend'; name: 'webgpu' | 'wasm' | 'cpu'; reason: string; adapter: string; threads: number } // threads: CPU threads the model runs on (1 unless wasm)
  | { type: 'status'; text: string }
  | { type: 'ready'; info: ModelInfo; history: History | null }
  | { type: 'step'; step: number; loss: number; lr: number; tokensPerSecond: number; memoryBytes: number; helperJobs: number } // helperJobs: jobs run by the wasm helper threads so far
  | { type: 'val'; step: number; loss: number; bpb: number }
  | { type: 'sample'; step: number; text: string }
  | { type: 'state'; running: boolean; finished: boolean }
  | { type: 'generated'; id: number; text: string }
  | { type: 'checkpoint'; step: number; bytes: ArrayBuffer }
  | { type: 'saved'; step: number } // a checkpoint reached IndexedDB
  | { type: 'sft-ready'; steps: number; summary: string } // SFT set up: its first step comes next
  | { type: 'sft-step'; step: number; steps: number; loss: number; tokensPerSecond: number }
  | { type: 'sft-val'; step: number; loss: number }
  | { type: 'chat-delta'; id: number; delta: string; part: AssistantPart['type'] } // a piece of the reply, as it is generated
  | { type: 'chat-done'; id: number; parts: AssistantPart[]; finishReason: 'stop' | 'length' | 'stopped' }
  | { type: 'error'; where: string; message: string; fatal: boolean };
