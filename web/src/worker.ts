// The training worker: the same src/ modules as the CLI (`minichat pretrain`), driven by
// messages from the page instead of argv. See protocol.ts for the messages and docs/web.md
// for the whole picture.
//
// Why a Web Worker: a training step is seconds of JavaScript (CPU backend) or of waiting on
// the GPU; on the page's main thread that would freeze scrolling, buttons and the chart.
//
// The order of operations mirrors src/train/pretrain.ts (which we cannot import: it writes
// files with node:fs):
//   1. documents: the built-in synthetic corpus, or the file the user dropped;
//   2. tokenizer: trained here, on those documents (src/tokenizer/train.ts);
//   3. tokens: one BOS per document, whole documents held out for validation (shards.ts);
//   4. model from a preset (gpt.ts), optimizer (Muon + AdamW, or AdamW), LR schedule;
//   5. the loop: Trainer.trainStep() (trainer.ts), validation, samples, autosaves.
//
// Every model operation goes through `exclusive()`, a one-at-a-time queue: a prompt typed
// while training runs waits for the current step to finish, generates, and training goes on.
import type { Backend } from '../../src/backend/backend.ts';
import { cpu } from '../../src/backend/cpu.ts';
import { setKernelSources } from '../../src/backend/kernels.ts';
import { initWasmMatmul, setWasmMatmulBytes } from '../../src/backend/wasm-matmul.ts';
import matmulWasmUrl from '../../kernels/cpu/matmul.wasm?url';
import matmulSharedWasmUrl from '../../kernels/cpu/matmul-shared.wasm?url';
import opsWasmUrl from '../../kernels/cpu/ops.wasm?url';
import { createWasmBackend, setWasmBackendBytes, wasmBackendSupported } from '../../src/backend/wasm.ts';
import { createWebGPUBackend, type WebGPUBackend } from '../../src/backend/webgpu.ts';
import { generateSyntheticCorpus } from '../../data/synthetic.ts';
import { evaluate, tokenByteLengths, unigramLoss } from '../../src/eval/loss.ts';
import { generate } from '../../src/model/engine.ts';
import { GPT, countParams, presetConfig, type GPTConfig } from '../../src/model/gpt.ts';
import { buildOptimizer, type BuiltOptimizer, type Schedule } from '../../src/optim/index.ts';
import * as T from '../../src/tensor/index.ts';
import { Tokenizer } from '../../src/tokenizer/bpe.ts';
import { trainTokenizer } from '../../src/tokenizer/train.ts';
import { BatchLoader, type TokenArray } from '../../src/train/loader.ts';
import { fromTensors, toTensors, type SafeTensor } from '../../src/train/safetensors.ts';
import { tokenizeDocuments } from '../../src/train/shards.ts';
import { DivergedError, Trainer } from '../../src/train/trainer.ts';
import { decodeCheckpoint, encodeCheckpoint } from './checkpoint.ts';
import { parseDocuments } from './documents.ts';
import type { DataSource, FromWorker, History, ModelInfo, Settings, ToWorker } from './protocol.ts';

// The WGSL kernels, bundled by Vite as strings (kernels.ts reads them from disk in Node).
setKernelSources(import.meta.glob('../../kernels/*.wgsl', { query: '?raw', import: 'default', eager: true }));

