// The world model's loss and its accuracy: next-token prediction of what the environment says.
//
//   L_world = −E[ log P(o_{t+1} | s_t, a_t) ]
//
// s_t is everything in the context before the action (system prompt, request, earlier calls
// and replies), a_t the agent's tool call, o_{t+1} the reply the world forced in. Over
// tokens: the mean of −log p(token) over exactly the observation tokens (the obs mask — the
// forced tool-result spans, with their <|tool_result_start|> and <|tool_result_end|>). The
// agent's own tokens and the prompt carry no world-model loss; the policy's tokens carry no
// world-model loss either, so the two losses read disjoint tokens of the same sequences.
//
// Why a separate loss at all: a failed call's reply ("NovaTel: to cancel we need card_last4")
// is a dense, exact training signal about the company even when the reward is 0. Predicting it
// is like a TD error (docs/world-model.md): the loss is the surprise of what happened against
// what the model expected, per token, available after every step, not only at the episode's end.
//
// Layout (as rollout.ts): ids (N, L) right-padded; mask (N, L−1) where position t predicts
// token t+1 — 1 when ids[n, t+1] is an observation token.
import type { Engine } from '../model/engine.ts';
import type { GPT } from '../model/gpt.ts';
import { tokenLogprobs } from '../model/logprobs.ts';
import * as T from '../tensor/index.ts';
import type { Tokenizer } from '../tokenizer/bpe.ts';
import { SPECIALS, renderConversation } from '../tokenizer/chat.ts';
import { episodeMessages } from './envs/render.ts';
import type { EpisodeState } from './envs/service.ts';

export interface WorldBatch {
  ids: Int32Array; // (N, L)
  N: number;
  L: number;
  mask: Float32Array; // (N, L-1): 1 where the predicted token is an observation token
}

/** Pack sequences with per-token observation masks (1 on tokens the world produced). */
export function packWorldBatch(seqs: { ids: number[]; obsMask: number[] }[], padId = 0): WorldBatch {
  const N = seqs.length;
  const L = Math.max(2, ...seqs.map((s) => s.ids.length));
  const ids = new Int32Array(N * L).fill(padId);
  const mask = new Float32Array(N * (L - 1));
  seqs.forEach((s, n) => {
    if (s.obsMask.length !== s.ids.length) throw new Error('internal: obsMask and ids differ in length');
    ids.set(s.ids, n * L);
    for (let j = 1; j < s.ids.length; j++) if (s.obsMask[j]) mask[n * (L - 1) + j - 1] = 1; // position j−1 predicts token j
  });
  return { ids, N, L, mask };
}

/** L_world of a batch: mean −log p over the masked (observation) tokens; a scalar tensor. */
export function worldLoss(model: GPT, b: WorldBatch): T.Tensor {
  const count = b.mask.reduce((s, v) => s + v, 0);
  if (count === 0) throw new Error('internal: a world-model batch with no observation tokens');
  const logp = tokenLogprobs(model, b.ids, b.N, b.L, { only: b.mask }); // (N, L-1), 0 off the observations
  const w = T.tensor(b.mask.map((v) => -v / count), [b.N, b.L - 1], { backend: model.backend });
  return T.sumAll(T.mul(logp, w)); // () = −Σ mask·logp / Σ mask
}

/** One evaluation item: a context that ends with the agent's call, and the reply the world gives. */
export interface ObservationProbe {
  ids: number[]; // the episode up to and including <|tool_call_end|> of the probed action
  observation: string; // what the world answers
}

/**
 * Probes from finished episodes: for each step whose action is a `call`, the context before
 * its reply and the reply itself. (ask_user replies are left out: they read the user's private
 * values, which no model can predict from the context.)
 */
export function observationProbes(tok: Tokenizer, episodes: EpisodeState[]): ObservationProbe[] {
  const out: ObservationProbe[] = [];
  for (const ep of episodes) {
    ep.steps.forEach((s, k) => {
      if (!/^\s*call\(/.test(s.action)) return;
      const prefix: EpisodeState = { ...ep, steps: ep.steps.slice(0, k) };
      const { ids } = renderConversation(tok, episodeMessages(prefix));
      // episodeMessages closes the assistant turn; reopen it: drop <|assistant_end|>, append the call
      const body = ids[ids.length - 1] === tok.specialId(SPECIALS.assistantEnd) ? ids.slice(0, -1) : ids;
      const call = [tok.specialId(SPECIALS.toolCallStart), ...tok.encodeOrdinary(s.action), tok.specialId(SPECIALS.toolCallEnd)];
      out.push({ ids: [...body, ...call], observation: s.observation });
    });
  }
  return out;
}

/**
 * Next-observation accuracy: the fraction of probes whose GREEDY predicted reply (after a
 * forced <|tool_result_start|>, up to the model's <|tool_result_end|>) is exactly the world's.
 */
export async function observationAccuracy(engine: Engine, tok: Tokenizer, probes: ObservationProbe[], maxTokens = 40): Promise<number> {
  if (probes.length === 0) return NaN;
  const start = tok.specialId(SPECIALS.toolResultStart), end = tok.specialId(SPECIALS.toolResultEnd);
  const rows = await engine.generate(probes.map((p) => [...p.ids, start]), { maxTokens, temperature: 0, topK: 0, topP: 1, seed: 0, stop: [end, tok.specialId(SPECIALS.assistantEnd)] });
  let hits = 0;
  rows.forEach((r, i) => {
    if (r.finish === 'stop' && r.tokens[r.tokens.length - 1] === end && tok.decode(r.tokens.slice(0, -1)) === probes[i].observation) hits++;
  });
  return hits / probes.length;
}

/**
 * L_world on probes (mean −log p per observation token, nats), under no gradient: a graded
 * companion to the all-or-nothing exact-match accuracy.
 */
export async function observationNll(model: GPT, tok: Tokenizer, probes: ObservationProbe[]): Promise<number> {
  if (probes.length === 0) return NaN;
  const start = tok.specialId(SPECIALS.toolResultStart), end = tok.specialId(SPECIALS.toolResultEnd);
  const seqs = probes.map((p) => {
    const obs = [start, ...tok.encodeOrdinary(p.observation), end];
    return { ids: [...p.ids, ...obs], obsMask: [...new Array(p.ids.length).fill(0), ...obs.map(() => 1)] };
  });
  return T.noGrad(() => T.tidy(async () => (await worldLoss(model, packWorldBatch(seqs)).data())[0]));
}
