// The point of SFT, measured: a pretrained base model cannot answer a question about a story
// it has never seen; after SFT on story questions it can, on held-out stories.
//
// This is the slowest test in the suite (a few minutes on one core), because the claim needs a
// base model that has learnt to copy: the tiny preset only starts to carry a name from one
// sentence to the next ("Then Tom's friend Ben came by. ... said Ben") after ~600K tokens of
// pretraining (its validation loss drops from ~0.55 to ~0.35 in a few dozen steps: the copying
// phase change). Before that, SFT can only teach the reply form, and the best a model without
// copying can do is guess the commonest answer of each kind of question.
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createWasmBackend } from '../src/backend/wasm.ts';
import { exampleToJsonLine, storyQA } from '../src/data/chat-synthetic.ts';
import { runEval } from '../src/eval/suite.ts';
import { loadCheckpoint } from '../src/io/checkpoint.ts';
import * as T from '../src/tensor/index.ts';
import { PRETRAIN_DEFAULTS, pretrain } from '../src/train/pretrain.ts';
import { SFT_DEFAULTS, sft } from '../src/train/sft.ts';
import { tempDir } from './tmp.ts';

const quiet = { log: () => {} };
const N_EVAL = 60;

/** Expected accuracy of the best blind guesser, estimated on n held-out questions: for each kind
 *  of question (names and the object masked), always the commonest gold answer. A model that
 *  learnt the reply form but does not read the story does no better than this (~10%). */
function blindAccuracy(n: number): number {
  const byQuestion = new Map<string, Map<string, number>>();
  for (const ex of storyQA(n, 1, 'test')) {
    const q = (ex.messages[0].content as string)
      .split('\n\n')[1]
      .replace(/[A-Z][a-z]+/g, 'X')
      .replace(/see the [a-z ]+\?/, 'see the O?');
    const counts = byQuestion.get(q) ?? new Map<string, number>();
    counts.set(ex.answer, (counts.get(ex.answer) ?? 0) + 1);
    byQuestion.set(q, counts);
  }
  let best = 0;
  for (const counts of byQuestion.values()) best += Math.max(...counts.values());
  return best / n;
}

describe('SFT on story questions', () => {
  it('raises held-out story-QA accuracy well above the base model and above blind guessing', async () => {
    const backend = await createWasmBackend({ threads: 1 });
    T.setDefaultBackend(backend);
    const root = tempDir('mc-sft-qa-');
    // the speedrun's pretraining, long enough for the copying phase change (see above)
    const pre = await pretrain(
      { ...PRETRAIN_DEFAULTS, preset: 'tiny', steps: 320, batchSize: 16, seqLen: 128, evalEvery: 0, evalBatches: 8, sampleTokens: 4, ckptEvery: 0, out: join(root, 'base'), backend, seed: 0 },
      quiet,
    );
    // A precondition, so that a failure below says which half broke: before the phase change
    // the validation loss sits at ~0.5 and above; with copying it falls below ~0.4.
    expect(pre.val_loss, 'the base model has not learnt to copy names (pretrain longer)').toBeLessThan(0.42);
    // story questions only (the built-in mix's other tasks are not what is measured here)
    const data = join(root, 'story-qa.jsonl');
    writeFileSync(data, storyQA(1200, 5, 'train').map(exampleToJsonLine).join('\n') + '\n');
    await sft({ ...SFT_DEFAULTS, init: join(root, 'base'), out: join(root, 'sft'), data, steps: 100, batchSize: 8, lr: 3e-3, evalEvery: 1000, ckptEvery: 1000, backend, resume: false }, quiet);

    const accuracy = async (dir: string) => {
      const { model, tokenizer } = await loadCheckpoint(dir);
      const r = await runEval(model, tokenizer, { task: 'story-qa', n: N_EVAL, seed: 1, tool: false, k: 0, maxTokens: 12 });
      model.dispose();
      expect(r.n).toBe(N_EVAL); // every held-out prompt fits the context: none skipped
      return r.accuracy;
    };
    const base = await accuracy(join(root, 'base'));
    const tuned = await accuracy(join(root, 'sft'));
    const blind = blindAccuracy(2000);
    console.log(`story-QA held-out (n=${N_EVAL}): base ${(100 * base).toFixed(1)}%, SFT ${(100 * tuned).toFixed(1)}%, blind guessing ${(100 * blind).toFixed(1)}%`);
    // The margin: 20 points over the base AND over blind guessing. The base has never seen the
    // chat format, so it scores ~0; a model that only learnt "It was <a name>." scores about
    // `blind` (~10%). Clearing blind + 20 points (12 more right answers out of 60 than a
    // guesser expects) needs the model to read the story.
    expect(tuned).toBeGreaterThanOrEqual(base + 0.2);
    expect(tuned).toBeGreaterThanOrEqual(blind + 0.2);
    // ~5 min alone on one core; ~7 min while the other fork runs the browser and SwiftShader
    // suites (vitest.config.ts starts this file first)
  }, 900_000);
});
