// Rollouts (src/rl/rollout.ts) and the on-policy sanity check: the engine's log-probabilities
// of sampled tokens equal those of the training forward pass (model/logprobs.ts), so the
// importance ratio on the first optimizer step over a batch is 1.
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/model/engine.ts';
import { GPT, PRESETS } from '../src/model/gpt.ts';
import { tokenLogprobs } from '../src/model/logprobs.ts';
import * as T from '../src/tensor/index.ts';
import { packBatch, rollout } from '../src/rl/rollout.ts';

const config = { ...PRESETS.tiny, vocabSize: 50, hiddenSize: 32, numLayers: 2, numHeads: 2, numKVHeads: 1, headDim: 16, intermediateSize: 48, maxSeqLen: 48 };

describe('rollouts', () => {
  it('G rows per prompt; forced tokens masked; engine log-probs equal the training forward (ratio 1)', async () => {
    const model = new GPT(config, new T.Rng(1));
    const engine = new Engine(model);
    const FORCE = [7, 8, 9];
    const prompts = [
      { ids: [1, 5, 6, 7], reward: (r: { tokens: number[] }) => r.tokens.length % 2 },
      { ids: [1, 9, 3], reward: () => 1 },
    ];
    const G = 3;
    const groups = await rollout(engine, prompts, G, {
      maxTokens: 10, temperature: 1, topK: 0, topP: 1, seed: 11, stop: [],
      // after the 3rd sampled token of every row, force three tokens in (like a tool result)
      afterToken: (_row, gen) => (gen.length === 3 ? FORCE : undefined),
    });
    expect(groups.map((g) => g.rows.length)).toEqual([G, G]);
    expect(groups[1].rewards).toEqual([1, 1, 1]);
    for (const g of groups) for (const r of g.rows) expect(r.forced.slice(3, 6)).toEqual([true, true, true]);
    const batch = packBatch(groups, groups.map((g) => g.rows.map((_, s) => s - 1)));
    expect(batch.N).toBe(2 * G);
    expect(Array.from(batch.advantages)).toEqual([-1, 0, 1, -1, 0, 1]);
    // 10 tokens per row, 3 forced → 7 trained positions per row
    expect(batch.responseTokens).toEqual(new Array(2 * G).fill(7));
    const lp = T.noGrad(() => T.tidy(() => Array.from(tokenLogprobs(model, batch.ids, batch.N, batch.L).dataSync())));
    let maxDiff = 0, n = 0;
    for (let i = 0; i < lp.length; i++) {
      if (!batch.mask[i]) continue;
      maxDiff = Math.max(maxDiff, Math.abs(lp[i] - batch.oldLogp[i]));
      n++;
    }
    expect(n).toBe(2 * G * 7);
    // Tolerance: the engine computes one position at a time with a KV cache, the training
    // forward the whole (padded) sequence at once; float32 reassociation gives ~1e-6 on
    // log-probs of size ~4 (vocabulary 50); 1e-4 leaves a wide margin and still catches any
    // off-by-one position (which would differ by ~0.1 or more).
    expect(maxDiff).toBeLessThan(1e-4);
    // and the ratio exp(logp − oldLogp) is 1 to that precision
    expect(Math.abs(Math.exp(maxDiff) - 1)).toBeLessThan(1e-4);
    model.dispose();
  });
});
