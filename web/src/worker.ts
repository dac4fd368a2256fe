// The training worker: message handling, the backend choice and the IndexedDB store around
// the run core that `minichat pretrain` runs (src/train/run.ts): the same setup (tokenizer,
// tokens, model, parameter groups, loader, resume), the same loop (steps, validation, samples,
// checkpoints), the same checkpoint format (src/io/checkpoint.ts). See protocol.ts for the
// messages and docs/web.md for the whole picture.
//
// Why a Web Worker: a training step is seconds of JavaScript (CPU backend) or of waiting on
// the GPU; on the page's main thread that would freeze scrolling, buttons and the chart.
//
// Every model operation goes through `exclusive()`, a one-at-a-time queue: a prompt typed
// while training runs waits for the current step to finish, generates, and training goes on.
//
// After pretraining (or loading a checkpoint), "Fine-tune for chat" runs the SFT run core
// (src/train/sft-run.ts, what `minichat sft --data builtin` runs) on the built-in chat data,
// with the same loop, store and checkpoint format; then the chat panel talks to the model
// through createChatModel (src/serve/chat-model.ts, what `minichat chat` and `serve` use), its
// reply streamed here as text deltas, tool calls and their results as their own parts.
import type { Backend } from '../../src/backend/backend.ts';
import { cpu } from '../../src/backend/cpu.ts';
import { setKernelSources } from '../../src/backend/kernels.ts';
import { initWasmMatmul, setWasmMatmulBytes } from '../../src/backend/wasm-matmul.ts';
import matmulWasmUrl from '../../kernels/cpu/matmul.wasm?url';
import matmulSharedWasmUrl from '../../kernels/cpu/matmul-shared.wasm?url';
import opsWasmUrl from '../../kernels/cpu/ops.wasm?url';
import { defaultThreads } from '../../src/backend/platform.ts';
import { type WasmBackend, createWasmBackend, setWasmBackendBytes, setWasmWorkerUrl, wasmBackendSupported } from '../../src/backend/wasm.ts';
import { createWebGPUBackend } from '../../src/backend/webgpu.ts';
import { type CheckpointParts, checkpointParts, decodeCheckpointFile, encodeCheckpointFile, modelFromParts } from '../../src/io/checkpoint.ts';
import { CHAT_DEFAULTS, type ChatModel, createChatModel, defaultMaxTokens } from '../../src/serve/chat-model.ts';
import { type SftRun, type SftSpec, SFT_SPEC_DEFAULTS, builtinConversations, disposeSft, runSft, setupSft, sftCheckpoint } from '../../src/train/sft-run.ts';
import { type GPT, countParams } from '../../src/model/gpt.ts';
import * as T from '../../src/tensor/index.ts';
import type { Tokenizer } from '../../src/tokenizer/bpe.ts';
import type { Message } from '../../src/tokenizer/chat.ts';
import {
  type PretrainRun, type RunData, disposeRun, pretrainCheckpoint, runPretrain, sampleText, setupPretrain, syntheticData,
} from '../../src/train/run.ts';
import { type RunSpec, pickSpec, validateSpec } from '../../src/train/spec.ts';
import { parseDocuments } from './documents.ts';
import { type DataSource, type FromWorker, type History, type ModelInfo, SETTINGS_KEYS, type Settings, type ToWorker } from './protocol.ts';
import { IndexedDBStore } from './store.ts';

// The WGSL kernels, bundled by Vite as strings (kernels.ts reads them from disk in Node).
setKernelSources(import.meta.glob('../../kernels/*.wgsl', { query: '?raw', import: 'default', eager: true }));

