// `minichat plan`: what a training step will cost, before starting it (src/train/plan.ts counts
// it; docs/memory.md explains the count).
//
//   minichat plan --preset minimind2 --batch-size 8 --seq-len 512 --memory 8GiB
//   minichat plan --preset tiny --recompute --ce-chunk 256 --measure     # and run one real step
//
// The model and batch flags are pretrain's own (generated from the run spec, same names and
// defaults), so a plan line becomes a training line by changing one word; --spec reads a run's
// spec.json (flags typed on the command line win).
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { MAX_PAGES } from '../backend/wasm-memory.ts';
import { presetConfig } from '../model/gpt.ts';
import { configFor } from '../train/run.ts';
import { type RunSpec, gradAccumOf, pickSpec, validateSpec } from '../train/spec.ts';
import {
  type MemoryPlan, PLAN_BACKENDS, type PlanBackend, type PlanInput, formatBytes, formatFlops, largestBatch, measurePeak, parseBytes, planMemory,
} from '../train/plan.ts';
import { UserError } from '../util/errors.ts';
import { oneOf, selectBackend } from './common.ts';
import { specFlags } from './pretrain.ts';

/** The run-spec fields that change a step's memory or FLOPs. */
const PLAN_KEYS: (keyof RunSpec)[] = ['preset', 'qkNorm', 'vocabSize', 'batchSize', 'seqLen', 'gradAccum', 'tokensPerStep', 'optimizer', 'weightDecay', 'gradClip', 'recompute', 'ceChunk'];

/** Many WebGPU adapters bind at most this much of one buffer to a shader (maxStorageBufferBindingSize). */
const WEBGPU_BINDING = 128 * 2 ** 20;
const WASM_MAX = MAX_PAGES * 65536;

interface Flags extends Partial<RunSpec> {
  backend: PlanBackend;
  memory?: string;
  spec?: string;
  measure: boolean;
  json: boolean;
}

/** The plan's input from the flags (and --spec FILE under them). */
async function planInput(f: Flags, cmd: Command): Promise<{ spec: RunSpec; input: PlanInput }> {
  let saved: Partial<RunSpec> = {};
  if (f.spec) {
    let text: string;
    try {
      text = await readFile(f.spec, 'utf8');
    } catch {
      throw new UserError(`--spec: cannot read ${f.spec}`);
    }
    try {
      saved = pickSpec(JSON.parse(text) as Record<string, unknown>);
    } catch {
      throw new UserError(`--spec: ${f.spec} is not JSON (a run's spec.json)`);
    }
  }
  const typed = Object.fromEntries(PLAN_KEYS.filter((k) => !f.spec || cmd.getOptionValueSource(k) === 'cli').map((k) => [k, f[k]]));
  const spec = validateSpec({ ...saved, ...typed }, f.spec ? `plan (${f.spec})` : '');
  const config = configFor(spec, spec.vocabSize || presetConfig(spec.preset).vocabSize);
  const input: PlanInput = {
    config, batchSize: spec.batchSize, seqLen: spec.seqLen, gradAccum: gradAccumOf(spec), optimizer: spec.optimizer, backend: f.backend,
    recompute: spec.recompute, ceChunk: spec.ceChunk, gradClip: spec.gradClip, weightDecay: spec.weightDecay,
  };
  return { spec, input };
}

/** Warnings about the backend's own limits at this plan. */
function warnings(p: MemoryPlan, backend: PlanBackend): string[] {
  const w: string[] = [];
  if (backend === 'wasm' && p.peak > WASM_MAX) {
    w.push(`the wasm backend's memory holds at most ${formatBytes(WASM_MAX)}: lower --batch-size, add --recompute / --ce-chunk, or use --backend cpu`);
  }
  if (backend === 'webgpu' && p.largestTensor.bytes > WEBGPU_BINDING) {
    w.push(`its largest tensor (${p.largestTensor.what}, ${formatBytes(p.largestTensor.bytes)}) is above the 128 MiB many WebGPU adapters can bind at once${p.largestTensor.what.startsWith('logits') ? ': --ce-chunk keeps the logits smaller' : ''}`);
  }
  return w;
}

