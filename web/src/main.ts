// The demo page: controls, the backend banner, the live view (chart, numbers, samples), the
// prompt box, save / load, and the IndexedDB autosave. It holds no model: all of that lives in
// the training worker (worker.ts), which this file talks to with the messages in protocol.ts.
//
// Settings come from the form, whose initial values come from the URL query, so a test (or a
// shared link) can ask for a tiny run: ?steps=20&batchSize=2&seqLen=32&syntheticStories=200&vocabSize=300
// (the run spec's names, src/train/spec.ts; any Settings field in protocol.ts works). The form
// is checked by the spec's own validation. ?backend=cpu forces the CPU backend; ?restore=0
// skips bringing back the last run from IndexedDB; ?genTokens=N sets the prompt box's length.
//
// Errors: every failure (a worker error, a bad file, a lost GPU, an exception on this page)
// lands in the red panel at the top, never only in the console.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { presetConfig } from '../../src/model/gpt.ts';
import { checkField, flagName } from '../../src/train/spec.ts';
import { DEFAULT_SETTINGS, type DataSource, type FromWorker, type History, type Settings, type ToWorker } from './protocol.ts';
import { clearLastRun } from './store.ts';

const $ = <E extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as E;
const query = new URLSearchParams(location.search);

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
// settings: URL query → form → Settings
// ---------------------------------------------------------------------------------------

/** The number inputs: spec field → the form's input id. */
const NUMBER_INPUTS = {
  steps: 'steps', lr: 'lr', batchSize: 'batch', seqLen: 'seq', vocabSize: 'vocab', syntheticStories: 'stories',
  sampleEvery: 'sampleEvery', sampleTokens: 'sampleTokens', evalEvery: 'evalEvery',
} as const satisfies Partial<Record<keyof Settings, string>>;
type NumberField = keyof typeof NUMBER_INPUTS;
/** Tokens the prompt box generates (?genTokens=N: tests on a slow GPU ask for fewer). */
const GEN_TOKENS = Number(query.get('genTokens') ?? 64);

function initForm(): void {
  const s: Settings = { ...DEFAULT_SETTINGS };
  for (const k of Object.keys(NUMBER_INPUTS) as NumberField[]) if (query.has(k)) s[k] = Number(query.get(k));
  if (query.has('preset')) s.preset = query.get('preset')!;
  if (query.has('optimizer')) s.optimizer = query.get('optimizer') as Settings['optimizer'];
  if (query.has('qkNorm')) s.qkNorm = query.get('qkNorm') !== '0' && query.get('qkNorm') !== 'false';
  if (query.has('seed')) s.seed = Number(query.get('seed'));
  setForm(s);
}

/** The seed is not in the form: it comes from the URL query or a loaded checkpoint. */
let seed = DEFAULT_SETTINGS.seed;

function setForm(s: Settings): void {
  for (const [k, id] of Object.entries(NUMBER_INPUTS) as [NumberField, string][]) $<HTMLInputElement>(id).value = String(s[k]);
  $<HTMLSelectElement>('preset').value = s.preset;
  $<HTMLSelectElement>('optimizer').value = s.optimizer;
  // undefined = the preset's choice: show what that is
  $<HTMLInputElement>('qkNorm').checked = s.qkNorm ?? presetConfig(s.preset).qkNorm;
  seed = s.seed;
}

/** The form as Settings; throws with the spec's message (naming the field) when a value is wrong. */
function readForm(): Settings {
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

function makeChart(): uPlot {
  const el = $('chart');
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
window.addEventListener('resize', () => chart?.setSize({ width: Math.max(300, $('chart').clientWidth), height: 260 }));

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

function updateButtons(): void {
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
      if (!m.running && hasModel) status(finished ? 'Finished. Prompt the model below, or download the checkpoint.' : 'Paused.');
      if (m.running) status('Training…');
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
    case 'error':
      showError(m.where, m.message);
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
  send({ type: 'start', settings, data });
};
$('pause').onclick = () => send({ type: 'pause' });
$('resume').onclick = () => send({ type: 'resume' });
$('reset').onclick = () => {
  send({ type: 'reset' });
  hasModel = false;
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
// start-up: pick the backend, then bring back the last run if this browser kept one
// ---------------------------------------------------------------------------------------

async function boot(): Promise<void> {
  initForm();
  updateButtons();
  drawChart();
  const hasGpu = typeof navigator !== 'undefined' && !!(navigator as Navigator & { gpu?: unknown }).gpu;
  if (query.get('backend') === 'cpu') send({ type: 'init', backend: 'cpu', reason: 'asked for with ?backend=cpu in the address' });
  else if (!hasGpu) send({ type: 'init', backend: 'cpu', reason: 'this browser has no WebGPU (navigator.gpu is missing), so training runs on the CPU, more slowly' });
  else send({ type: 'init', backend: 'auto', reason: '' });

  // the worker reads the last run from IndexedDB itself (it owns the store)
  if (query.get('restore') !== '0') send({ type: 'restore' });
}
void boot();
