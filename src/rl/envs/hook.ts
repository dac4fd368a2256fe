// The service world inside the batched engine: one episode per generated row, driven by the
// engine's afterToken hook, so RL rollouts of the tool-use world are ordinary engine calls.
//
// How one row plays out (row r plays task tasks[⌊r / G⌋]):
//
//   sampled:  <|tool_call_start|> ask_user(card) <|tool_call_end|>
//   hook:     decode the call → stepEpisode → "user: card=07"
//   forced:   <|tool_result_start|> user: card=07 <|tool_result_end|>
//   sampled:  <|tool_call_start|> call(NovaTel, cancel, card=07) <|tool_call_end|>
//   forced:   <|tool_result_start|> NovaTel: cancel done <|tool_result_end|> END_ROW
//
// When the episode is over (success, failed call, an ask past the budget, finish(), maxTurns)
// the hook appends the engine's END_ROW after the observation, so the row stops there: the
// model never has to learn to say <|assistant_end|>, and a row cannot go on acting in a
// finished episode. A sampled <|assistant_end|> ends the row as a stop token (reward 0).
//
// Look-ahead (the `lookahead` arm of dual.ts): the prompt ends with a bare call of the task
// and an opened <|tool_result_start|> (render.ts agentPrompt), so the row's first generated
// tokens are the MODEL's prediction of the company's reply — both LoRA groups active, as in
// every forward — up to its own <|tool_result_end|>. Nothing is sent: the hook lets the
// preview through untouched and only records its span; then the agent acts with that
// predicted reply in its context (the warm start's recovery behaviour reads the requirement
// off it), and its first real call is the one that counts. The span is recorded per row
// (`previews`) so the losses can leave it out: it is neither the agent's action nor the
// world's observation.
//
// Everything the hook decides is a deterministic function of the row's tokens and its task,
// so `replayRow` recomputes the episode (and its reward) from a finished row alone.
// (Pure: no Node imports.)
import { END_ROW, type RowOutput } from '../../model/engine.ts';
import type { Tokenizer } from '../../tokenizer/bpe.ts';
import { SPECIALS } from '../../tokenizer/chat.ts';
import { startEpisode, stepEpisode, type EpisodeState, type ServiceTask, type ServiceWorld } from './service.ts';

export interface ServiceHookOptions {
  lookahead?: boolean; // the prompt ends inside an opened reply: the row starts with a preview
}

/** Per-row bookkeeping the hook keeps while generating. */
interface RowEnv {
  state: EpisodeState;
  previewing: boolean; // inside the model-sampled preview reply
  previews: [number, number][]; // [start, end) spans of the generated tokens that the model predicted
}

export interface ServiceSession {
  afterToken: (row: number, generated: number[]) => number[] | undefined;
  /** The episode of row r so far (complete once generation returns). */
  episode(row: number): EpisodeState;
  /** Token spans [start, end) of row r that are model-predicted previews (lookahead only). */
  previews(row: number): [number, number][];
}

/**
 * A hook for one engine call over `tasks` with `G` rows per task (row = p * G + s, as the
 * engine numbers them). Rows are created lazily on their first token.
 */
export function serviceSession(tok: Tokenizer, world: ServiceWorld, tasks: ServiceTask[], G: number, o: ServiceHookOptions = {}): ServiceSession {
  const callStart = tok.specialId(SPECIALS.toolCallStart), callEnd = tok.specialId(SPECIALS.toolCallEnd);
  const resultStart = tok.specialId(SPECIALS.toolResultStart), resultEnd = tok.specialId(SPECIALS.toolResultEnd);
  const rows = new Map<number, RowEnv>();
  const env = (row: number): RowEnv => {
    let e = rows.get(row);
    if (!e) {
      const task = tasks[Math.floor(row / G)];
      if (!task) throw new Error(`internal: service hook has no task for row ${row}`);
      rows.set(row, (e = { state: startEpisode(task), previewing: !!o.lookahead, previews: o.lookahead ? [[0, 0]] : [] }));
    }
    return e;
  };

  const afterToken = (row: number, generated: number[]): number[] | undefined => {
    const last = generated[generated.length - 1];
    const e = env(row);
    if (e.previewing) {
      // the model is writing its predicted reply; it ends at its own <|tool_result_end|>
      e.previews[0][1] = generated.length;
      if (last === resultEnd) e.previewing = false;
      return undefined;
    }
    if (last !== callEnd) return undefined;
    // the call's text: back to the matching <|tool_call_start|> (or nothing, if it is missing)
    let i = generated.length - 2;
    while (i >= 0 && generated[i] !== callStart && generated[i] !== callEnd && generated[i] !== resultEnd) i--;
    const action = i >= 0 && generated[i] === callStart ? tok.decode(generated.slice(i + 1, generated.length - 1)) : '';
    e.state = stepEpisode(world, e.state, action);
    const obs = e.state.steps[e.state.steps.length - 1].observation;
    const ids = [resultStart, ...tok.encodeOrdinary(obs), resultEnd];
    return e.state.done ? [...ids, END_ROW] : ids;
  };
  return {
    afterToken,
    episode: (row) => env(row).state,
    previews: (row) => env(row).previews.map((p) => [p[0], p[1]] as [number, number]),
  };
}

/**
 * Recompute a finished row's episode from its tokens alone (no hook state): what the reward
 * reads, and how tests check that the hook forced what the rules say.
 */
export function replayRow(tok: Tokenizer, world: ServiceWorld, task: ServiceTask, row: Pick<RowOutput, 'tokens' | 'forced'>, o: ServiceHookOptions = {}): EpisodeState {
  const s = serviceSession(tok, world, [task], 1, o);
  for (let j = 0; j < row.tokens.length; j++) if (!row.forced[j]) s.afterToken(0, row.tokens.slice(0, j + 1));
  return s.episode(0);
}

/**
 * Per-token masks of one finished row (parallel to row.tokens):
 *   action: the agent's sampled tokens, minus model-predicted preview replies (policy loss);
 *   obs:    the world's forced observation tokens (world-model loss).
 * Preview tokens are in neither: they are the model's guesses, not data.
 */
export function rowMasks(row: Pick<RowOutput, 'tokens' | 'forced'>, previews: [number, number][]): { action: number[]; obs: number[] } {
  const action = row.tokens.map((_, j) => (row.forced[j] ? 0 : 1));
  const obs = row.tokens.map((_, j) => (row.forced[j] ? 1 : 0));
  for (const [a, b] of previews) for (let j = a; j < b; j++) action[j] = 0;
  return { action, obs };
}
