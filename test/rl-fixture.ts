// A small chat policy for the RL end-to-end tests: a GPT of ~30k parameters fine-tuned (the
// real `sft`, a few dozen steps) on one-digit sums "What is 3 + 4?" → "7", so that its sampled
// answers are right some of the time. RL needs that: a group of completions teaches only when
// their rewards differ, and a random model never answers right, so every step would be a no-op.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpu } from '../src/backend/cpu.ts';
import { saveCheckpoint } from '../src/io/checkpoint.ts';
import { GPT, type GPTConfig } from '../src/model/gpt.ts';
import * as T from '../src/tensor/index.ts';
import { trainTokenizer } from '../src/tokenizer/index.ts';
import { SFT_DEFAULTS, sft } from '../src/train/sft.ts';
import { tempDir } from './tmp.ts';

/** Every one-digit sum as a conversation (the RL task `--task arithmetic --digits 1 --ops +`). */
function sums(): string[] {
  const lines: string[] = [];
  for (let a = 0; a < 10; a++) {
    for (let b = 0; b < 10; b++) lines.push(JSON.stringify({ messages: [{ role: 'user', content: `What is ${a} + ${b}?` }, { role: 'assistant', content: `${a + b}` }] }));
  }
  return lines;
}

/** Build the policy; returns the SFT run directory (an `--init` for `minichat rl`). */
export async function tinyArithmeticPolicy(o: { steps?: number } = {}): Promise<string> {
  const root = tempDir('mc-rl-fixture-');
  const data = join(root, 'sums.jsonl');
  writeFileSync(data, sums().join('\n') + '\n');
  const tok = await trainTokenizer([sums().join(' ')], { vocabSize: 280 });
  const config: GPTConfig = {
    vocabSize: tok.vocabSize, hiddenSize: 32, numLayers: 2, numHeads: 2, numKVHeads: 1, headDim: 16, intermediateSize: 64,
    maxSeqLen: 64, ropeTheta: 10000, rmsNormEps: 1e-6, tieEmbeddings: true, qkNorm: true, mlp: 'swiglu', logitSoftcap: 0,
  };
  const model = T.noGrad(() => new GPT(config, new T.Rng(1), cpu));
  await saveCheckpoint(join(root, 'init', 'checkpoint'), { model, tokenizer: tok, optimizerState: null, state: null });
  model.dispose();
  await sft(
    { ...SFT_DEFAULTS, init: join(root, 'init'), out: join(root, 'sft'), data, steps: o.steps ?? 40, batchSize: 8, seqLen: 32, lr: 1e-2, evalEvery: 1000, ckptEvery: 1000, valFraction: 0, backend: cpu },
    { log: () => {} },
  );
  return join(root, 'sft');
}
