// Peak live memory of one RL step (`npm run bench -- rl-memory`): the policy-gradient update
// of a GRPO step on 32 three-digit calculator completions (4 prompts x 8), the setting of
// issue 20, measured with the backends' live-bytes counter (Backend.peakBytes: the most bytes
// live storages held at once). Bytes do not depend on the machine or its load; the seconds
// printed beside them do (and are not the point).
//
// The step is the one src/rl/train.ts runs (RLPolicy.trainStep after the rollout): the tiny
// preset with the RL default LoRA (rank 16, alpha 32, every linear layer), AdamW through the
// Trainer with gradient clipping, the clipped policy loss of src/rl/losses.ts (GRPO: per-
// sequence means), the per-token log-probs of src/model/logprobs.ts in each of its ways:
//   composed       the composed log-softmax + gather at every position (before the fused op)
//   fused          the fused targetLogprobs kernel at every position
//   fused + only   the fused kernel, and the LM head only at the sampled tokens (what RL runs)
// and, for scale, an SFT step on the same tokens (fused cross-entropy on the sampled tokens,
// the logits at every position, as SFT computes them).
//
// The model is randomly initialised (no checkpoint is needed, and bytes do not depend on the
// weights); the tokenizer is the speedrun's (2048 tokens trained on the built-in stories), so
// the prompts have the real length. Two batches:
//   gold replies   each completion is the SFT data's calculator reply to its problem
//                  ("Let me calculate." calc(a*b) -> result, "The answer is ..."), half of
//                  them with a wrong answer so the rewards differ: the length a trained
//                  model's replies have;
//   48 sampled     the 32 completions the engine samples from this random model at
//                  temperature 1, which run to --max-tokens 48 (RL's default): the longest
//                  batch the step can get; rewards alternate 1, 0 within each group.
// Also the rollout's own peak (the engine's KV cache; inference, nothing kept for backward).
import type { Backend } from '../src/backend/backend.ts';
import { cpu } from '../src/backend/cpu.ts';
import { createWasmBackend } from '../src/backend/wasm.ts';
import { DEFAULT_SYNTHETIC_STORIES } from '../src/data/synthetic.ts';
import { chatSuppress } from '../src/eval/suite.ts';
import { Engine, type RowOutput } from '../src/model/engine.ts';
import { GPT, presetConfig } from '../src/model/gpt.ts';
import { LORA_DEFAULTS } from '../src/model/lora.ts';
import { tokenLogprobs, type TokenLogprobsOptions } from '../src/model/logprobs.ts';
import { buildParamGroups } from '../src/optim/index.ts';
import { groupAdvantages } from '../src/rl/advantages.ts';
import { policyLoss } from '../src/rl/losses.ts';
import { type Group, type RLBatch, type RolloutPrompt, packBatch, rollout } from '../src/rl/rollout.ts';
import { preparePolicy } from '../src/rl/train.ts';
import { arithmeticTask, type ArithmeticProblem } from '../src/tasks/index.ts';
import * as T from '../src/tensor/index.ts';
import { SPECIALS, type Tokenizer, renderConversation, renderForCompletion, trainTokenizer } from '../src/tokenizer/index.ts';
import { syntheticData } from '../src/train/run.ts';
import { Trainer } from '../src/train/trainer.ts';

const PROMPTS = 4, G = 8, MAX_TOKENS = 48;
const MB = (b: number) => +(b / 2 ** 20).toFixed(1);

type Variant = 'composed' | 'fused' | 'fused + only' | 'sft step';
const VARIANTS: Variant[] = ['composed', 'fused', 'fused + only', 'sft step'];

/** The gold calculator reply to a problem (the SFT data's format), with `answer` as the final number. */
function goldRow(tok: Tokenizer, prompt: number[], p: ArithmeticProblem, s: number, answer: number): RowOutput {
  const question = `What is ${p.a} ${p.op} ${p.b}?`;
  const preface = ['Let me calculate.', 'I will use the calculator.', 'Let me check.', ''][s % 4];
  const parts = [
    ...(preface ? [{ type: 'text' as const, text: preface }] : []),
    { type: 'tool_call' as const, text: `calc(${p.a}${p.op}${p.b})` },
    { type: 'tool_result' as const, text: String(p.answer) },
    { type: 'text' as const, text: `The answer is ${answer}.` },
  ];
  const r = renderConversation(tok, [{ role: 'user', content: question }, { role: 'assistant', content: parts }]);
  if (r.ids.slice(0, prompt.length).join() !== prompt.join()) throw new Error('internal: the rendered reply does not extend the prompt');
  const tokens = r.ids.slice(prompt.length);
  const forced = r.lossMask.slice(prompt.length).map((m) => m === 0); // the tool result is not trained on
  return { prompt: 0, sample: s, tokens, logprobs: tokens.map(() => NaN), rawLogprobs: tokens.map(() => -Math.log(tok.vocabSize)), forced, finish: 'stop' };
}

