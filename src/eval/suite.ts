// The evaluation tasks, by name: what `minichat eval --task ...`, the speedrun and the RL
// experiments measure.
//
//   bpb         bits per byte of held-out text (the built-in corpus, or --data FILE)
//   story-qa    questions about a story in the prompt, exact short answer (data/chat-synthetic.ts)
//   arithmetic  "What is 37 * 12?", the last number of the reply (tasks/arithmetic.ts);
//               with the calculator tool or without it (--no-tool: a call gets no result)
//   countdown   reach a target with given numbers (tasks/countdown.ts)
//   gsm8k       grade-school word problems from a local file (tasks/gsm8k.ts)
//   identity    "Who are you?" — does the reply say minichat
//   mc:FILE     multiple choice from JSONL {"question", "options": [...], "answer": index},
//               scored by each option's log-probability, no generation
// Generative tasks score the greedy reply (pass@1) on the held-out split, and pass@k with k
// samples when asked; their chance baseline is 0. Multiple choice's is 1 / options.
import { readFile } from 'node:fs/promises';
import { storyQA, identity } from '../data/chat-synthetic.ts';
import { loadDocuments } from '../data/documents.ts';
import { generateSyntheticCorpus } from '../data/synthetic.ts';
import { tokenizeDocuments } from '../data/shards.ts';
import { Engine } from '../model/engine.ts';
import type { GPT } from '../model/gpt.ts';
import { getTask } from '../tasks/index.ts';
import * as T from '../tensor/index.ts';
import { SPECIALS, chatStops, chatSuppress, renderForCompletion, type Message } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { defaultToolRegistry, parseAssistantOutput, toolHook } from '../tools/hook.ts';
import { UserError } from '../util/errors.ts';
import { evalGenerative, optionLogprobs, type GenProblem } from './generate-eval.ts';
import { evaluate, tokenByteLengths } from './loss.ts';
import { chanceBaseline, replyText, scoreIdentity, scoreMultipleChoice, scoreStoryQA } from './tasks.ts';

export const EVAL_TASKS = ['bpb', 'story-qa', 'arithmetic', 'countdown', 'gsm8k', 'identity', 'mc:FILE'] as const;

export interface EvalSpec {
  task: string; // one of EVAL_TASKS (mc:PATH for multiple choice)
  n: number; // problems (held-out split); for bpb, validation batches
  seed: number; // which problems are drawn
  tool: boolean; // allow the calculator (the engine runs the tool hook)
  k: number; // also report pass@k with k samples at temperature 1 (0 = off)
  maxTokens: number; // reply length limit
  data?: string; // gsm8k's JSONL file; bpb's text (default: the built-in corpus)
  digits?: number; // arithmetic's operand digits
}

export const EVAL_DEFAULTS: Omit<EvalSpec, 'task'> = { n: 100, seed: 1, tool: true, k: 0, maxTokens: 64 };

export interface EvalResult {
  task: string; // the task as reported, e.g. 'arithmetic (tool)'
  accuracy: number; // pass@1 (or 1 − normalised bpb for... no: bpb reports its value in `value`)
  baseline: number; // chance accuracy
  n: number; // problems scored
  skipped?: number; // left out: prompt too long for the context
  passAtK?: number;
  k?: number;
  value?: number; // for bpb: bits per byte (accuracy is NaN)
  seconds: number;
}

// (chatSuppress lives with the chat rendering in tokenizer/chat.ts; bench/rl-memory.bench.ts imports it from here)
export { chatSuppress };

/** The ids of a reply without its stop token, as parts: text, tool calls, tool results. */
export function replyParts(tok: Tokenizer, tokens: number[]) {
  const end = tok.specialId(SPECIALS.assistantEnd);
  const ids = tokens.filter((t) => t !== end && t !== tok.bosId);
  return parseAssistantOutput(tok, ids);
}

