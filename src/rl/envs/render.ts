// An episode of the service world as chat tokens, with the two masks dual-LoRA training needs:
//
//   lossMask (policy): 1 on what the agent wrote — its tool calls with their delimiters and
//                      the final <|assistant_end|> — exactly renderConversation's mask;
//   obsMask  (world model): 1 on what the world wrote — each observation's tokens together
//                      with its <|tool_result_start|> and <|tool_result_end|>, the span the
//                      engine forces into the row.
//
// An episode may open with a PREFACE: (call, reply) pairs written into the assistant turn
// before the agent acts. The look-ahead arm's preview (a bare call the hook writes and the
// reply the model predicts), the memory arm's past failure replies, and the warm start's
// recovery demonstrations all take this one shape, so one learned behaviour — read the
// requirement off a reply in the context, ask for those fields, call — serves all three.
// Preface tokens are in neither mask: the agent did not choose them, and the world did not
// say them in this episode.
//
// The two masks never overlap. Observations are found by their special tokens, which text
// cannot forge (renderConversation encodes message text as ordinary text).
import type { Tokenizer } from '../../tokenizer/bpe.ts';
import { SPECIALS, renderConversation, renderForCompletion, type AssistantPart, type Message } from '../../tokenizer/chat.ts';
import { serviceSystemPrompt, serviceUserMessage, type EpisodeState, type ServiceTask, type Step } from './service.ts';

/** The prompt an agent is given: the tools and the user's request. */
export function servicePrompt(task: Pick<ServiceTask, 'company' | 'request'>): Message[] {
  return [
    { role: 'system', content: serviceSystemPrompt() },
    { role: 'user', content: serviceUserMessage(task) },
  ];
}

/** The bare call of a task: what the look-ahead preview asks the world model about. */
export function bareCall(task: Pick<ServiceTask, 'company' | 'request'>): string {
  return `call(${task.company}, ${task.request})`;
}

/** The whole episode as a conversation: one assistant turn of (preface and) tool calls and results. */
export function episodeMessages(state: EpisodeState, preface: Step[] = []): Message[] {
  const parts: AssistantPart[] = [...preface, ...state.steps].flatMap((s): AssistantPart[] => [
    { type: 'tool_call', text: s.action },
    { type: 'tool_result', text: s.observation },
  ]);
  return [...servicePrompt(state.task), { role: 'assistant', content: parts }];
}

/**
 * The tokens the engine starts from: the prompt, <|assistant_start|>, the preface pairs and,
 * with `openCall`, that call and an opened <|tool_result_start|> (the model writes the reply:
 * the look-ahead preview).
 */
export function agentPrompt(tok: Tokenizer, task: Pick<ServiceTask, 'company' | 'request'>, preface: Step[] = [], openCall?: string): number[] {
  const ids = renderForCompletion(tok, servicePrompt(task));
  const s = (name: string) => tok.specialId(name);
  for (const p of preface) {
    ids.push(s(SPECIALS.toolCallStart), ...tok.encodeOrdinary(p.action), s(SPECIALS.toolCallEnd));
    ids.push(s(SPECIALS.toolResultStart), ...tok.encodeOrdinary(p.observation), s(SPECIALS.toolResultEnd));
  }
  if (openCall !== undefined) ids.push(s(SPECIALS.toolCallStart), ...tok.encodeOrdinary(openCall), s(SPECIALS.toolCallEnd), s(SPECIALS.toolResultStart));
  return ids;
}

export interface RenderedEpisode {
  ids: number[];
  /** 1 on tokens the policy produced (trained by the RL loss), the preface excluded. */
  lossMask: number[];
  /** 1 on tokens the world produced (trained by the world model's next-token loss), the preface excluded. */
  obsMask: number[];
}

export function renderEpisode(tok: Tokenizer, state: EpisodeState, preface: Step[] = []): RenderedEpisode {
  const { ids, lossMask } = renderConversation(tok, episodeMessages(state, preface));
  const start = tok.specialId(SPECIALS.toolResultStart), end = tok.specialId(SPECIALS.toolResultEnd);
  const obsMask = new Array<number>(ids.length).fill(0);
  let inside = false;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] === start) inside = true;
    if (inside) obsMask[i] = 1;
    if (ids[i] === end) inside = false;
  }
  // the preface ends at its last <|tool_result_end|>: the (2·|preface|)-th tool span
  if (preface.length > 0) {
    let seen = 0, cut = 0;
    for (let i = 0; i < ids.length && seen < preface.length; i++) if (ids[i] === end && ++seen === preface.length) cut = i + 1;
    for (let i = 0; i < cut; i++) lossMask[i] = obsMask[i] = 0;
  }
  return { ids, lossMask, obsMask };
}