export async function runPlan(f: Flags, cmd: Command): Promise<void> {
  const sizes = f.memory === undefined ? [] : f.memory.split(',').map((m) => m.trim());
  const budgets = sizes.map((m) => parseBytes(m));
  const { spec, input } = await planInput(f, cmd);
  const est = planMemory(input);
  const fits = budgets.map((b, i) => ({ memory: sizes[i], bytes: b, largestBatch: largestBatch(input, b) }));
  let measured: { peak: number; seconds: number } | undefined;
  if (f.measure) {
    process.stderr.write(`measuring one training step of ${spec.preset} at ${input.batchSize} x ${input.seqLen} on ${f.backend}…\n`);
    measured = await measurePeak(input, await selectBackend(f.backend));
  }
  const warn = warnings(est, f.backend);
  if (f.json) {
    const { config, ...rest } = input;
    console.log(JSON.stringify({
      preset: spec.preset, config, ...rest, tokensPerStep: est.tokensPerStep, estimate: est,
      ...(fits.length ? { fits } : {}),
      ...(measured ? { measured: { peak: measured.peak, seconds: measured.seconds, estimateOverMeasured: est.peak / measured.peak } } : {}),
      warnings: warn,
    }));
    return;
  }
  const row = (k: string, v: string) => console.log(`  ${k.padEnd(18)} ${v}`);
  const opts = [input.recompute ? 'recompute' : '', input.ceChunk ? `ce-chunk ${input.ceChunk}` : ''].filter(Boolean).join(', ') || 'none';
  console.log(
    `plan: ${spec.preset}, ${(est.params / 1e6).toFixed(2)}M parameters, B ${input.batchSize} x T ${input.seqLen} x ${input.gradAccum} micro-batch${input.gradAccum > 1 ? 'es' : ''} ` +
      `(${est.tokensPerStep} tokens per step), ${input.optimizer}, backend ${f.backend}, memory options: ${opts}`,
  );
  row('weights', formatBytes(est.weights));
  row('gradients', formatBytes(est.grads));
  row('optimizer state', formatBytes(est.optimizerState));
  row('activations', `${formatBytes(est.activations)} (${formatBytes(est.activationsPerBlock)} per block${input.recompute ? ', one block at a time' : ''})`);
  row('backward working', `${formatBytes(est.backwardWork)} (gradients so far + in flight)`);
  row('optimizer working', `${formatBytes(est.optimizerWork)} (gradients + the step's temporaries)`);
  const vs = measured ? `; measured ${formatBytes(measured.peak)} (estimate ${(((est.peak - measured.peak) / measured.peak) * 100).toFixed(1)}% off, step ${measured.seconds.toFixed(1)}s)` : '';
  row('peak', `${formatBytes(est.peak)} (during the ${est.peakAt})${vs}`);
  row('largest tensor', `${formatBytes(est.largestTensor.bytes)} (${est.largestTensor.what})`);
  row('compute', `${formatFlops(est.flopsPerToken)} per token, ${formatFlops(est.flopsPerStep)} per step` +
    (est.optimizerFlopsPerStep ? `, + ${formatFlops(est.optimizerFlopsPerStep)} per optimizer step (Muon's Newton–Schulz, whatever the batch)` : ''));
  for (const { memory, largestBatch: fit } of fits) {
    row(`fits ${memory}`, fit ? `up to --batch-size ${fit} at --seq-len ${input.seqLen} (peak ${formatBytes(planMemory({ ...input, batchSize: fit }).peak)})` : `no: not even --batch-size 1 at --seq-len ${input.seqLen}`);
  }
  for (const w of warn) console.log(`warning: ${w}`);
}

export function registerPlan(program: Command): void {
  const cmd = specFlags(program.command('plan').description('what a training step costs: memory (weights, gradients, optimizer state, activations, peak), FLOPs, the largest batch that fits'), {}, PLAN_KEYS)
    .option('--backend <name>', `where it would run: ${PLAN_BACKENDS.join(', ')} (what runs fused, and wasm's matmul scratch)`, oneOf(...PLAN_BACKENDS), 'wasm')
    .option('--memory <sizes>', 'also the largest --batch-size whose peak fits this much memory: 8GB (10^9 bytes), 8GiB (2^30), 512MB, ...; a comma list for several')
    .option('--spec <file>', "plan a run's spec.json (flags typed here override it)")
    .option('--measure', 'also run one real training step on --backend and report its measured peak beside the estimate', false)
    .option('--json', 'print one JSON object', false);
  cmd.action(async (f: Flags) => {
    await runPlan(f, cmd);
  });
}