export async function runEval(model: GPT, tok: Tokenizer, spec: EvalSpec): Promise<EvalResult> {
  const t0 = performance.now();
  const rng = new T.Rng(spec.seed);
  const done = (r: Omit<EvalResult, 'seconds'>): EvalResult => ({ ...r, seconds: (performance.now() - t0) / 1000 });
  const engine = new Engine(model, { maxRows: 32 });
  const gen = async (problems: GenProblem[], tool: boolean) =>
    evalGenerative(engine, problems, {
      maxTokens: spec.maxTokens, stop: chatStops(tok), suppress: chatSuppress(tok),
      afterToken: tool ? toolHook(tok, defaultToolRegistry()) : undefined, k: spec.k, seed: spec.seed,
    });
  const prompt = (messages: Message[]) => renderForCompletion(tok, messages);
  const withTool = (name: string) => `${name} (${spec.tool ? 'tool' : 'no tool'})`;

  if (spec.task === 'bpb') {
    // held-out text: a fresh draw of the built-in corpus (another seed than pretraining's), or --data
    const { docs, source } = spec.data
      ? await loadDocuments({ data: spec.data, textField: 'text', maxChars: 0 })
      : { docs: generateSyntheticCorpus({ stories: 300, seed: 98765 }), source: 'synthetic (seed 98765)' };
    const corpus = tokenizeDocuments(docs, tok, { valFraction: 0.5 });
    const T_ = Math.min(128, model.config.maxSeqLen);
    const r = await evaluate(model, corpus.val, 8, T_, spec.n, tokenByteLengths(tok));
    return done({ task: `bpb (${source})`, accuracy: NaN, baseline: NaN, n: r.tokens, value: r.bpb });
  }
  if (spec.task === 'story-qa') {
    const items = storyQA(spec.n, spec.seed, 'test');
    const problems = items.map((e) => ({ prompt: prompt(e.messages.slice(0, -1)), check: (r: { tokens: number[] }) => scoreStoryQA(replyParts(tok, r.tokens), e.answer) }));
    const r = await gen(problems, spec.tool);
    return done({ task: 'story-qa', accuracy: r.passAt1, baseline: chanceBaseline({ kind: 'generative' }), n: r.n, skipped: r.skipped, passAtK: r.passAtK, k: r.k });
  }
  if (spec.task === 'identity') {
    const items = identity();
    const problems = items.map((e) => ({ prompt: prompt(e.messages.slice(0, -1)), check: (r: { tokens: number[] }) => scoreIdentity(replyParts(tok, r.tokens)) }));
    const r = await gen(problems, false);
    return done({ task: 'identity', accuracy: r.passAt1, baseline: 0, n: r.n, skipped: r.skipped, passAtK: r.passAtK, k: r.k });
  }
  if (spec.task === 'arithmetic' || spec.task === 'countdown' || spec.task === 'gsm8k') {
    if (spec.task === 'gsm8k' && !spec.data) throw new UserError('--task gsm8k needs --data FILE.jsonl (GSM8K test.jsonl; `minichat data download gsm8k` fetches it)');
    const task = await getTask(spec.task, { arithmetic: spec.digits ? { digits: spec.digits } : undefined, gsm8k: spec.data ? { path: spec.data } : undefined });
    const problems: GenProblem[] = [];
    for (let i = 0; i < spec.n; i++) {
      const p = task.sample(rng, 'test');
      problems.push({ prompt: prompt(task.prompt(p, { tool: spec.tool })), check: (r) => task.reward(p, replyText(replyParts(tok, r.tokens))) >= 1 });
    }
    const r = await gen(problems, spec.tool);
    return done({ task: withTool(spec.task), accuracy: r.passAt1, baseline: 0, n: r.n, skipped: r.skipped, passAtK: r.passAtK, k: r.k });
  }
  if (spec.task.startsWith('mc:')) {
    const file = spec.task.slice(3);
    const items = await readMultipleChoice(file);
    let right = 0, options = 0;
    for (const it of items.slice(0, spec.n)) {
      const p = prompt([{ role: 'user', content: it.question }]);
      const lps = await optionLogprobs(model, p, it.options.map((o) => tok.encodeOrdinary(o)));
      if (scoreMultipleChoice(lps, it.answer)) right++;
      options += it.options.length;
    }
    const n = Math.min(items.length, spec.n);
    // chance: the mean over questions of 1 / their option count
    return done({ task: `mc:${file}`, accuracy: right / n, baseline: chanceBaseline({ kind: 'multiple-choice', options: options / n }), n });
  }
  throw new UserError(`unknown eval task "${spec.task}"; choose from: ${EVAL_TASKS.join(', ')}`);
}

/** JSONL of {"question": string, "options": string[], "answer": index}; errors name file:line. */
export async function readMultipleChoice(file: string): Promise<{ question: string; options: string[]; answer: number }[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UserError(`${file}: no such file`);
  }
  const out: { question: string; options: string[]; answer: number }[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let rec: { question?: unknown; options?: unknown; answer?: unknown };
    try {
      rec = JSON.parse(line);
    } catch {
      throw new UserError(`${file}:${i + 1}: not valid JSON`);
    }
    const { question, options, answer } = rec;
    if (typeof question !== 'string' || !Array.isArray(options) || options.length < 2 || !options.every((o) => typeof o === 'string')) {
      throw new UserError(`${file}:${i + 1}: expected {"question": string, "options": [at least 2 strings], "answer": index}`);
    }
    if (!(Number.isInteger(answer) && (answer as number) >= 0 && (answer as number) < options.length)) throw new UserError(`${file}:${i + 1}: "answer" must be an index into "options"`);
    out.push({ question, options: options as string[], answer: answer as number });
  });
  if (out.length === 0) throw new UserError(`${file}: no questions`);
  return out;
}
