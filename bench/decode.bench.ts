// Batched decode throughput (`npm run bench -- decode`): tokens/s of the generation engine
// (src/model/engine.ts Engine.generate) on the CPU backend with the WASM SIMD matmul, for
// 1, 8 and 32 rows on the tiny and small presets, and the same model with a KV cache in
// PyTorch (bench/torch_decode.py, best of 1 and 2 threads) in the same run when python3 can
// import torch.
//
// Each case: `rows` different random prompts of 16 tokens (equal lengths: no padding), 64 new
// tokens per row, temperature 1 (every row samples; no stop token, so every row runs the full
// 64). Random weights: throughput does not depend on them. Reported: the prefill time (first
// token), decode tokens/s (rows × 63 tokens after the first, over the time after the first)
// and overall tokens/s (rows × 64 over the whole call), best of `trials` after one warm-up.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpu } from '../src/backend/cpu.ts';
import { initWasmMatmul } from '../src/backend/wasm-matmul.ts';
import { Engine } from '../src/model/engine.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import * as T from '../src/tensor/index.ts';

const PROMPT = 16, NEW = 64;
const CASES: { preset: string; rows: number }[] = [];
for (const preset of ['tiny', 'small']) for (const rows of [1, 8, 32]) CASES.push({ preset, rows });

export interface DecodeRow {
  impl: string; // 'minichat cpu' | 'torch cpu'
  preset: string;
  rows: number;
  prompt: number;
  new: number;
  threads?: number; // torch: the better of 1 and 2
  prefill_ms: number;
  decode_tokens_per_sec: number;
  tokens_per_sec: number;
}

async function timeEngine(model: GPT, rows: number, maxTokens: number, seed: number): Promise<Omit<DecodeRow, 'impl' | 'preset'>> {
  const rng = new T.Rng(seed);
  const prompts = Array.from({ length: rows }, () => Array.from({ length: PROMPT }, () => rng.int(model.config.vocabSize)));
  let tFirst = 0;
  const t0 = performance.now();
  await new Engine(model).generate(prompts, {
    maxTokens, temperature: 1, topK: 0, topP: 1, seed, stop: [],
    onToken: (row) => { if (row === 0 && tFirst === 0) tFirst = performance.now(); },
  });
  const t2 = performance.now();
  return {
    rows, prompt: PROMPT, new: maxTokens,
    prefill_ms: tFirst - t0,
    decode_tokens_per_sec: (rows * (maxTokens - 1)) / ((t2 - tFirst) / 1000),
    tokens_per_sec: (rows * maxTokens) / ((t2 - t0) / 1000),
  };
}

function torchRows(): { rows: DecodeRow[]; note: string } {
  const here = dirname(fileURLToPath(import.meta.url));
  const py = '/usr/bin/python3';
  const probe = spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) return { rows: [], note: 'torch not importable: skipped' };
  const spec = { cases: CASES.map((c) => ({ ...c, prompt: PROMPT, new: NEW })), trials: 2 };
  const r = spawnSync(py, [join(here, 'torch_decode.py'), JSON.stringify(spec)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) return { rows: [], note: `torch_decode.py failed (exit ${r.status})` };
  const out = JSON.parse(r.stdout) as { torch: string; rows: Omit<DecodeRow, 'impl'>[] };
  return { rows: out.rows.map((x) => ({ impl: 'torch cpu', ...x })), note: `torch ${out.torch}` };
}

export default {
  name: 'decode',
  async run(): Promise<Record<string, unknown>> {
    const wasm = await initWasmMatmul();
    console.log(`cpu: WASM SIMD matmul ${wasm ? 'on' : 'unavailable (JS kernel)'}`);
    const rows: DecodeRow[] = [];
    for (const preset of ['tiny', 'small']) {
      const model = new GPT(presetConfig(preset), new T.Rng(0), cpu);
      await timeEngine(model, 2, 4, 99); // warm-up (WASM instantiation, first allocations)
      for (const c of CASES.filter((x) => x.preset === preset)) {
        let best: DecodeRow | null = null;
        for (let trial = 0; trial < 2; trial++) {
          const r = { impl: 'minichat cpu', preset, ...(await timeEngine(model, c.rows, NEW, trial)) };
          if (!best || r.tokens_per_sec > best.tokens_per_sec) best = r;
        }
        rows.push(best!);
        console.log(`minichat ${preset} rows=${c.rows}: ${best!.tokens_per_sec.toFixed(0)} tok/s`);
      }
      model.dispose();
    }
    const torch = torchRows();
    rows.push(...torch.rows);
    console.log(table(rows));
    return { rows, torch: torch.note };
  },
};

/** The markdown table for bench/RESULTS.md: minichat and torch side by side per case. */
function table(rows: DecodeRow[]): string {
  const lines = [
    '| preset | rows | minichat prefill ms | minichat decode tok/s | minichat tok/s | torch prefill ms | torch decode tok/s | torch tok/s (threads) | torch / minichat |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const c of CASES) {
    const m = rows.find((r) => r.impl === 'minichat cpu' && r.preset === c.preset && r.rows === c.rows);
    const t = rows.find((r) => r.impl === 'torch cpu' && r.preset === c.preset && r.rows === c.rows);
    const f = (x: number | undefined, d = 0) => (x === undefined ? '—' : x.toFixed(d));
    lines.push(`| ${c.preset} | ${c.rows} | ${f(m?.prefill_ms)} | ${f(m?.decode_tokens_per_sec)} | ${f(m?.tokens_per_sec)} | ${f(t?.prefill_ms)} | ${f(t?.decode_tokens_per_sec)} | ${t ? `${f(t.tokens_per_sec)} (${t.threads})` : '—'} | ${m && t ? (t.tokens_per_sec / m.tokens_per_sec).toFixed(1) + '×' : '—'} |`);
  }
  return lines.join('\n');
}
