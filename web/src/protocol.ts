// The messages between the page (main.ts) and the training worker (worker.ts).
//
// The page never touches a tensor: it sends commands and draws what comes back. Every model
// operation (a training step, a sample, a save) happens in the worker, one at a time, so the
// page stays responsive even while a step takes seconds on a slow GPU.
//
//   page → worker                          worker → page
//   init     {backend, reason}       →     backend  {name, reason, adapter}
//   start    {settings, data}        →     status / ready / step / val / sample / done
//   pause, resume, reset             →     state    {running}
//   generate {prompt, ...}           →     generated {id, text}
//   save     {purpose}               →     checkpoint {bytes, step, purpose}
//   load     {bytes, name, keep}     →     ready (with the file's history), checkpoint if keep
//                                          error    {message, where} (anything that failed)

/** Everything the user can set before pressing Start (also read from the URL query). */
export interface Settings {
  preset: 'tiny' | 'small'; // model size (src/model/gpt.ts PRESETS)
  steps: number; // optimizer steps in total
  lr: number; // peak learning rate (Muon and AdamW share it)
  optimizer: 'muon' | 'adamw';
  qkNorm: boolean; // per-head RMSNorm on q and k (Qwen3); off = the Llama-2 baseline
  batch: number; // B: sequences per step
  seq: number; // T: tokens per sequence
  vocab: number; // tokenizer vocabulary, trained in the page
  stories: number; // size of the built-in synthetic corpus
  sampleEvery: number; // a sample every N steps (0 = only at the end)
  evalEvery: number; // validation loss every N steps (0 = only at the end)
  sampleTokens: number; // length of those samples, in tokens
  seed: number;
}

/** Text the user dropped on the page, or null for the built-in synthetic corpus. */
export interface DataSource {
  name: string; // file name, shown in the page
  text: string; // the whole file
}

export type ToWorker =
  | { type: 'init'; backend: 'auto' | 'cpu'; reason: string }
  | { type: 'start'; settings: Settings; data: DataSource | null }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'reset' }
  | { type: 'generate'; id: number; prompt: string; maxTokens: number; temperature: number }
  | { type: 'save'; purpose: 'download' | 'autosave' }
  | { type: 'load'; bytes: ArrayBuffer; name: string; data: DataSource | null; keep: boolean };

/** Points for the chart and the samples, kept by the worker and saved in the checkpoint file,
 *  so a loaded or restored run redraws its curve. */
export interface History {
  train: [number, number][]; // [step, loss]
  val: [number, number][]; // [step, val loss]
  samples: { step: number; text: string }[];
}

export interface ModelInfo {
  preset: string;
  params: number; // parameter count (countParams of the config)
  vocab: number;
  config: Record<string, unknown>;
  dataName: string; // where the tokens came from
  trainTokens: number;
  valTokens: number;
  unigram: number; // the "learned nothing" loss to beat
  steps: number; // the run's target
  step: number; // steps done (nonzero after a load)
  settings: Settings; // what the run was started with (the form shows them after a load)
}

export type FromWorker =
  | { type: 'backend'; name: 'webgpu' | 'wasm' | 'cpu'; reason: string; adapter: string }
  | { type: 'status'; text: string }
  | { type: 'ready'; info: ModelInfo; history: History | null }
  | { type: 'step'; step: number; loss: number; lr: number; tokensPerSecond: number; memoryBytes: number }
  | { type: 'val'; step: number; loss: number; bpb: number }
  | { type: 'sample'; step: number; text: string }
  | { type: 'state'; running: boolean; finished: boolean }
  | { type: 'generated'; id: number; text: string }
  | { type: 'checkpoint'; purpose: 'download' | 'autosave'; step: number; bytes: ArrayBuffer }
  | { type: 'error'; where: string; message: string; fatal: boolean };

/** Defaults for a real GPU: the tiny preset for a few hundred steps (about a minute). */
export const DEFAULT_SETTINGS: Settings = {
  preset: 'tiny',
  steps: 300,
  lr: 3e-3,
  optimizer: 'muon',
  qkNorm: true,
  batch: 8,
  seq: 128,
  vocab: 1024,
  stories: 2500,
  sampleEvery: 50,
  evalEvery: 50,
  sampleTokens: 48,
  seed: 0,
};
