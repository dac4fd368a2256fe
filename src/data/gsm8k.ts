// GSM8K (Cobbe et al., 2021, "Training Verifiers to Solve Math Word Problems") as chat
// examples with calculator calls.
//
// Each line of the release is {"question": "...", "answer": "..."}; the answer is a worked
// solution with the arithmetic annotated for a calculator, and the final number after "####":
//
//   Natalia sold 48/2 = <<48/2=24>>24 clips in May.
//   Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
//   #### 72
//
// Conversion into one assistant turn (the layout src/tokenizer/chat.ts renders):
//
//   text "Natalia sold 48/2 = "  tool_call "calc(48/2)"  tool_result "24"  text "24 clips in May.\n..."
//   ...  text "\nThe answer is 72."
//
// so the model learns to call the calculator where the solution did arithmetic, and the
// result it reads at inference is what our calculator answers (computed here, not copied from
// the annotation: the two agree on GSM8K, but training must match what the tool will say).
// An annotation our calculator cannot evaluate is dropped (its text result stays in the
// solution) and counted. The gold answer is the number after "####", with thousands commas
// removed ("1,000" → "1000").
//
// Parsing is pure; readGsm8k loads node:fs on demand.
import type { Message } from '../tokenizer/chat.ts';
import type { AssistantPart } from '../tokenizer/chat.ts';
import { evaluate, formatNumber } from '../tools/calculator.ts';
import { UserError } from '../util/errors.ts';
import type { ChatExample } from './chat-synthetic.ts';

export interface Gsm8kItem {
  question: string;
  answer: string;
}

/** The gold answer: the number after "####", commas removed; a missing one is an error. */
export function gsm8kFinalAnswer(answer: string, where = 'gsm8k'): string {
  const m = /####\s*(.+?)\s*$/.exec(answer);
  if (!m) throw new UserError(`${where}: the answer has no "#### <number>" line`);
  return m[1].replaceAll(',', '');
}

const ANNOTATION = /<<([^<>]*)>>/g;

/** Convert one item into a chat example; `droppedCalls` counts annotations not turned into calls. */
export function gsm8kToExample(item: Gsm8kItem, where = 'gsm8k'): ChatExample & { droppedCalls: number } {
  const gold = gsm8kFinalAnswer(item.answer, where);
  const solution = item.answer.slice(0, item.answer.lastIndexOf('####'));
  const parts: AssistantPart[] = [];
  let text = '';
  let droppedCalls = 0;
  let last = 0;
  for (const m of solution.matchAll(ANNOTATION)) {
    text += solution.slice(last, m.index);
    last = m.index + m[0].length;
    // "48/2=24": the expression is left of the last "=" (the right is the annotated result)
    const eq = m[1].lastIndexOf('=');
    const expr = (eq >= 0 ? m[1].slice(0, eq) : m[1]).trim();
    const r = evaluate(expr);
    if (!r.ok || expr === '') {
      droppedCalls++;
      continue;
    }
    if (text) parts.push({ type: 'text', text });
    text = '';
    parts.push({ type: 'tool_call', text: `calc(${expr})` }, { type: 'tool_result', text: formatNumber(r.value) });
  }
  text += solution.slice(last);
  text += `The answer is ${gold}.`;
  parts.push({ type: 'text', text });
  const messages: Message[] = [
    { role: 'user', content: item.question },
    { role: 'assistant', content: parts },
  ];
  return { task: 'gsm8k', messages, answer: gold, droppedCalls };
}

/** Parse GSM8K JSONL text; errors name file:line. */
export function parseGsm8kJsonl(text: string, file: string): Gsm8kItem[] {
  const items: Gsm8kItem[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const where = `${file}:${i + 1}`;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new UserError(`${where}: not valid JSON (${(e as Error).message})`);
    }
    const o = rec as Record<string, unknown> | null;
    if (!o || typeof o.question !== 'string' || typeof o.answer !== 'string') {
      throw new UserError(`${where}: expected {"question": string, "answer": string}`);
    }
    items.push({ question: o.question, answer: o.answer });
  });
  return items;
}

/** Read a GSM8K JSONL file as chat examples, with the number of dropped annotations. */
export async function readGsm8k(file: string): Promise<{ examples: ChatExample[]; droppedCalls: number }> {
  const fsName = 'node:fs/promises'; // on demand: the parsing above also runs in a browser
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    throw new UserError(`GSM8K file not found: ${file} (download it with "minichat data download gsm8k")`);
  }
  let droppedCalls = 0;
  const examples = parseGsm8kJsonl(text, file).map((item, i) => {
    const { droppedCalls: d, ...ex } = gsm8kToExample(item, `${file}: item ${i + 1}`);
    droppedCalls += d;
    return ex;
  });
  if (examples.length === 0) throw new UserError(`${file}: no GSM8K items found`);
  return { examples, droppedCalls };
}
