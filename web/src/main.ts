// The demo page: controls, the backend banner, the live view (chart, numbers, samples), the
// prompt box, save / load, and the IndexedDB autosave. It holds no model: all of that lives in
// the training worker (worker.ts), which this file talks to with the messages in protocol.ts.
//
// Settings come from the form, whose initial values come from the URL query, so a test (or a
// shared link) can ask for a tiny run: ?steps=20&batchSize=2&seqLen=32&syntheticStories=200&vocabSize=300
// (the run spec's names, src/train/spec.ts; any Settings field in protocol.ts works). The form
// is checked by the spec's own validation. ?backend=cpu forces the CPU reference, ?backend=wasm
// the wasm backend (the CPU fallback, even where WebGPU is there); ?threads=N sets its threads
// (the "CPU threads" field; default min(cores, 8) when the page is cross-origin isolated); ?restore=0
// skips bringing back the last run from IndexedDB; ?genTokens=N sets the prompt box's length.
// The SFT form reads ?sftSteps, ?sftLr, ?sftBatchSize, ?sftSeqLen, ?sftExamples (the SFT spec's
// steps, lr, batchSize, seqLen, builtinExamples: src/train/sft-run.ts); ?chatTokens=N and
// ?chatTemperature=X set the chat's reply length and temperature.
//
// Chat: after "Fine-tune for chat" (or loading a fine-tuned checkpoint), each message sends the
// whole conversation to the worker; the reply arrives as deltas (chat-delta) appended to the
// assistant's bubble as they come, tool calls and their results in a monospace box.
//
// Errors: every failure (a worker error, a bad file, a lost GPU, an exception on this page)
// lands in the red panel at the top, never only in the console.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import {
  type AssistantPart, DEFAULT_SFT_SETTINGS, type DataSource, type FromWorker, type History, type Message, type Settings,
  type SftSettings, type ToWorker,
} from './protocol.ts';
import { clearLastRun } from './store.ts';
import { $, GEN_TOKENS, initForm, initThreads, parseThreads, query, readForm, readThreads, setForm } from './form.ts';


// ---------------------------------------------------------------------------------------
// errors: one visible panel
// ---------------------------------------------------------------------------------------

function showError(where: string, message: string): void {
  const li = document.createElement('li');
  li.textContent = `${where}: ${message}`;
  $('error-list').append(li);
  $('errors').hidden = false;
  console.error(`[minichat] ${where}: ${message}`);
}
$('errors-clear').onclick = () => {
  $('error-list').replaceChildren();
  $('errors').hidden = true;
};
window.addEventListener('error', (e) => showError('page', e.message));
window.addEventListener('unhandledrejection', (e) => showError('page', String((e.reason as Error)?.message ?? e.reason)));

// ---------------------------------------------------------------------------------------
// data: the built-in corpus, or a dropped / chosen file (read here, parsed in the worker)
// ---------------------------------------------------------------------------------------

let data: DataSource | null = null;

async function useFile(file: File): Promise<void> {
  if (!/\.(txt|md|jsonl)$/i.test(file.name)) {
    showError('data', `${file.name}: unsupported file type (drop a .txt, .md or .jsonl file)`);
    return;
  }
  data = { name: file.name, text: await file.text() };
  $('data-name').textContent = `${file.name} (${(file.size / 1024).toFixed(0)} KB)`;
  $('data-clear').hidden = false;
}
$('data-clear').onclick = () => {
  data = null;
  $('data-name').textContent = 'built-in synthetic stories';
  $('data-clear').hidden = true;
};
$<HTMLInputElement>('data-file').onchange = (e) => {
  const f = (e.target as HTMLInputElement).files?.[0];
  if (f) void useFile(f);
};
const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer?.files[0];
  if (f) void useFile(f);
});

// ---------------------------------------------------------------------------------------
// the live view: numbers, chart, samples
// ---------------------------------------------------------------------------------------

let history: History = { train: [], val: [], samples: [] };
let chart: uPlot | null = null;
let chartQueued = false;

function makeChart(el: HTMLElement = $('chart')): uPlot {
  return new uPlot(
    {
      width: Math.max(300, el.clientWidth || 800),
      height: 260,
      scales: { x: { time: false } },
      axes: [{ label: 'step' }, { label: 'loss (nats/token)' }],
      series: [
        {},
        { label: 'train', stroke: '#2f7be5', width: 1.5 },
        { label: 'val', stroke: '#e0672f', width: 2, spanGaps: true, points: { show: true, size: 6 } },
      ],
    },
    [[], [], []],
    el,
  );
}

