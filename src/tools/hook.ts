// Tools during generation: the engine's per-row hook that runs a finished tool call and
// forces its result into that row, and the parser that turns a generated reply back into
// parts (text, tool calls, tool results).
//
// How a tool call plays out in one row of the batched engine (src/model/engine.ts):
//
//   sampled:  ... Let me check. <|tool_call_start|> calc ( 37 * 12 ) <|tool_call_end|>
//   hook:     the last token is <|tool_call_end|> → decode the ids since the matching
//             <|tool_call_start|> → "calc(37*12)" → registry.call → "444"
//   forced:   <|tool_result_start|> 444 <|tool_result_end|>      (fed in, not sampled)
//   sampled:  The answer is 444. <|assistant_end|>
//
// The engine marks forced tokens, so RL never computes a policy loss on them, and SFT never
// trains on tool results because renderConversation gives them loss mask 0 — the model
// learns when to call and what to do with the answer, not to imitate the tool.
// (Pure: no Node imports.)
import { SPECIALS, type AssistantPart } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/bpe.ts';
import { calculatorTool } from './calculator.ts';
import { ToolRegistry } from './registry.ts';

/** The registry the chat model uses by default: just the calculator ("calc"). */
export function defaultToolRegistry(): ToolRegistry {
  return new ToolRegistry().register(calculatorTool);
}

/** The engine's afterToken callback: forced ids after a finished tool call, else undefined. */
export type AfterTokenHook = (row: number, generated: number[]) => number[] | undefined;

/**
 * Build the engine hook. `generated` is the row's tokens so far; only when its last token is
 * <|tool_call_end|> does the hook act. A <|tool_call_end|> with no <|tool_call_start|> since
 * the last tool result (the model made a mistake) answers an error result too, so the model
 * always sees that its call did not run.
 */
export function toolHook(tok: Tokenizer, registry: ToolRegistry): AfterTokenHook {
  // look the ids up once: a tokenizer without the chat specials fails here, not mid-generation
  const callStart = tok.specialId(SPECIALS.toolCallStart);
  const callEnd = tok.specialId(SPECIALS.toolCallEnd);
  const resultStart = tok.specialId(SPECIALS.toolResultStart);
  const resultEnd = tok.specialId(SPECIALS.toolResultEnd);
  const forced = (text: string) => [resultStart, ...tok.encodeOrdinary(text), resultEnd];

  return (_row, generated) => {
    if (generated.length === 0 || generated[generated.length - 1] !== callEnd) return undefined;
    // walk back to the opening marker; stop at anything that closes an earlier call
    for (let i = generated.length - 2; i >= 0; i--) {
      const id = generated[i];
      if (id === callStart) return forced(registry.call(tok.decode(generated.slice(i + 1, generated.length - 1))));
      if (id === callEnd || id === resultEnd) break;
    }
    return forced(`error: ${SPECIALS.toolCallEnd} without ${SPECIALS.toolCallStart}`);
  };
}

/**
 * Turn a generated assistant reply (ids after <|assistant_start|>; a leading one is skipped)
 * back into parts, the inverse of how renderConversation lays an assistant turn out.
 * The reply ends at <|assistant_end|>, or at any special that cannot occur inside an assistant
 * turn (<|bos|>, <|user_start|>, ...), or at the end of the ids. A call or result that the ids
 * cut off before its closing marker is still returned with the text it has. Empty text parts
 * are dropped.
 */
export function parseAssistantOutput(tok: Tokenizer, ids: ArrayLike<number>): AssistantPart[] {
  const sp = (name: string) => tok.specialId(name);
  const marker = new Map<number, 'callStart' | 'callEnd' | 'resultStart' | 'resultEnd'>([
    [sp(SPECIALS.toolCallStart), 'callStart'],
    [sp(SPECIALS.toolCallEnd), 'callEnd'],
    [sp(SPECIALS.toolResultStart), 'resultStart'],
    [sp(SPECIALS.toolResultEnd), 'resultEnd'],
  ]);
  const specialIds = new Set(Object.values(SPECIALS).map(sp));
  const parts: AssistantPart[] = [];
  let kind: AssistantPart['type'] = 'text';
  let pending: number[] = [];
  // decode a whole run at once: a character's bytes may be split over several tokens
  const flush = (next: AssistantPart['type']) => {
    const text = tok.decode(pending);
    if (kind !== 'text' || text.length > 0) parts.push({ type: kind, text } as AssistantPart);
    pending = [];
    kind = next;
  };
  let i = 0;
  if (ids.length > 0 && ids[0] === sp(SPECIALS.assistantStart)) i = 1;
  for (; i < ids.length; i++) {
    const id = ids[i];
    const m = marker.get(id);
    if (m === 'callStart') flush('tool_call');
    else if (m === 'resultStart') flush('tool_result');
    else if (m === 'callEnd' || m === 'resultEnd') flush('text');
    else if (specialIds.has(id)) break; // <|assistant_end|>, <|bos|>, another turn: the reply is over
    else pending.push(id);
  }
  if (pending.length > 0 || kind !== 'text') flush('text');
  return parts;
}