/** One optimizer step of `variant` on the batch; the peak live bytes during it. */
async function stepPeak(be: Backend, trainer: Trainer<RLBatch>, b: RLBatch, variant: Variant): Promise<{ peak: number; resident: number; seconds: number }> {
  const lossFn = (m: GPT): T.Tensor => {
    if (variant === 'sft step') {
      const x = new Int32Array(b.N * (b.L - 1)), y = new Int32Array(b.N * (b.L - 1));
      for (let n = 0; n < b.N; n++) {
        for (let t = 0; t < b.L - 1; t++) {
          const i = n * (b.L - 1) + t;
          x[i] = b.ids[n * b.L + t];
          y[i] = b.mask[i] ? b.ids[n * b.L + t + 1] : -1;
        }
      }
      return m.loss(T.tensor(x, [b.N, b.L - 1], { dtype: 'int32', backend: be }), y);
    }
    const o: TokenLogprobsOptions = variant === 'composed' ? { fused: false } : variant === 'fused' ? {} : { only: b.mask };
    const logp = tokenLogprobs(m, b.ids, b.N, b.L, o); // (N, L-1)
    return policyLoss({ logp, oldLogp: b.oldLogp, advantages: b.advantages, mask: b.mask }, { epsLow: 0.2, epsHigh: 0.2, aggregation: 'sequence-mean', beta: 0 }).loss;
  };
  const resident = be.bytesInUse();
  be.resetPeak();
  const t0 = performance.now();
  await trainer.trainStep((m) => lossFn(m));
  const seconds = (performance.now() - t0) / 1000;
  if (be.bytesInUse() !== resident) throw new Error(`rl-memory: ${variant} left ${be.bytesInUse() - resident} bytes live after the step`);
  return { peak: be.peakBytes(), resident, seconds };
}

async function measure(be: Backend, tok: Tokenizer) {
  T.setDefaultBackend(be);
  const rng = new T.Rng(20);
  const model = T.noGrad(() => new GPT(presetConfig('tiny', { vocabSize: tok.vocabSize }), rng));
  preparePolicy(model, { loraRank: LORA_DEFAULTS.rank, loraAlpha: LORA_DEFAULTS.alpha, loraTargets: LORA_DEFAULTS.targets }, rng);
  const groups = buildParamGroups(model.trainableParams(), { kind: 'adamw', lr: 1e-3, weightDecay: 0, schedule: { lr: 1e-3, warmupSteps: 0, totalSteps: 1, warmdownFraction: 0, finalFraction: 1 } });
  let batch: RLBatch | null = null;
  const trainer = new Trainer(model, groups, { next: () => batch! }, { gradAccum: 1, gradClip: 1 });

  // 4 three-digit problems as RL renders them (src/rl/run.ts problemSource)
  const task = arithmeticTask({ digits: 3 });
  const problems = Array.from({ length: PROMPTS }, () => task.sample(rng, 'train') as ArithmeticProblem);
  const prompts: RolloutPrompt[] = problems.map((p) => ({ ids: renderForCompletion(tok, task.prompt(p, { tool: true })), reward: () => 0 }));

  // the rollout of the "48 sampled" batch, with its own peak
  const engine = new Engine(model, { maxRows: Math.max(64, G) });
  be.resetPeak();
  const beforeRollout = be.bytesInUse();
  const stop = [tok.specialId(SPECIALS.assistantEnd), tok.bosId];
  const sampled = await rollout(engine, prompts, G, { maxTokens: MAX_TOKENS, temperature: 1, topK: 0, topP: 1, stop, suppress: chatSuppress(tok), seed: 1 });
  const rolloutPeak = be.peakBytes() - beforeRollout;
  sampled.forEach((g) => (g.rewards = g.rows.map((_, s) => (s % 2 === 0 ? 1 : 0))));
  const gold: Group[] = problems.map((p, i) => {
    const rows = Array.from({ length: G }, (_, s) => goldRow(tok, prompts[i].ids, p, s, s % 2 === 0 ? p.answer : p.answer + 1));
    return { prompt: prompts[i], rows, rewards: rows.map((_, s) => (s % 2 === 0 ? 1 : 0)) };
  });

  const rows: Record<string, unknown>[] = [];
  for (const [name, gs] of [['gold replies', gold], ['48 sampled', sampled]] as const) {
    batch = packBatch(gs, groupAdvantages(gs.map((g) => g.rewards), { kind: 'grpo' }));
    const sampledTokens = batch.mask.reduce((s, m) => s + m, 0);
    await stepPeak(be, trainer, batch, 'fused + only'); // warm-up: the optimizer's state, cached tables
    for (const v of VARIANTS) {
      const r = await stepPeak(be, trainer, batch, v);
      const row = {
        backend: be.name, batch: name, N: batch.N, L: batch.L, positions: batch.N * (batch.L - 1), sampledTokens, variant: v,
        peakMB: MB(r.peak), residentMB: MB(r.resident), stepPeakMB: MB(r.peak - r.resident), seconds: +r.seconds.toFixed(2),
      };
      rows.push(row);
      console.log(`${be.name.padEnd(5)} ${name.padEnd(13)} N ${batch.N} L ${batch.L} (${sampledTokens} sampled)  ${v.padEnd(13)} peak ${String(row.peakMB).padStart(6)} MB (step ${String(row.stepPeakMB).padStart(6)} MB above ${row.residentMB} MB resident)  ${row.seconds}s`);
    }
  }
  model.dispose();
  console.log(`rollout (engine, ${PROMPTS} x ${G} rows, up to ${MAX_TOKENS} tokens): peak ${MB(rolloutPeak)} MB above what was live before it`);
  return { backend: be.name, rolloutPeakMB: MB(rolloutPeak), rows };
}

export default {
  name: 'rl-memory',
  async run() {
    const t0 = performance.now();
    const data = syntheticData(DEFAULT_SYNTHETIC_STORIES);
    if (data.kind !== 'documents') throw new Error('internal: the built-in corpus is documents');
    const tok = await trainTokenizer(data.docs, { vocabSize: presetConfig('tiny').vocabSize });
    console.log(`tokenizer: ${tok.vocabSize} tokens (the speedrun's), ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    // the wasm backend, RL's default (`minichat rl --backend wasm`); the bytes of the cpu
    // backend differ only in the backends' own scratch (a cpu step takes ~10x as long)
    const wasm = await createWasmBackend();
    const out = await measure(wasm, tok);
    T.setDefaultBackend(cpu);
    wasm.destroy();
    return out;
  },
};