// The worker's global scope, typed narrowly (the root tsconfig uses the DOM library).
const scope = self as unknown as {
  postMessage(msg: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  navigator: { gpu?: { requestAdapter(): Promise<{ info?: Record<string, string> } | null> }; hardwareConcurrency?: number };
  crossOriginIsolated?: boolean;
};
const post = (msg: FromWorker, transfer: Transferable[] = []) => scope.postMessage(msg, transfer);

// The chat model (src/serve/chat-model.ts) yields to the event loop between tokens with Node's
// setImmediate, so that a server notices a client leaving. Browsers have no setImmediate; a
// MessageChannel message is the browser's equivalent (a macrotask without setTimeout's 4 ms
// clamp), and it lets the page's Stop reach the worker mid-reply.
if (typeof (globalThis as { setImmediate?: unknown }).setImmediate !== 'function') {
  const channel = new MessageChannel();
  const queue: (() => void)[] = [];
  channel.port1.onmessage = () => queue.shift()?.();
  (globalThis as unknown as { setImmediate: (fn: () => void) => void }).setImmediate = (fn) => {
    queue.push(fn);
    channel.port2.postMessage(null);
  };
}

// ---------------------------------------------------------------------------------------
// backend choice: WebGPU when the browser offers a GPU adapter, else the CPU reference
// ---------------------------------------------------------------------------------------

let backend: Backend = cpu;
let fatal: string | null = null; // set when the GPU device is lost: nothing can run after it

// The wasm backend's helper threads (src/backend/wasm-threads.ts) are module Web Workers that
// this worker starts, running kernels/cpu/wasm-worker.mjs over the same shared memory. Vite
// sees `new URL('…', import.meta.url)` and serves the file (dev) or copies it into the build.
setWasmWorkerUrl(new URL('../../kernels/cpu/wasm-worker.mjs', import.meta.url));

/** The threads the page gets unless it asks: min(cores, 8), the CLI's rule (src/backend/platform.ts). */
const pageDefaultThreads = () => defaultThreads(scope.navigator.hardwareConcurrency ?? 1);
/** Why the current backend was chosen (the banner), kept for when a new thread count remakes it. */
let backendReason = '';

const wasmAdapter = (threads: number) =>
  `WebAssembly SIMD kernels on this CPU, ${threads} thread${threads === 1 ? '' : 's'} (src/backend/wasm.ts)`;

/**
 * A wasm backend with `threads` threads (the helpers are Web Workers); if the helpers fail to
 * start, one thread, with the reason appended to `note`. Made the default for new tensors.
 */
async function startWasm(threads: number, note: { reason: string }): Promise<WasmBackend> {
  let w: WasmBackend;
  try {
    w = await createWasmBackend({ threads });
  } catch (e) {
    if (threads === 1) throw e;
    note.reason += `; ${threads} threads failed to start (${(e as Error).message}), so the wasm backend runs 1 thread`;
    w = await createWasmBackend({ threads: 1 });
  }
  backend = w;
  T.setDefaultBackend(w);
  return w;
}

/** Start: remake the wasm backend when the page asks for another thread count (no model is live). */
async function useThreads(threads: number | undefined): Promise<void> {
  const old = backend as Partial<WasmBackend>;
  if (threads === undefined || !old.threadPool || old.threads === threads) return;
  const note = { reason: backendReason };
  const w = await startWasm(threads, note);
  old.threadPool.destroy();
  post({ type: 'backend', name: 'wasm', reason: note.reason, adapter: wasmAdapter(w.threads), threads: w.threads });
}

async function chooseBackend(want: 'auto' | 'cpu', reasonFromPage: string, reference = false, threads?: number): Promise<void> {
  // allowWasm: the fast wasm backend when the page can run it; an explicit ?backend=cpu asks
  // for the plain-TypeScript reference, which computes the same bits as `--backend cpu` in the CLI
  const useCpu = async (reason: string, allowWasm = true) => {
    // the wasm backend (src/backend/wasm.ts): tensors in shared WebAssembly memory, helper
    // threads as Web Workers; both need a cross-origin isolated page
    if (!allowWasm) {
      // the reference, as asked
    } else if (scope.crossOriginIsolated && wasmBackendSupported()) {
      try {
        const bytes = (url: string) => fetch(url).then((r) => r.arrayBuffer());
        const [ops, mm] = await Promise.all([bytes(opsWasmUrl), bytes(matmulSharedWasmUrl)]);
        setWasmBackendBytes(ops, mm);
        const note = { reason };
        const w = await startWasm(threads ?? pageDefaultThreads(), note);
        backendReason = note.reason;
        post({ type: 'backend', name: 'wasm', reason: note.reason, adapter: wasmAdapter(w.threads), threads: w.threads });
        return;
      } catch (e) {
        reason += `; the wasm backend failed to start (${(e as Error).message}), so the reference runs`;
      }
    } else {
      reason += '; the page is not cross-origin isolated (no COOP/COEP headers), so the wasm backend and its threads cannot run: 1 thread';
    }
    backend = cpu;
    T.setDefaultBackend(cpu);
    // the WASM SIMD matmul (kernels/cpu/matmul.wat), 8-10x the JavaScript loop, when the
    // browser runs WASM SIMD; the JavaScript loop otherwise. The CLI uses the same kernel, so
    // a CPU run here and on the command line compute the same bits.
    const simd = await fetch(matmulWasmUrl)
      .then((r) => r.arrayBuffer())
      .then((b) => (setWasmMatmulBytes(b), initWasmMatmul()))
      .catch(() => false);
    const how = simd ? 'JavaScript + WASM SIMD matmul on this CPU' : 'JavaScript on this CPU';
    post({ type: 'backend', name: 'cpu', reason, adapter: `${how}, 1 thread (src/backend/cpu.ts)`, threads: 1 });
  };
  if (want === 'cpu') return useCpu(reasonFromPage, !reference);
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
    post({ type: 'backend', name: 'webgpu', reason: 'navigator.gpu offered a GPU adapter', adapter: adapterName, threads: 1 });
    void gpuBackend.device.lost.then((lost) => {
      fatal = `the GPU device was lost (${lost.reason || 'unknown reason'}: ${lost.message || 'no message'})`;
      running = false;
      post({ type: 'error', where: 'GPU', fatal: true, message: `${fatal}. Reload the page to start again, or add ?backend=cpu to the address to train on the CPU.` });
    });
  } catch (e) {
    await useCpu(`WebGPU failed to start, so the CPU is used instead: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------
// the current model: a training run, or a checkpoint loaded for generation only
// ---------------------------------------------------------------------------------------

interface Current {
  model: GPT;
  tok: Tokenizer;
  run: PretrainRun | null; // pretraining; null: generation only (the checkpoint's data is not in the page)
  sft: SftRun | null; // fine-tuning for chat (then `run` is null: SFT replaced the pretraining run)
  spec: RunSpec; // the (pre)training spec: the model's preset and the form's settings
  stage: 'base' | 'chat';
  chat?: ChatModel; // made on the first chat message
}

let current: Current | null = null;
let running = false; // the loop continues while this is true (Pause sets it false)
let looping = false;
const store = new IndexedDBStore((step) => post({ type: 'saved', step }));

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
const status = (text: string) => post({ type: 'status', text });

/** The run's documents: the file the user dropped, or the built-in corpus (as --data synthetic). */
function runData(spec: RunSpec, data: DataSource | null): RunData {
  if (data) return { kind: 'documents', docs: parseDocuments(data.name, data.text), source: data.name };
  return syntheticData(spec.syntheticStories);
}

function settingsOf(spec: RunSpec): Settings {
  return Object.fromEntries(SETTINGS_KEYS.map((k) => [k, spec[k]])) as Settings;
}

function info(c: Current, dataName: string): ModelInfo {
  const r = c.run;
  return {
    preset: c.spec.preset, params: countParams(c.model.config), vocab: c.tok.vocabSize, config: { ...c.model.config }, dataName,
    trainTokens: r?.train.length ?? 0, valTokens: r?.val.length ?? 0, unigram: r?.unigram ?? NaN,
    steps: c.spec.steps, step: r?.trainer.step ?? 0, settings: settingsOf(c.spec), trainable: !!r, stage: c.stage,
  };
}

async function drop(): Promise<void> {
  running = false;
  const c = current;
  current = null;
  if (c) await exclusive(async () => (c.run ? disposeRun(c.run) : c.sft ? disposeSft(c.sft) : c.model.dispose()));
}

// ---------------------------------------------------------------------------------------
// the training loop: the run core's, with the page's hooks
// ---------------------------------------------------------------------------------------

const memory = () => backend.bytesInUse();
/** Jobs the wasm backend's helper threads have run so far (0 on one thread or another backend). */
const helperJobs = () => (backend as Partial<WasmBackend>).threadPool?.jobs ?? 0;

/** Thrown into a loop whose run was replaced (Start again, Load, Reset): it ends quietly. */
class Dropped extends Error {}

async function loop(c: Current): Promise<void> {
  if (looping || !(c.run || c.sft)) return;
  looping = true;
  running = true;
  post({ type: 'state', running: true, finished: false });
  if (c.sft) return sftLoop(c, c.sft);
  const run = c.run!;
  try {
    await runPretrain(run, {
      store,
      log: status,
      onStep: (s) => post({ type: 'step', step: s.step, loss: s.loss, lr: s.lr, tokensPerSecond: s.tokensPerSecond, memoryBytes: memory(), helperJobs: helperJobs() }),
      onEval: (step, v) => post({ type: 'val', step, loss: v.loss, bpb: v.bpb }),
      onSample: (step, text) => post({ type: 'sample', step, text }),
      shouldStop: () => !running || current !== c,
      // a dropped run's model is disposed: none of its queued operations (a validation, the
      // save on stop) may touch it
      exclusive: (fn) => exclusive(() => (current === c ? fn() : Promise.reject(new Dropped()))),
      between: macrotask,
    });
  } catch (e) {
    if (!(e instanceof Dropped)) post({ type: 'error', where: 'training', fatal: !!fatal, message: (e as Error).message });
  } finally {
    looping = false;
    running = false;
  }
  if (current === c) post({ type: 'state', running: false, finished: run.trainer.step >= run.spec.steps });
}

/** The SFT loop: the run core's (runSft), with the page's hooks; a chat model when it ends. */
async function sftLoop(c: Current, run: SftRun): Promise<void> {
  try {
    await runSft(run, {
      store,
      log: status,
      onStep: (s) => post({ type: 'sft-step', step: s.step, steps: s.steps, loss: s.loss, tokensPerSecond: s.tokensPerSecond }),
      onEval: (step, loss) => post({ type: 'sft-val', step, loss }),
      shouldStop: () => !running || current !== c,
      exclusive: (fn) => exclusive(() => (current === c ? fn() : Promise.reject(new Dropped()))),
      between: macrotask,
    });
  } catch (e) {
    if (!(e instanceof Dropped)) post({ type: 'error', where: 'fine-tuning', fatal: !!fatal, message: (e as Error).message });
  } finally {
    looping = false;
    running = false;
  }
  if (current !== c) return;
  const finished = run.trainer.step >= run.spec.steps;
  post({ type: 'state', running: false, finished });
  if (finished) {
    c.stage = 'chat';
    post({ type: 'ready', info: { ...info(c, 'built-in chat data'), step: run.trainer.step, steps: run.spec.steps }, history: null });
  }
}

/** The spec of the pretraining a checkpoint's model came from (an SFT checkpoint keeps it). */
function pretrainSpecOf(parts: CheckpointParts): Record<string, unknown> {
  const st = parts.state?.spec;
  if (st?.stage === 'sft') return (st.pretrain as Record<string, unknown>) ?? { preset: 'tiny' };
  return st ?? { preset: 'tiny' };
}

/** Make `parts` the current model: a resumable run when its data is here, else generation only. */
async function adopt(parts: CheckpointParts, name: string, data: DataSource | null): Promise<void> {
  await drop();
  const spec = validateSpec(pickSpec(pretrainSpecOf(parts)), name);
  const isChat = parts.state?.spec.stage === 'sft';
  const haveData = !!data || spec.data === 'synthetic';
  let c: Current;
  if (parts.state && haveData && !isChat) {
    const run = await exclusive(() =>
      setupPretrain(spec, { data: runData(spec, data), store, backend, log: status, resume: parts, breathe: macrotask }),
    );
    c = { model: run.model, tok: run.tokenizer, run, sft: null, spec, stage: 'base' };
  } else {
    // a fine-tuned model is loaded for chat; continuing its SFT run is the CLI's job (--resume)
    const model = await exclusive(async () => modelFromParts(parts, backend, name));
    c = { model, tok: parts.tokenizer, run: null, sft: null, spec, stage: isChat ? 'chat' : 'base' };
    status(
      isChat ? `loaded a model fine-tuned for chat (step ${parts.state!.step} of SFT): talk to it below`
        : `loaded for generation only: ${parts.state ? `it was trained on ${spec.data}, which is not in the page (drop that file first to continue training)` : 'it holds no training state'}`,
    );
  }
  current = c;
  const history: History = c.run?.history ?? parts.state?.history ?? { train: [], val: [], samples: [] };
  post({ type: 'ready', info: info(c, data?.name ?? (spec.data === 'synthetic' ? `built-in synthetic corpus (${spec.syntheticStories} stories)` : spec.data)), history });
  post({ type: 'state', running: false, finished: !c.run || c.run.trainer.step >= spec.steps });
}

// ---------------------------------------------------------------------------------------
// messages
// ---------------------------------------------------------------------------------------

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.type) {
    case 'init':
      await chooseBackend(msg.backend, msg.reason, msg.reference, msg.threads);
      return;
    case 'start': {
      await drop();
      await exclusive(() => useThreads(msg.threads));
      const spec = validateSpec({ ...msg.settings, data: msg.data?.name ?? 'synthetic' }, 'settings');
      const data = runData(spec, msg.data);
      status(`data: ${data.kind === 'documents' ? data.docs.length : 0} documents from ${data.source}`);
      const run = await exclusive(() => setupPretrain(spec, { data, store, backend, log: status, breathe: macrotask }));
      const c: Current = { model: run.model, tok: run.tokenizer, run, sft: null, spec, stage: 'base' };
      current = c;
      post({ type: 'ready', info: info(c, msg.data?.name ?? `built-in synthetic corpus (${spec.syntheticStories} stories)`), history: null });
      void loop(c);
      return;
    }
    case 'pause':
      running = false; // the loop stops after the current step and saves to IndexedDB
      return;
    case 'resume': {
      const c = current;
      if (!c || looping) return;
      if (c.sft ? c.sft.trainer.step < c.sft.spec.steps : c.run && c.run.trainer.step < c.spec.steps) void loop(c);
      return;
    }
    case 'sft':
      await startSft(msg.settings);
      return;
    case 'chat':
      await chat(msg.id, msg.messages, msg.maxTokens, msg.temperature);
      return;
    case 'chat-stop':
      if (chatting?.id === msg.id) chatting.ctl.abort();
      return;
    case 'reset':
      await drop();
      post({ type: 'state', running: false, finished: false });
      return;
    case 'generate': {
      const c = current;
      if (!c) throw new Error('there is no model yet: start training or load a checkpoint first');
      const text = await exclusive(async () => {
        const ids = [c.tok.bosId, ...c.tok.encode(msg.prompt)];
        return msg.prompt + (await sampleText(c.model, c.tok, ids, { maxTokens: msg.maxTokens, temperature: msg.temperature, seed: Date.now() % 1e9 }));
      });
      post({ type: 'generated', id: msg.id, text });
      return;
    }
    case 'save': {
      const c = current;
      if (!c?.run && !c?.sft) throw new Error('there is no training run to save (a checkpoint loaded for generation only is already a file)');
      const bytes = await exclusive(async () => encodeCheckpointFile(await (c.sft ? sftCheckpoint(c.sft) : pretrainCheckpoint(c.run!))));
      const step = c.sft?.trainer.step ?? c.run!.trainer.step;
      post({ type: 'checkpoint', step, bytes: bytes.buffer as ArrayBuffer }, [bytes.buffer as ArrayBuffer]);
      return;
    }
    case 'load': {
      const parts = decodeCheckpointFile(new Uint8Array(msg.bytes), msg.name);
      await adopt(parts, msg.name, msg.data);
      // a file the user loaded becomes "the last run", kept in IndexedDB
      await store.writeCheckpoint(parts);
      return;
    }
    case 'restore': {
      const parts = await store.readCheckpoint();
      if (parts) await adopt(parts, 'the run kept in IndexedDB', null);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------
// fine-tuning for chat, and the chat itself
// ---------------------------------------------------------------------------------------

/** SFT of the current model on the built-in chat data: the run core's setupSft, then its loop. */
async function startSft(settings: Partial<SftSpec>): Promise<void> {
  const c = current;
  if (!c) throw new Error('there is no model yet: pretrain one (Start) or load a checkpoint first');
  if (looping) throw new Error('training is running: pause it (or let it finish) before fine-tuning');
  const spec: SftSpec = { ...SFT_SPEC_DEFAULTS, ...settings, data: 'builtin' };
  status('fine-tuning: rendering the built-in chat data…');
  await macrotask();
  // the base: the current weights (no optimizer state: SFT starts its own), then the
  // pretraining run is replaced by the SFT run
  const base = await exclusive(() => checkpointParts(c.model, c.tok, null, null));
  await drop();
  const { convs, source } = builtinConversations(spec);
  const run = await exclusive(() =>
    setupSft(spec, { base, baseName: 'the model trained in this page', baseSpec: { ...c.spec }, convs, source, store, backend, log: status }),
  );
  const next: Current = { model: run.model, tok: run.tokenizer, run: null, sft: run, spec: c.spec, stage: 'base' };
  current = next;
  post({ type: 'sft-ready', steps: spec.steps, summary: `${run.conversations} conversations (${source}), rows of ${run.T + 1} tokens` });
  void loop(next);
}

/** The chat in progress (one at a time; Stop aborts it). */
let chatting: { id: number; ctl: AbortController } | null = null;

/** One reply, streamed: createChatModel's text deltas go to the page as they arrive. */
async function chat(id: number, messages: Message[], maxTokens: number | undefined, temperature: number | undefined): Promise<void> {
  const c = current;
  if (!c) throw new Error('there is no model yet: pretrain and fine-tune one, or load a checkpoint');
  c.chat ??= createChatModel(c.model, c.tok, 'minichat (this page)');
  const ctl = new AbortController();
  chatting = { id, ctl };
  try {
    const r = await exclusive(() =>
      c.chat!.complete(messages, { maxTokens: maxTokens ?? defaultMaxTokens(c.chat!.contextLength), temperature: temperature ?? CHAT_DEFAULTS.temperature, topP: CHAT_DEFAULTS.topP, topK: CHAT_DEFAULTS.topK }, (delta, part) => post({ type: 'chat-delta', id, delta, part }), ctl.signal),
    );
    post({ type: 'chat-done', id, parts: r.parts ?? [{ type: 'text', text: r.text }], finishReason: r.finishReason });
  } catch (e) {
    if (!ctl.signal.aborted) throw e;
    post({ type: 'chat-done', id, parts: [], finishReason: 'stopped' });
  } finally {
    if (chatting?.id === id) chatting = null;
  }
}

scope.onmessage = (e) => {
  handle(e.data).catch((err: unknown) => {
    post({ type: 'error', where: e.data.type, fatal: !!fatal, message: err instanceof Error ? err.message : String(err) });
  });
};