/** Redraw at most once per animation frame, whatever the step rate. */
function drawChart(): void {
  if (chartQueued) return;
  chartQueued = true;
  requestAnimationFrame(() => {
    chartQueued = false;
    chart ??= makeChart();
    const val = new Map(history.val);
    const xs = history.train.map(([s]) => s);
    chart.setData([xs, history.train.map(([, l]) => l), xs.map((s) => val.get(s) ?? null)]);
  });
}
window.addEventListener('resize', () => {
  chart?.setSize({ width: Math.max(300, $('chart').clientWidth), height: 260 });
  sftChart?.setSize({ width: Math.max(300, $('sft-chart').clientWidth), height: 260 });
});

// the SFT loss curve: the same chart, its own history
let sftHistory: History = { train: [], val: [], samples: [] };
let sftChart: uPlot | null = null;
let sftChartQueued = false;
function drawSftChart(): void {
  if (sftChartQueued) return;
  sftChartQueued = true;
  requestAnimationFrame(() => {
    sftChartQueued = false;
    sftChart ??= makeChart($('sft-chart'));
    const val = new Map(sftHistory.val);
    const xs = sftHistory.train.map(([s]) => s);
    sftChart.setData([xs, sftHistory.train.map(([, l]) => l), xs.map((s) => val.get(s) ?? null)]);
  });
}

const fmtLoss = (x: number) => x.toFixed(4);
const fmtBytes = (b: number) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);
const fmtCount = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : String(n));

function showSample(step: number, text: string): void {
  $('sample').textContent = `[step ${step}] ${text}`;
}

function resetView(): void {
  history = { train: [], val: [], samples: [] };
  $('step').textContent = '0';
  for (const id of ['loss', 'val', 'tps', 'mem']) $(id).textContent = '–';
  $('sample').textContent = '';
  $('generated').textContent = '';
  drawChart();
}

/** Put a restored history (from IndexedDB) back on screen. */
function restoreView(h: History): void {
  history = h;
  const last = h.train.at(-1);
  if (last) {
    $('step').textContent = String(last[0]);
    $('loss').textContent = fmtLoss(last[1]);
  }
  const v = h.val.at(-1);
  if (v) $('val').textContent = fmtLoss(v[1]);
  const s = h.samples.at(-1);
  if (s) showSample(s.step, s.text);
  drawChart();
}

// ---------------------------------------------------------------------------------------
// buttons and their states
// ---------------------------------------------------------------------------------------

let hasModel = false, running = false, finished = false, backendReady = false;
/** The model is fine-tuned for chat (SFT finished, or a fine-tuned checkpoint was loaded). */
let chatReady = false, sftRunning = false, replying = false;

function updateButtons(): void {
  $<HTMLButtonElement>('sft-start').disabled = !hasModel || running;
  $<HTMLButtonElement>('chat-send').disabled = !chatReady || running || replying;
  $<HTMLButtonElement>('chat-stop').disabled = !replying;
  $<HTMLButtonElement>('start').disabled = !backendReady;
  $<HTMLButtonElement>('pause').disabled = !running;
  $<HTMLButtonElement>('resume').disabled = !hasModel || running || finished;
  $<HTMLButtonElement>('reset').disabled = !hasModel;
  $<HTMLButtonElement>('save').disabled = !hasModel;
  $<HTMLButtonElement>('generate').disabled = !hasModel;
}

const status = (text: string) => ($('status').textContent = text);

// ---------------------------------------------------------------------------------------
// the worker
// ---------------------------------------------------------------------------------------

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
const send = (msg: ToWorker, transfer: Transferable[] = []) => worker.postMessage(msg, transfer);
worker.onerror = (e) => showError('worker', e.message || 'the training worker failed to load');
worker.onmessageerror = () => showError('worker', 'a message from the worker could not be read');

let generateId = 0;

