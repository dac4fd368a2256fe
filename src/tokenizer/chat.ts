// Special tokens and chat rendering: how a conversation becomes one sequence of token ids,
// and which of those ids the model is trained to predict (used by SFT and RL).
//
// A rendered conversation looks like this (one line per message, specials in <|...|>):
//
//   <|bos|>
//   <|system_start|>You are terse.<|system_end|>
//   <|user_start|>What is 2+2?<|user_end|>
//   <|assistant_start|>Let me check.<|tool_call_start|>calc(2+2)<|tool_call_end|>
//   <|tool_result_start|>4<|tool_result_end|>
//   The answer is 4.<|assistant_end|>
//
// The loss mask is 1 on the tokens the assistant produces: its text, its tool calls and the
// <|assistant_end|> that lets it stop. Everything else is 0: the BOS, system and user turns,
// the <|assistant_start|> header (the prompt supplies it at inference), and tool results,
// which come from the tool, not from the model. mask[i] says whether ids[i] is a target.
// (Pure: no Node imports.)
import { check } from '../util/errors.ts';
import type { Tokenizer } from './bpe.ts';

/** The special tokens every minichat tokenizer carries, in id order after the merges. */
export const SPECIALS = {
  bos: '<|bos|>', // starts every document and conversation
  systemStart: '<|system_start|>',
  systemEnd: '<|system_end|>',
  userStart: '<|user_start|>',
  userEnd: '<|user_end|>',
  assistantStart: '<|assistant_start|>',
  assistantEnd: '<|assistant_end|>',
  toolCallStart: '<|tool_call_start|>', // the assistant calls a tool ...
  toolCallEnd: '<|tool_call_end|>',
  toolResultStart: '<|tool_result_start|>', // ... and the tool's answer is pasted in
  toolResultEnd: '<|tool_result_end|>',
} as const;

export const DEFAULT_SPECIALS: string[] = Object.values(SPECIALS);

/** One piece of an assistant message: text, a tool call, or the tool's result. */
export type AssistantPart =
  | { type: 'text'; text: string }
  | { type: 'tool_call'; text: string }
  | { type: 'tool_result'; text: string };

export type Message =
  | { role: 'system' | 'user'; content: string }
  | { role: 'assistant'; content: string | AssistantPart[] }
  /** A tool result as its own message; it is rendered inside the assistant turn before it. */
  | { role: 'tool'; content: string };

export interface Rendered {
  ids: number[];
  /** 1 where ids[i] is trained on (assistant output), 0 elsewhere. */
  lossMask: number[];
}

/**
 * Render a conversation to ids and a loss mask. Message text is encoded as ordinary text,
 * so a user typing "<|assistant_start|>" cannot forge a special token.
 */
export function renderConversation(tok: Tokenizer, conv: Message[]): Rendered {
  const ids: number[] = [];
  const lossMask: number[] = [];
  const emit = (newIds: number[], mask: 0 | 1) => {
    for (const id of newIds) {
      ids.push(id);
      lossMask.push(mask);
    }
  };
  const special = (name: string, mask: 0 | 1) => emit([tok.specialId(name)], mask);
  const text = (t: string, mask: 0 | 1) => emit(tok.encodeOrdinary(t), mask);

  check(conv.length > 0, 'a conversation needs at least one message');
  special(SPECIALS.bos, 0);
  for (let i = 0; i < conv.length; i++) {
    const m = conv[i];
    switch (m.role) {
      case 'system':
        check(i === 0, `message ${i}: a system message can only come first`);
        special(SPECIALS.systemStart, 0);
        text(m.content, 0);
        special(SPECIALS.systemEnd, 0);
        break;
      case 'user':
        special(SPECIALS.userStart, 0);
        text(m.content, 0);
        special(SPECIALS.userEnd, 0);
        break;
      case 'assistant': {
        special(SPECIALS.assistantStart, 0);
        const parts: AssistantPart[] = typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content;
        for (const p of parts) {
          if (p.type === 'text') text(p.text, 1);
          else if (p.type === 'tool_call') {
            special(SPECIALS.toolCallStart, 1);
            text(p.text, 1);
            special(SPECIALS.toolCallEnd, 1);
          } else renderToolResult(p.text);
        }
        // tool messages right after this one belong to this turn (call → result → more text)
        while (conv[i + 1]?.role === 'tool') renderToolResult(conv[++i].content as string);
        special(SPECIALS.assistantEnd, 1);
        break;
      }
      case 'tool':
        check(false, `message ${i}: a tool message must follow an assistant message`);
        break;
      default:
        check(false, `message ${i}: unknown role ${(m as { role: string }).role}`);
    }
  }
  return { ids, lossMask };

  function renderToolResult(t: string) {
    // the tool's output is context, not something the model should learn to produce
    special(SPECIALS.toolResultStart, 0);
    text(t, 0);
    special(SPECIALS.toolResultEnd, 0);
  }
}

/** The prompt for generation: a conversation that ends with a user turn, followed by
 *  <|assistant_start|>, so the model writes the assistant's reply. */
export function renderForCompletion(tok: Tokenizer, conv: Message[]): number[] {
  const { ids } = renderConversation(tok, conv);
  ids.push(tok.specialId(SPECIALS.assistantStart));
  return ids;
}

/** The tokens that end a generated reply: <|assistant_end|>, or <|bos|> (a model that starts
 *  a new document has left the conversation). Every chat generation stops on these. */
export function chatStops(tok: Tokenizer): number[] {
  return [tok.specialId(SPECIALS.assistantEnd), tok.bosId];
}

/** Specials a chat model never writes itself (it may write tool calls and end its turn). */
export function chatSuppress(tok: Tokenizer): number[] {
  const allowed = new Set([SPECIALS.assistantEnd, SPECIALS.toolCallStart, SPECIALS.toolCallEnd].map((s) => tok.specialId(s)));
  return Object.values(tok.specials).filter((id) => !allowed.has(id) && id !== tok.bosId);
}
