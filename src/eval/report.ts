// The report card: one markdown page that says what a run did, on what machine, how long
// each stage took, what it reached, and what the model can do — like nanochat's report.md.
//
//   minichat report --run runs/speedrun        → runs/speedrun/report.md (+ report/*.svg)
//
// What it reads (every stage writes these into its own directory, see train/run.ts):
//   <stage>/spec.json or options.json   the stage's settings
//   <stage>/metrics.jsonl    one JSON record per line: {step, loss}, {step, val_loss}, {step, sample}, ...
//   <stage>/summary.json     {stage, seconds, metrics: {...}} written when the stage ends
//   eval.json                the eval table (eval/tasks-run.ts): one row per (model, task)
// A run directory is either one stage (it holds metrics.jsonl itself) or a pipeline whose
// stages are its subdirectories, in the order given by pipeline.json (else alphabetical).
// Node-only (reads files); the page shows its own charts.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem, type as osType, release } from 'node:os';
import { basename, join } from 'node:path';
import { UserError } from '../util/errors.ts';
import { lineChartSvg } from './plot.ts';

export interface StageSummary {
  stage: string; // 'pretrain', 'sft', 'rl', ...
  seconds: number; // wall time of the stage
  metrics: Record<string, number | string>; // what it reached (val_loss, val_bpb, ...)
  samples?: string[];
}

export interface EvalRow {
  model: string; // which checkpoint: 'base', 'sft', ...
  task: string; // 'story-qa', 'arithmetic', 'arithmetic (tool)', ...
  accuracy: number; // in [0, 1]
  baseline: number; // chance accuracy of the task
  n: number; // problems scored
}

export interface EvalTable {
  rows: EvalRow[];
  /** per model: mean over its tasks of (acc − baseline) / (1 − baseline), nanochat's ChatCORE idea */
  summary: Record<string, number>;
}

interface Stage {
  name: string;
  dir: string;
  options: Record<string, unknown>;
  summary: StageSummary | null;
  metrics: Record<string, unknown>[];
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

function readMetrics(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new UserError(`${path}:${i + 1}: not a JSON record`);
      }
    });
}

function loadStage(dir: string, name: string): Stage {
  return {
    name,
    dir,
    // spec.json (pretraining's run spec) or options.json (the other stages)
    options: ['spec.json', 'options.json'].map((f) => join(dir, f)).filter(existsSync).map((f) => readJson(f) as Record<string, unknown>)[0] ?? {},
    summary: existsSync(join(dir, 'summary.json')) ? (readJson(join(dir, 'summary.json')) as StageSummary) : null,
    metrics: readMetrics(join(dir, 'metrics.jsonl')),
  };
}

/** The stages of a run directory (see the header). */
export function findStages(runDir: string): Stage[] {
  if (!existsSync(runDir) || !statSync(runDir).isDirectory()) throw new UserError(`--run ${runDir}: no such run directory`);
  if (existsSync(join(runDir, 'metrics.jsonl'))) return [loadStage(runDir, basename(runDir))];
  const order = existsSync(join(runDir, 'pipeline.json')) ? ((readJson(join(runDir, 'pipeline.json')) as { stages: string[] }).stages) : null;
  const names = order ?? readdirSync(runDir).filter((d) => existsSync(join(runDir, d, 'metrics.jsonl'))).sort();
  const stages = names.filter((d) => existsSync(join(runDir, d, 'metrics.jsonl'))).map((d) => loadStage(join(runDir, d), d));
  if (stages.length === 0) throw new UserError(`--run ${runDir}: no stage found (a stage directory holds metrics.jsonl)`);
  return stages;
}