worker.onmessage = (e: MessageEvent<FromWorker>) => {
  const m = e.data;
  switch (m.type) {
    case 'backend': {
      backendReady = true;
      $('backend-name').textContent = m.name;
      $('backend-reason').textContent = m.name === 'webgpu' ? ` — ${m.adapter} (${m.reason})` : ` — ${m.reason}`;
      $('backend-threads').textContent = m.name === 'webgpu' ? '' : `, ${m.threads} thread${m.threads === 1 ? '' : 's'}`;
      // the threads setting applies to the wasm backend only; elsewhere it shows the 1 thread in use
      $<HTMLInputElement>('threads').value = String(m.threads);
      $<HTMLInputElement>('threads').disabled = m.name !== 'wasm';
      $('backend-banner').className = `banner ${m.name}`;
      $('mem-label').textContent = m.name === 'webgpu' ? 'GPU memory in use' : 'memory in use';
      status('Ready. Press Start to train.');
      updateButtons();
      break;
    }
    case 'status':
      status(m.text);
      break;
    case 'ready': {
      hasModel = true;
      const i = m.info;
      chatReady = i.stage === 'chat';
      if (chatReady && (sftRunning || !m.history)) {
        // SFT has just finished: the pretraining view stays as it was
        sftRunning = false;
        status('Fine-tuned for chat: talk to the model below.');
        updateButtons();
        break;
      }
      if (chatReady && m.history) {
        // a fine-tuned checkpoint: its history is the SFT run's
        sftHistory = { train: [...m.history.train], val: [...m.history.val], samples: [] };
        $('sft-step').textContent = String(m.history.train.at(-1)?.[0] ?? 0);
        drawSftChart();
        $('model-info').textContent = `${i.preset}: ${fmtCount(i.params)} parameters, vocabulary ${i.vocab}; fine-tuned for chat`;
        $('params').textContent = fmtCount(i.params);
        status('Fine-tuned checkpoint loaded: talk to it below.');
        updateButtons();
        break;
      }
      $('params').textContent = fmtCount(i.params);
      $('steps-total').textContent = `/ ${i.steps}`;
      $('unigram').textContent = Number.isFinite(i.unigram) ? `unigram ${i.unigram.toFixed(2)}` : '';
      $('model-info').textContent = `${i.preset}: ${fmtCount(i.params)} parameters, vocabulary ${i.vocab}; ` +
        `${fmtCount(i.trainTokens)} training tokens from ${i.dataName}` + (i.step > 0 ? `; restored at step ${i.step}` : '');
      status(i.step > 0 ? 'Checkpoint loaded: prompt it, or Resume training.' : 'Training…');
      setForm(i.settings);
      $('step').textContent = String(i.step);
      if (m.history) restoreView({ train: [...m.history.train], val: [...m.history.val], samples: [...m.history.samples] });
      updateButtons();
      break;
    }
    case 'step':
      history.train.push([m.step, m.loss]);
      $('step').textContent = String(m.step);
      $('loss').textContent = fmtLoss(m.loss);
      $('tps').textContent = fmtCount(Math.round(m.tokensPerSecond));
      $('mem').textContent = fmtBytes(m.memoryBytes);
      // jobs the wasm helper threads ran so far (tests read it: threads that never get work would be a silent 1-thread run)
      document.body.dataset.helperJobs = String(m.helperJobs);
      drawChart();
      break;
    case 'val':
      history.val.push([m.step, m.loss]);
      $('val').textContent = `${fmtLoss(m.loss)}`;
      drawChart();
      break;
    case 'sample':
      history.samples.push({ step: m.step, text: m.text });
      showSample(m.step, m.text);
      break;
    case 'state':
      running = m.running;
      finished = m.finished;
      if (!m.running && hasModel && !sftRunning) status(finished ? 'Finished. Prompt the model, fine-tune it for chat, or download the checkpoint.' : 'Paused.');
      if (!m.running && sftRunning && !finished) status('Fine-tuning paused.');
      if (m.running) status(sftRunning ? 'Fine-tuning for chat…' : 'Training…');
      updateButtons();
      break;
    case 'generated':
      if (m.id === generateId) $('generated').textContent = m.text;
      $<HTMLButtonElement>('generate').disabled = !hasModel;
      break;
    case 'checkpoint':
      download(m.bytes, `minichat-step${m.step}.safetensors`);
      break;
    case 'saved':
      // count the saves that reached IndexedDB (tests wait on it before reloading the page)
      document.body.dataset.autosaves = String(Number(document.body.dataset.autosaves ?? 0) + 1);
      break;
    case 'sft-ready':
      $('sft-info').textContent = `fine-tuning on ${m.summary}`;
      $('sft-steps-total').textContent = `/ ${m.steps}`;
      break;
    case 'sft-step':
      sftHistory.train.push([m.step, m.loss]);
      $('sft-step').textContent = String(m.step);
      $('sft-loss').textContent = fmtLoss(m.loss);
      $('sft-tps').textContent = fmtCount(Math.round(m.tokensPerSecond));
      drawSftChart();
      break;
    case 'sft-val':
      sftHistory.val.push([m.step, m.loss]);
      $('sft-val').textContent = fmtLoss(m.loss);
      drawSftChart();
      break;
    case 'chat-delta':
      if (reply && m.id === chatId) reply.add(m.delta, m.part);
      break;
    case 'chat-done':
      if (reply && m.id === chatId) {
        reply.done(m.finishReason);
        if (m.parts.length) messages.push({ role: 'assistant', content: m.parts });
        reply = null;
      }
      replying = false;
      updateButtons();
      break;
    case 'error':
      showError(m.where, m.message);
      if (m.where === 'chat') {
        replying = false;
        reply?.done('stopped');
        reply = null;
      }
      if (m.where === 'sft' || m.where === 'fine-tuning') {
        sftRunning = false;
        running = false;
        status('Fine-tuning stopped: see the error above.');
      }
      if (m.where === 'generate') $<HTMLButtonElement>('generate').disabled = !hasModel;
      if (m.where === 'start' || m.where === 'load') {
        running = false; // the run never began
        status(`Could not ${m.where === 'start' ? 'start' : 'load'}: see the error above.`);
      }
      if (m.fatal) {
        running = false;
        hasModel = false;
        backendReady = false;
        status('Stopped: see the error above.');
      }
      updateButtons();
      break;
  }
};