// The worker's global scope, typed narrowly (the root tsconfig uses the DOM library).
const scope = self as unknown as {
  postMessage(msg: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  navigator: { gpu?: { requestAdapter(): Promise<{ info?: Record<string, string> } | null> } };
};
const post = (msg: FromWorker, transfer: Transferable[] = []) => scope.postMessage(msg, transfer);

const EVAL_BATCHES = 4;

// ---------------------------------------------------------------------------------------
// backend choice: WebGPU when the browser offers a GPU adapter, else the CPU: the wasm
// backend when the page is cross-origin isolated (it needs shared WebAssembly memory), else
// the plain-TypeScript reference with the WASM SIMD matmul
// ---------------------------------------------------------------------------------------

let backend: Backend = cpu;
let fatal: string | null = null; // set when the GPU device is lost: nothing can run after it

async function chooseBackend(want: 'auto' | 'cpu', reasonFromPage: string): Promise<void> {
  const useCpu = async (reason: string) => {
    // the wasm backend (src/backend/wasm.ts), one thread: tensors in shared WebAssembly memory
    if ((scope as unknown as { crossOriginIsolated?: boolean }).crossOriginIsolated && wasmBackendSupported()) {
      try {
        const bytes = (url: string) => fetch(url).then((r) => r.arrayBuffer());
        const [ops, mm] = await Promise.all([bytes(opsWasmUrl), bytes(matmulSharedWasmUrl)]);
        setWasmBackendBytes(ops, mm);
        const w = await createWasmBackend({ threads: 1 });
        backend = w;
        T.setDefaultBackend(w);
        post({ type: 'backend', name: 'wasm', reason, adapter: 'WebAssembly SIMD kernels on this CPU (src/backend/wasm.ts)' });
        return;
      } catch (e) {
        reason += `; the wasm backend failed to start (${(e as Error).message}), so the reference runs`;
      }
    } else {
      reason += '; the page is not cross-origin isolated (no COOP/COEP headers), so the wasm backend cannot run';
    }
    backend = cpu;
    T.setDefaultBackend(cpu);
    // the WASM SIMD matmul (kernels/cpu/matmul.wat), 8-10x the JavaScript loop, when the
    // browser runs WASM SIMD; the JavaScript loop otherwise
    const simd = await fetch(matmulWasmUrl)
      .then((r) => r.arrayBuffer())
      .then((b) => (setWasmMatmulBytes(b), initWasmMatmul()))
      .catch(() => false);
    const how = simd ? 'JavaScript + WASM SIMD matmul on this CPU' : 'JavaScript on this CPU';
    post({ type: 'backend', name: 'cpu', reason, adapter: `${how} (src/backend/cpu.ts)` });
  };
  if (want === 'cpu') return useCpu(reasonFromPage);
  const gpu = scope.navigator.gpu;
  if (!gpu) return useCpu('WebGPU is not available in this browser (navigator.gpu is missing in the worker)');
  const adapter = await gpu.requestAdapter().catch(() => null);
  if (!adapter) {
    return useCpu('navigator.gpu exists but offered no GPU adapter (the GPU may be blocklisted or WebGPU switched off)');
  }
  try {
    const gpuBackend = await createWebGPUBackend({ gpu: gpu as never });
    backend = gpuBackend;
    T.setDefaultBackend(gpuBackend);
    const info = gpuBackend.adapterInfo;
    const adapterName = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unnamed adapter';
    post({ type: 'backend', name: 'webgpu', reason: 'navigator.gpu offered a GPU adapter', adapter: adapterName });
    void gpuBackend.device.lost.then((lost) => {
      fatal = `the GPU device was lost (${lost.reason || 'unknown reason'}: ${lost.message || 'no message'})`;
      if (run) run.running = false;
      post({ type: 'error', where: 'GPU', fatal: true, message: `${fatal}. Reload the page to start again, or add ?backend=cpu to the address to train on the CPU.` });
    });
  } catch (e) {
    useCpu(`WebGPU failed to start, so the CPU is used instead: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------
// one run: data, tokenizer, model, optimizer, trainer
// ---------------------------------------------------------------------------------------

interface Run {
  settings: Settings;
  tok: Tokenizer;
  model: GPT;
  opt: BuiltOptimizer;
  loader: BatchLoader;
  trainer: Trainer;
  val: TokenArray;
  bytesPerToken: Int32Array;
  info: ModelInfo;
  history: History; // what the page has drawn: saved in the checkpoint
  running: boolean;
  trainSeconds: number; // for tokens/s: only time spent in trainStep
  trainedSteps: number;
}

let run: Run | null = null;
let looping = false;

/** One model operation at a time (see the header). */
let chain: Promise<unknown> = Promise.resolve();
function exclusive<R>(fn: () => Promise<R>): Promise<R> {
  const next = chain.then(() => {
    if (fatal) throw new Error(fatal);
    return fn();
  });
  chain = next.catch(() => {});
  return next;
}

const macrotask = () => new Promise<void>((r) => setTimeout(r, 0)); // lets queued messages in

function loadDocuments(s: Settings, data: DataSource | null): { docs: string[]; name: string } {
  if (data) return { docs: parseDocuments(data.name, data.text), name: data.name };
  return { docs: generateSyntheticCorpus({ stories: s.stories, seed: 1234 }), name: `built-in synthetic corpus (${s.stories} stories)` };
}

function scheduleOf(s: Settings): Schedule {
  // as pretrain.ts's defaults: 10 warmup steps (fewer on very short runs), the last 30% decays to 0
  return { lr: s.lr, warmupSteps: Math.min(10, Math.floor(s.steps / 10)), totalSteps: s.steps, warmdownFraction: 0.3, finalFraction: 0 };
}

/**
 * Build a run. `restored` (from a checkpoint file) supplies the tokenizer, config, weights
 * and optimizer state; otherwise the tokenizer is trained and the model initialised.
 */
async function buildRun(
  s: Settings, data: DataSource | null,
  restored?: { tok: Tokenizer; config: GPTConfig; step: number; history: History; weights: Map<string, SafeTensor>; optimizer: Map<string, SafeTensor> },
): Promise<Run> {
  const { docs, name } = loadDocuments(s, data);
  post({ type: 'status', text: `data: ${docs.length} documents from ${name}` });
  let tok = restored?.tok;
  if (!tok) {
    post({ type: 'status', text: `training a ${s.vocab}-token BPE tokenizer on the data…` });
    await macrotask();
    tok = await trainTokenizer(docs, { vocabSize: s.vocab });
  }
  post({ type: 'status', text: 'tokenizing…' });
  await macrotask();
  const corpus = tokenizeDocuments(docs, tok, { valFraction: 0.05 });
  const config = restored?.config ?? presetConfig(s.preset, { qkNorm: s.qkNorm, vocabSize: tok.vocabSize, maxSeqLen: Math.max(s.seq, presetConfig(s.preset).maxSeqLen) });
  if (s.seq > config.maxSeqLen) throw new Error(`sequence length ${s.seq} exceeds the model's context of ${config.maxSeqLen} tokens`);

  const rng = new T.Rng(s.seed);
  const model = new GPT(config, rng, backend);
  if (restored) model.loadWeights(restored.weights, 'checkpoint');
  const opt = buildOptimizer(model.namedParams(), { kind: s.optimizer, lr: s.lr, weightDecay: 0 });
  if (restored && restored.optimizer.size > 0) {
    const state = toTensors(Object.fromEntries(restored.optimizer), backend);
    try {
      await opt.loadStateDict(state);
    } catch (e) {
      post({ type: 'error', where: 'load', fatal: false, message: `the optimizer state was not restored (${(e as Error).message}); training continues with a fresh optimizer` });
    } finally {
      Object.values(state).forEach((t) => t.dispose());
    }
  }
  const loader = new BatchLoader(corpus.train, s.batch, s.seq, s.seed + 1);
  const trainer = new Trainer(model, opt, loader, { gradAccum: 1, gradClip: 1, schedule: scheduleOf(s) });
  trainer.step = restored?.step ?? 0;
  const info: ModelInfo = {
    preset: s.preset, params: countParams(config), vocab: tok.vocabSize, config: { ...config }, dataName: name,
    trainTokens: corpus.train.length, valTokens: corpus.val.length,
    unigram: unigramLoss(corpus.train, corpus.val, tok.vocabSize), steps: s.steps, step: trainer.step, settings: s,
  };
  return {
    settings: s, tok, model, opt, loader, trainer, val: corpus.val, bytesPerToken: tokenByteLengths(tok), info,
    history: restored?.history ?? { train: [], val: [], samples: [] },
    running: false, trainSeconds: 0, trainedSteps: 0,
  };
}

function disposeRun(r: Run): void {
  r.running = false;
  for (const t of Object.values(r.opt.stateDict())) t.dispose();
  r.model.dispose();
}

// ---------------------------------------------------------------------------------------
// the training loop
// ---------------------------------------------------------------------------------------

const memory = () => backend.bytesInUse();

async function sampleText(r: Run, prompt: number[], maxTokens: number, temperature: number, seed: number): Promise<string> {
  const ids = await generate(r.model, prompt, { maxTokens, temperature, topK: 40, rng: new T.Rng(seed), stopAt: [r.tok.bosId] });
  return r.tok.decode(ids);
}

async function loop(r: Run): Promise<void> {
  if (looping) return;
  looping = true;
  post({ type: 'state', running: true, finished: false });
  const s = r.settings;
  const tokensPerStep = s.batch * s.seq;
  try {
    while (r.running && run === r && r.trainer.step < s.steps) {
      let res;
      try {
        res = await exclusive(() => r.trainer.trainStep());
      } catch (e) {
        if (e instanceof DivergedError) throw new Error(`${e.message}. Try a lower learning rate (now ${s.lr}).`);
        throw e;
      }
      r.trainSeconds += res.seconds;
      r.trainedSteps++;
      const step = res.step, last = step === s.steps;
      r.history.train.push([step, res.loss]);
      post({ type: 'step', step, loss: res.loss, lr: res.lr, tokensPerSecond: (r.trainedSteps * tokensPerStep) / r.trainSeconds, memoryBytes: memory() });
      if ((s.evalEvery > 0 && step % s.evalEvery === 0) || last) {
        const v = await exclusive(() => evaluate(r.model, r.val, s.batch, s.seq, EVAL_BATCHES, r.bytesPerToken));
        r.history.val.push([step, v.loss]);
        post({ type: 'val', step, loss: v.loss, bpb: v.bpb });
      }
      if ((s.sampleEvery > 0 && step % s.sampleEvery === 0) || last) {
        const text = await exclusive(() => sampleText(r, [r.tok.bosId], s.sampleTokens, 0.8, s.seed * 1000 + step));
        r.history.samples.push({ step, text });
        post({ type: 'sample', step, text });
        await autosave(r);
      }
      await macrotask();
    }
  } catch (e) {
    r.running = false;
    post({ type: 'error', where: 'training', fatal: !!fatal, message: (e as Error).message });
  } finally {
    looping = false;
  }
  const finished = r.trainer.step >= s.steps;
  if (run === r) {
    r.running = false;
    post({ type: 'state', running: false, finished });
    if (!fatal) await autosave(r).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// checkpoints
// ---------------------------------------------------------------------------------------

async function checkpointBytes(r: Run): Promise<Uint8Array> {
  return exclusive(async () => {
    const weights = new Map(Object.entries(await fromTensors(Object.fromEntries(r.model.params))));
    const optimizer = new Map(Object.entries(await fromTensors(r.opt.stateDict())));
    return encodeCheckpoint({ config: r.model.config, tokenizer: r.tok, step: r.trainer.step, settings: r.settings, history: r.history, weights, optimizer });
  });
}

let lastAutosaveStep = -1;
async function autosave(r: Run): Promise<void> {
  if (r.trainer.step === lastAutosaveStep) return;
  lastAutosaveStep = r.trainer.step;
  const bytes = await checkpointBytes(r);
  post({ type: 'checkpoint', purpose: 'autosave', step: r.trainer.step, bytes: bytes.buffer as ArrayBuffer }, [bytes.buffer as ArrayBuffer]);
}

// ---------------------------------------------------------------------------------------
// messages
// ---------------------------------------------------------------------------------------

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.type) {
    case 'init':
      await chooseBackend(msg.backend, msg.reason);
      return;
    case 'start': {
      if (run) {
        await exclusive(async () => disposeRun(run!));
        run = null;
      }
      lastAutosaveStep = -1;
      const r = await exclusive(() => buildRun(msg.settings, msg.data));
      run = r;
      post({ type: 'ready', info: r.info, history: null });
      r.running = true;
      void loop(r);
      return;
    }
    case 'pause':
      if (run) run.running = false; // the loop stops after the current step and autosaves
      return;
    case 'resume':
      if (run && !run.running && run.trainer.step < run.settings.steps) {
        run.running = true;
        void loop(run);
      }
      return;
    case 'reset':
      if (run) {
        const r = run;
        run = null;
        r.running = false;
        await exclusive(async () => disposeRun(r));
      }
      post({ type: 'state', running: false, finished: false });
      return;
    case 'generate': {
      if (!run) throw new Error('there is no model yet: start training or load a checkpoint first');
      const r = run;
      const text = await exclusive(async () => {
        const ids = [r.tok.bosId, ...r.tok.encode(msg.prompt)];
        return msg.prompt + (await sampleText(r, ids, msg.maxTokens, msg.temperature, Date.now() % 1e9));
      });
      post({ type: 'generated', id: msg.id, text });
      return;
    }
    case 'save': {
      if (!run) throw new Error('there is no model to save yet');
      const bytes = await checkpointBytes(run);
      post({ type: 'checkpoint', purpose: msg.purpose, step: run.trainer.step, bytes: bytes.buffer as ArrayBuffer }, [bytes.buffer as ArrayBuffer]);
      return;
    }
    case 'load': {
      const ck = decodeCheckpoint(new Uint8Array(msg.bytes), msg.name);
      if (run) {
        const old = run;
        run = null;
        await exclusive(async () => disposeRun(old));
      }
      const r = await exclusive(() =>
        buildRun(ck.settings, msg.data, { tok: ck.tokenizer, config: ck.config, step: ck.step, history: ck.history, weights: ck.weights, optimizer: ck.optimizer }),
      );
      run = r;
      post({ type: 'ready', info: r.info, history: r.history });
      post({ type: 'state', running: false, finished: r.trainer.step >= r.settings.steps });
      // a file the user loaded becomes "the last run" (kept in IndexedDB); a restore already is
      lastAutosaveStep = msg.keep ? -1 : ck.step;
      if (msg.keep) await autosave(r);
      return;
    }
  }
}

scope.onmessage = (e) => {
  handle(e.data).catch((err: unknown) => {
    post({ type: 'error', where: e.data.type, fatal: !!fatal, message: err instanceof Error ? err.message : String(err) });
  });
};
