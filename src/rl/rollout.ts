// Rollouts: G completions per prompt from the batched engine, scored by a reward function,
// and packed into the tensors a policy-gradient step needs.
//
//   prompt p ──prefill once──► fork into G rows ──decode──► G completions ──reward──► r[p, 0..G-1]
//
// For every generated token the engine records its log-probability under the policy that
// sampled it (`rawLogprobs`: the model's own softmax at temperature 1). Those are the
// π_old(token) of the importance ratio π_θ / π_old: sampling at temperature 1 with no top-k
// or top-p, as RL does here, makes the sampling distribution and the model's softmax the
// same thing, so on the first optimizer step over a batch the ratio is exactly 1 up to float
// rounding (test/rl-rollout.test.ts checks this).
//
// Tool results that the engine forced into a row (the calculator's answer) are context, not
// actions: their mask is 0, so the loss never trains the model to produce them.
//
// Layout of a batch of N sequences, right-padded to length L:
//   ids      (N, L)     prompt tokens, then generated tokens, then pad
//   mask     (N, L-1)   1 where position t predicts a SAMPLED generated token (ids[t+1])
//   oldLogp  (N, L-1)   π_old of that token where mask is 1, else 0
// Position t of the (N, L-1) arrays predicts token t+1, matching model/logprobs.ts.
import type { Engine, GenerateOptions, RowOutput } from '../model/engine.ts';

/** One prompt to roll out: its rendered ids and how to score a completion. */
export interface RolloutPrompt {
  ids: number[]; // the prompt, ending with <|assistant_start|>
  reward(row: RowOutput): number; // a pure function of the completion (and the problem it closes over)
}

/** The G completions of one prompt. */
export interface Group {
  prompt: RolloutPrompt;
  rows: RowOutput[];
  rewards: number[];
}

/**
 * Sample `G` completions for each prompt in one engine call (rows of one prompt are adjacent)
 * and score them. `o` carries temperature, maxTokens, stop tokens, the tool hook, the seed.
 */
export async function rollout(engine: Engine, prompts: RolloutPrompt[], G: number, o: Omit<GenerateOptions, 'samplesPerPrompt'>): Promise<Group[]> {
  const rows = await engine.generate(prompts.map((p) => p.ids), { ...o, samplesPerPrompt: G });
  return prompts.map((prompt, i) => {
    const mine = rows.slice(i * G, (i + 1) * G);
    return { prompt, rows: mine, rewards: mine.map((r) => prompt.reward(r)) };
  });
}

export interface RLBatch {
  ids: Int32Array; // (N, L)
  N: number;
  L: number;
  mask: Float32Array; // (N, L-1): 1 on sampled response tokens
  oldLogp: Float32Array; // (N, L-1): π_old of those tokens
  advantages: Float32Array; // (N): one advantage per sequence
  responseTokens: number[]; // sampled tokens per sequence (for length statistics)
}

/**
 * Pack groups into one batch. `advantages[g][s]` is the advantage of row s of group g.
 * Rows whose advantage is exactly 0 carry no policy-gradient signal but still count in the
 * token-level denominator, as in DAPO's token-mean over the whole batch.
 */
export function packBatch(groups: Group[], advantages: number[][], padId = 0): RLBatch {
  const seqs: { ids: number[]; start: number; row: RowOutput; adv: number }[] = [];
  groups.forEach((g, gi) => g.rows.forEach((row, s) => seqs.push({ ids: [...g.prompt.ids, ...row.tokens], start: g.prompt.ids.length, row, adv: advantages[gi][s] })));
  const N = seqs.length;
  const L = Math.max(2, ...seqs.map((s) => s.ids.length));
  const ids = new Int32Array(N * L).fill(padId);
  const mask = new Float32Array(N * (L - 1));
  const oldLogp = new Float32Array(N * (L - 1));
  const adv = new Float32Array(N);
  const responseTokens: number[] = [];
  seqs.forEach((s, n) => {
    ids.set(s.ids, n * L);
    adv[n] = s.adv;
    let sampled = 0;
    s.row.tokens.forEach((_, j) => {
      if (s.row.forced[j]) return; // a tool result: context, not an action
      const t = s.start + j - 1; // the position that predicts token start + j
      mask[n * (L - 1) + t] = 1;
      oldLogp[n * (L - 1) + t] = s.row.rawLogprobs[j];
      sampled++;
    });
    responseTokens.push(sampled);
  });
  return { ids, N, L, mask, oldLogp, advantages: adv, responseTokens };
}
