// An episode of the service world as chat tokens, with the two masks dual-LoRA training needs:
//
//   lossMask (policy): 1 on what the agent wrote — its tool calls with their delimiters and
//                      the final <|assistant_end|> — exactly renderConversation's mask;
//   obsMask  (world model): 1 on what the world wrote — each observation's tokens together
//                      with its <|tool_result_start|> and <|tool_result_end|>, the span the
//                      engine forces into the row.
//
// The two masks never overlap. Observations are found by their special tokens, which text
// cannot forge (renderConversation encodes message text as ordinary text).
import type { Tokenizer } from '../../tokenizer/bpe.ts';
import { SPECIALS, renderConversation, type AssistantPart, type Message } from '../../tokenizer/chat.ts';
import { serviceSystemPrompt, serviceUserMessage, type EpisodeState, type ServiceTask } from './service.ts';

/** The prompt an agent is given: the tools and the user's request. */
export function servicePrompt(task: ServiceTask): Message[] {
  return [
    { role: 'system', content: serviceSystemPrompt() },
    { role: 'user', content: serviceUserMessage(task) },
  ];
}

/** The whole episode as a conversation: one assistant turn of tool calls and results. */
export function episodeMessages(state: EpisodeState): Message[] {
  const parts: AssistantPart[] = state.steps.flatMap((s): AssistantPart[] => [
    { type: 'tool_call', text: s.action },
    { type: 'tool_result', text: s.observation },
  ]);
  return [...servicePrompt(state.task), { role: 'assistant', content: parts }];
}

export interface RenderedEpisode {
  ids: number[];
  /** 1 on tokens the policy produced (trained by the RL loss). */
  lossMask: number[];
  /** 1 on tokens the world produced (trained by the world model's next-token loss). */
  obsMask: number[];
}

export function renderEpisode(tok: Tokenizer, state: EpisodeState): RenderedEpisode {
  const { ids, lossMask } = renderConversation(tok, episodeMessages(state));
  const start = tok.specialId(SPECIALS.toolResultStart), end = tok.specialId(SPECIALS.toolResultEnd);
  const obsMask = new Array<number>(ids.length).fill(0);
  let inside = false;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] === start) inside = true;
    if (inside) obsMask[i] = 1;
    if (ids[i] === end) inside = false;
  }
  return { ids, lossMask, obsMask };
}