function download(bytes: ArrayBuffer, name: string): void {
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

$('start').onclick = () => {
  let settings: Settings;
  try {
    settings = readForm();
  } catch (e) {
    showError('settings', (e as Error).message);
    return;
  }
  resetView();
  $('model-info').textContent = '';
  hasModel = false;
  running = true;
  updateButtons();
  status('Preparing data…');
  let threads: number | undefined;
  try {
    threads = readThreads();
  } catch (e) {
    showError('settings', (e as Error).message);
    return;
  }
  send({ type: 'start', settings, data, threads });
};
$('pause').onclick = () => send({ type: 'pause' });
$('resume').onclick = () => send({ type: 'resume' });
$('reset').onclick = () => {
  send({ type: 'reset' });
  hasModel = false;
  chatReady = false;
  resetView();
  $('params').textContent = '–';
  $('model-info').textContent = '';
  status('Reset. Press Start to train.');
  clearLastRun().catch(() => {});
  updateButtons();
};
$('save').onclick = () => send({ type: 'save' });
$<HTMLInputElement>('load').onchange = async (e) => {
  const input = e.target as HTMLInputElement;
  const f = input.files?.[0];
  input.value = '';
  if (!f) return;
  resetView();
  status(`Loading ${f.name}…`);
  const bytes = await f.arrayBuffer();
  send({ type: 'load', bytes, name: f.name, data }, [bytes]);
};
$('prompt-form').onsubmit = (e) => {
  e.preventDefault();
  generateId++;
  $('generated').textContent = 'generating…';
  $<HTMLButtonElement>('generate').disabled = true;
  send({ type: 'generate', id: generateId, prompt: $<HTMLInputElement>('prompt').value, maxTokens: GEN_TOKENS, temperature: 0.8 });
};

// ---------------------------------------------------------------------------------------
// fine-tuning for chat, and the chat
// ---------------------------------------------------------------------------------------

/** The SFT form: spec field → input id (also the URL query's name). */
const SFT_INPUTS = { steps: 'sftSteps', lr: 'sftLr', batchSize: 'sftBatchSize', seqLen: 'sftSeqLen', builtinExamples: 'sftExamples' } as const;

function initSftForm(): void {
  for (const [k, id] of Object.entries(SFT_INPUTS) as [keyof typeof SFT_INPUTS, string][]) {
    $<HTMLInputElement>(id).value = query.get(id) ?? String(DEFAULT_SFT_SETTINGS[k]);
  }
}

function readSftForm(): SftSettings {
  const s: SftSettings = { ...DEFAULT_SFT_SETTINGS };
  for (const [k, id] of Object.entries(SFT_INPUTS) as [keyof typeof SFT_INPUTS, string][]) {
    const v = Number($<HTMLInputElement>(id).value);
    const ok = k === 'lr' ? v >= 0 : k === 'seqLen' ? Number.isInteger(v) && v >= 0 : Number.isInteger(v) && v > 0;
    if (!ok || $<HTMLInputElement>(id).value.trim() === '') throw new Error(`${id}: ${k === 'lr' ? 'a number >= 0' : k === 'seqLen' ? 'an integer >= 0' : 'a positive integer'} is needed, got "${$<HTMLInputElement>(id).value}"`);
    s[k] = v;
  }
  return s;
}

$('sft-start').onclick = () => {
  let settings: SftSettings;
  try {
    settings = readSftForm();
  } catch (e) {
    showError('fine-tune settings', (e as Error).message);
    return;
  }
  sftHistory = { train: [], val: [], samples: [] };
  for (const id of ['sft-loss', 'sft-val', 'sft-tps']) $(id).textContent = '–';
  $('sft-step').textContent = '0';
  drawSftChart();
  sftRunning = true;
  running = true;
  chatReady = false;
  updateButtons();
  status('Fine-tuning: preparing the chat data…');
  send({ type: 'sft', settings });
};

// absent, the worker uses the chat defaults of `minichat chat` and `serve` (CHAT_DEFAULTS in
// src/serve/chat-model.ts: 256 tokens or half the model's context, temperature 0.7)
const queryNumber = (k: string) => (query.has(k) ? Number(query.get(k)) : undefined);
const CHAT_TOKENS = queryNumber('chatTokens');
const CHAT_TEMPERATURE = queryNumber('chatTemperature');
let messages: Message[] = [];
let chatId = 0;

/** The assistant bubble being streamed into: text as text, tool calls and results in a box. */
class ReplyView {
  readonly el = document.createElement('div');
  private box: HTMLElement | null = null; // the open tool box (a call, then its result)
  private last: AssistantPart['type'] | null = null;
  deltas = 0;
  constructor() {
    this.el.className = 'msg assistant streaming';
    this.el.dataset.testid = 'chat-reply';
    $('chat-log').append(this.el);
  }
  add(delta: string, part: AssistantPart['type']): void {
    this.deltas++;
    this.el.dataset.deltas = String(this.deltas);
    if (part === 'text') {
      if (this.last !== 'text') this.el.append(document.createTextNode(''));
      (this.el.lastChild as Text).appendData(delta);
    } else {
      if (part === 'tool_call' && this.last !== 'tool_call') {
        this.box = document.createElement('code');
        this.box.className = 'tool';
        this.box.dataset.testid = 'tool-call';
        this.el.append(this.box);
      }
      if (part === 'tool_result' && this.last !== 'tool_result') this.box?.append(document.createTextNode(' → '));
      this.box?.append(document.createTextNode(delta));
    }
    this.last = part;
    $('chat-log').scrollTop = $('chat-log').scrollHeight;
  }
  done(finish: string): void {
    this.el.classList.remove('streaming');
    this.el.dataset.done = finish;
    if (!this.el.textContent) this.el.textContent = finish === 'stopped' ? '(stopped)' : '(an empty reply)';
  }
}
let reply: ReplyView | null = null;

$('chat-form').onsubmit = (e) => {
  e.preventDefault();
  const text = $<HTMLInputElement>('chat-input').value.trim();
  if (!text || !chatReady || replying) return;
  $<HTMLInputElement>('chat-input').value = '';
  messages.push({ role: 'user', content: text });
  const u = document.createElement('div');
  u.className = 'msg user';
  u.textContent = text;
  $('chat-log').append(u);
  chatId++;
  reply = new ReplyView();
  replying = true;
  updateButtons();
  send({ type: 'chat', id: chatId, messages, maxTokens: CHAT_TOKENS, temperature: CHAT_TEMPERATURE });
};
$('chat-stop').onclick = () => send({ type: 'chat-stop', id: chatId });
$('chat-new').onclick = () => {
  if (replying) send({ type: 'chat-stop', id: chatId });
  messages = [];
  $('chat-log').replaceChildren();
};

// ---------------------------------------------------------------------------------------
// start-up: pick the backend, then bring back the last run if this browser kept one
// ---------------------------------------------------------------------------------------

async function boot(): Promise<void> {
  initForm();
  initThreads();
  initSftForm();
  updateButtons();
  drawChart();
  const hasGpu = typeof navigator !== 'undefined' && !!(navigator as Navigator & { gpu?: unknown }).gpu;
  // the URL's thread count, checked (a bad one is an error in the panel, and the default runs)
  let threads: number | undefined;
  try {
    threads = query.has('threads') ? parseThreads(query.get('threads')!) : undefined;
  } catch (e) {
    showError('settings', `?${(e as Error).message}`);
  }
  if (query.get('backend') === 'cpu') send({ type: 'init', backend: 'cpu', reason: 'asked for with ?backend=cpu in the address', reference: true });
  else if (query.get('backend') === 'wasm') send({ type: 'init', backend: 'cpu', reason: 'asked for with ?backend=wasm in the address', threads });
  else if (!hasGpu) send({ type: 'init', backend: 'cpu', reason: 'this browser has no WebGPU (navigator.gpu is missing), so training runs on the CPU, more slowly', threads });
  else send({ type: 'init', backend: 'auto', reason: '', threads });

  // the worker reads the last run from IndexedDB itself (it owns the store)
  if (query.get('restore') !== '0') send({ type: 'restore' });
}
void boot();