const fmt = (v: unknown): string => {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(4);
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
};
const duration = (s: number) => (s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${s.toFixed(1)} s`);
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** Write `<runDir>/report.md` and its charts; returns the report's path. */
export async function writeReport(runDir: string, o: { title?: string } = {}): Promise<string> {
  const stages = findStages(runDir);
  const evalPath = join(runDir, 'eval.json');
  const evals = existsSync(evalPath) ? (readJson(evalPath) as EvalTable) : null;
  const figDir = join(runDir, 'report');
  await mkdir(figDir, { recursive: true });
  const md: string[] = [];
  md.push(`# ${o.title ?? `minichat report: ${basename(runDir)}`}`, '');
  md.push(`Written ${new Date().toISOString()} by \`minichat report --run ${runDir}\`.`, '');

  // ---- the machine ----
  const cpu = cpus();
  const backends = [...new Set(stages.map((s) => s.options.backend).filter(Boolean))].join(', ') || 'unknown';
  md.push('## Machine', '');
  md.push('| | |', '|---|---|');
  md.push(`| CPU | ${cell(cpu[0]?.model ?? 'unknown')} × ${cpu.length} |`);
  md.push(`| memory | ${(totalmem() / 2 ** 30).toFixed(1)} GiB |`);
  md.push(`| OS | ${osType()} ${release()} |`);
  md.push(`| Node.js | ${process.version} |`);
  md.push(`| backend | ${cell(String(backends))} |`, '');

  // ---- stages: wall time and what each reached ----
  md.push('## Stages', '');
  md.push('| stage | wall time | results |', '|---|---:|---|');
  let total = 0;
  for (const s of stages) {
    const secs = s.summary?.seconds ?? NaN;
    if (Number.isFinite(secs)) total += secs;
    const res = s.summary ? Object.entries(s.summary.metrics).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') : '(no summary: the stage did not finish)';
    md.push(`| ${s.name} | ${Number.isFinite(secs) ? duration(secs) : '—'} | ${cell(res)} |`);
  }
  md.push(`| **total** | **${duration(total)}** | |`, '');

  // ---- loss curves ----
  md.push('## Loss curves', '');
  for (const s of stages) {
    const train = s.metrics.filter((m) => typeof m.loss === 'number' && typeof m.step === 'number').map((m) => [m.step, m.loss] as [number, number]);
    const val = s.metrics.filter((m) => typeof m.val_loss === 'number').map((m) => [m.step, m.val_loss] as [number, number]);
    if (train.length < 2) continue;
    const series = [{ name: 'train', points: train, color: '#1f77b4' }];
    if (val.length) series.push({ name: 'validation', points: val, color: '#d62728' });
    const file = `loss-${s.name}.svg`;
    await writeFile(join(figDir, file), lineChartSvg(series, { title: `${s.name}: loss`, xLabel: 'step', yLabel: 'loss (nats/token)' }));
    md.push(`![${s.name} loss](report/${file})`, '');
  }

  // ---- evaluation ----
  if (evals && evals.rows.length) {
    md.push('## Evaluation', '');
    const models = [...new Set(evals.rows.map((r) => r.model))];
    const tasks = [...new Set(evals.rows.map((r) => r.task))];
    md.push(`| task | chance | ${models.join(' | ')} |`, `|---|---:|${models.map(() => '---:|').join('')}`);
    for (const t of tasks) {
      const base = evals.rows.find((r) => r.task === t)!.baseline;
      const accs = models.map((m) => {
        const r = evals.rows.find((x) => x.task === t && x.model === m);
        return r && r.n > 0 ? `${(100 * r.accuracy).toFixed(1)}% (n=${r.n})` : '—';
      });
      md.push(`| ${t} | ${(100 * base).toFixed(1)}% | ${accs.join(' | ')} |`);
    }
    md.push(`| **centered score** (mean of (acc − chance)/(1 − chance)) | | ${models.map((m) => (evals.summary[m] ?? NaN).toFixed(3)).join(' | ')} |`, '');
  }

  // ---- settings ----
  md.push('## Settings', '');
  for (const s of stages) {
    const entries = Object.entries(s.options).filter(([, v]) => v !== undefined && typeof v !== 'object');
    if (!entries.length) continue;
    md.push(`**${s.name}**: ${entries.map(([k, v]) => `\`${k}\`=${cell(fmt(v))}`).join(', ')}`, '');
  }

  // ---- samples ----
  const withSamples = stages.filter((s) => s.summary?.samples?.length || s.metrics.some((m) => typeof m.sample === 'string'));
  if (withSamples.length) {
    md.push('## Samples', '');
    for (const s of withSamples) {
      const samples = s.summary?.samples?.length ? s.summary.samples : s.metrics.filter((m) => typeof m.sample === 'string').slice(-2).map((m) => m.sample as string);
      md.push(`**${s.name}**`, '');
      for (const t of samples.slice(-3)) md.push('```text', t.trim(), '```', '');
    }
  }
  const path = join(runDir, 'report.md');
  await writeFile(path, md.join('\n'));
  return path;
}
