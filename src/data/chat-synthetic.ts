// Built-in SFT data, generated offline from a seed: enough for a small base model (pretrained
// on the synthetic stories) to learn the chat format, answer questions about a story, call
// the calculator, and say what it is.
//
// Three tasks, each example carrying its gold answer so the same generators feed the evals:
//
//   story-QA     a story from the synthetic world (src/data/synthetic.ts) and a question about
//                it: who (the hero, the friend), what (the object), where (the place), what
//                kind (the friend's kind). The reply is only the short answer ("It was Ben.",
//                "The park."), so it can be scored by exact match (src/eval/tasks.ts).
//                Why "It was Ben." and not "Ben.": in the story a name always follows a space
//                or a quote, so BPE makes it the token " Ben"; a reply that starts with "Ben"
//                would need the different token "Ben", and the model would have to learn a
//                second spelling of every name before it could copy one. After "It was" the
//                reply's name is the story's own token, which a copying head can just copy.
//   arithmetic   "What is 37 * 12?" answered with the calculator:
//                  <|tool_call_start|>calc(37*12)<|tool_call_end|>
//                  <|tool_result_start|>444<|tool_result_end|>The answer is 444.
//                or, without the tool, for small problems the model can learn by heart:
//                  "3 + 4 = 7. The answer is 7."
//   identity     a few paraphrased questions about who the assistant is, with fixed answers.
//
// Train / held-out ('test') splits, by data/split.ts (the RL tasks' rule too). An example
// belongs to a split by a hash of its content (the story text; the problem "37*12"), not by
// its position in a stream: ~10% of all possible stories and problems are held out, whatever
// the seed. So held-out examples never appear in
// training data made with ANY seed — the held-out score measures generalisation, not
// memory. (Identity examples are a fixed set, meant to be memorised; they have no split.)
// Different seeds give different samples of the same split; a split can repeat an example
// when its space is small (1-digit arithmetic has only a few hundred problems).
//
// (Pure: no Node imports.)
import { splitOf, type Split } from './split.ts';
import { Rng } from '../tensor/random.ts';
import type { Message } from '../tokenizer/chat.ts';
import { calculate } from '../tools/calculator.ts';
import { syntheticStory, type StoryFacts } from './synthetic.ts';

export type ChatTask = 'story-qa' | 'arithmetic' | 'identity' | 'gsm8k';
export { splitOf, type Split } from './split.ts';

/** One SFT / eval example: the conversation (ending with the gold assistant turn) and the
 *  short gold answer a reply is scored against. */
export interface ChatExample {
  task: ChatTask;
  messages: Message[];
  answer: string;
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)];
const cap = (s: string) => s[0].toUpperCase() + s.slice(1);
const article = (w: string) => (/^[aeiou]/i.test(w) ? 'an' : 'a');

/** Draw until `accept` holds; a split always has members, but a bug must not hang a run. */
function drawUntil<T>(draw: () => T, accept: (x: T) => boolean, what: string): T {
  for (let tries = 0; tries < 100_000; tries++) {
    const x = draw();
    if (accept(x)) return x;
  }
  throw new Error(`chat-synthetic: no ${what} found in 100000 draws`);
}

function checkCount(n: number, who: string): void {
  if (!(Number.isInteger(n) && n >= 0)) throw new RangeError(`${who}: n must be a non-negative integer, got ${n}`);
}

// ---- story-QA ---------------------------------------------------------------------------

interface StoryQuestion {
  question: (f: StoryFacts) => string;
  /** The gold answer (what exact match compares against). */
  answer: (f: StoryFacts) => string;
  /** The assistant's reply: the answer alone, as a short sentence. */
  reply: (f: StoryFacts) => string;
}

const QUESTIONS: StoryQuestion[] = [
  { question: () => 'Who is the hero of the story?', answer: (f) => f.hero.name, reply: (f) => `It is ${f.hero.name}.` },
  { question: (f) => `Who helped ${f.hero.name}?`, answer: (f) => f.friend.name, reply: (f) => `It was ${f.friend.name}.` },
  { question: (f) => `What is the name of ${f.hero.name}'s friend?`, answer: (f) => f.friend.name, reply: (f) => `It is ${f.friend.name}.` },
  { question: (f) => `What did ${f.hero.name} want?`, answer: (f) => f.object, reply: (f) => `The ${f.object}.` },
  { question: (f) => `What did ${f.hero.name} see?`, answer: (f) => f.object, reply: (f) => `The ${f.object}.` },
  { question: (f) => `Where did ${f.hero.name} go?`, answer: (f) => f.place, reply: (f) => `The ${f.place}.` },
  { question: (f) => `Where did ${f.hero.name} see the ${f.object}?`, answer: (f) => f.place, reply: (f) => `The ${f.place}.` },
  { question: (f) => `What is ${f.friend.name}?`, answer: (f) => f.friend.kind, reply: (f) => `${cap(article(f.friend.kind))} ${f.friend.kind}.` },
];

/** n story-QA examples of a split, deterministic for a seed. */
export function storyQA(n: number, seed: number, split: Split): ChatExample[] {
  checkCount(n, 'storyQA');
  const rng = new Rng(seed);
  const out: ChatExample[] = [];
  for (let i = 0; i < n; i++) {
    const s = drawUntil(() => syntheticStory(rng), (st) => splitOf(st.text) === split, `${split} story`);
    const q = pick(rng, QUESTIONS);
    out.push({
      task: 'story-qa',
      messages: [
        { role: 'user', content: `${s.text}\n\n${q.question(s.facts)}` },
        { role: 'assistant', content: q.reply(s.facts) },
      ],
      answer: q.answer(s.facts),
    });
  }
  return out;
}

// ---- arithmetic -------------------------------------------------------------------------

export interface ArithmeticOptions {
  /** Solve with the calculator (tool call + result + answer), or answer directly. */
  tool: boolean;
  /** Operands have 1..digits digits. Default 3 with the tool, 1 without. */
  digits?: number;
}

type Op = '+' | '-' | '*' | '/';
const OP_WORDS: Record<Op, string> = { '+': 'plus', '-': 'minus', '*': 'times', '/': 'divided by' };
const ASK: ((a: number, op: Op, b: number) => string)[] = [
  (a, op, b) => `What is ${a} ${op} ${b}?`,
  (a, op, b) => `Calculate ${a} ${op} ${b}.`,
  (a, op, b) => `What is ${a} ${OP_WORDS[op]} ${b}?`,
  (a, op, b) => `${a} ${op} ${b} = ?`,
  (a, op, b) => `Please work out ${a} ${OP_WORDS[op]} ${b}.`,
];
const PREFACES = ['Let me calculate.', 'I will use the calculator.', 'Let me check.'];

/** n arithmetic examples of a split (see ArithmeticOptions), deterministic for a seed. */
export function arithmetic(n: number, seed: number, split: Split, opts: ArithmeticOptions): ChatExample[] {
  checkCount(n, 'arithmetic');
  const digits = opts.digits ?? (opts.tool ? 3 : 1);
  if (!(Number.isInteger(digits) && digits >= 1 && digits <= 6)) throw new RangeError(`arithmetic: digits must be 1..6, got ${digits}`);
  const rng = new Rng(seed);
  // a length of 1..digits digits, then a number of that length: short operands stay common
  const operand = () => {
    const d = 1 + rng.int(digits);
    const lo = d === 1 ? 0 : 10 ** (d - 1);
    return lo + rng.int(10 ** d - lo);
  };
  const ops: Op[] = opts.tool ? ['+', '-', '*', '/'] : ['+', '-', '*'];
  const draw = () => {
    const op = pick(rng, ops);
    let a = operand(), b = operand();
    if (op === '/') {
      // exact division only: a = b * q, so the answer is an integer the model can check
      b = Math.max(1, b);
      a = b * rng.int(100);
    }
    return { a, op, b, expr: `${a}${op}${b}` };
  };
  const out: ChatExample[] = [];
  for (let i = 0; i < n; i++) {
    const p = drawUntil(draw, (x) => splitOf(x.expr) === split, `${split} problem`);
    const result = calculate(p.expr); // the same text the tool will answer at inference
    const user = pick(rng, ASK)(p.a, p.op, p.b);
    const content = opts.tool
      ? [
          ...(rng.int(2) === 0 ? [{ type: 'text' as const, text: pick(rng, PREFACES) }] : []),
          { type: 'tool_call' as const, text: `calc(${p.expr})` },
          { type: 'tool_result' as const, text: result },
          { type: 'text' as const, text: `The answer is ${result}.` },
        ]
      : `${p.a} ${p.op} ${p.b} = ${result}. The answer is ${result}.`;
    out.push({ task: 'arithmetic', messages: [{ role: 'user', content: user }, { role: 'assistant', content }], answer: result });
  }
  return out;
}

// ---- identity ---------------------------------------------------------------------------

const IDENTITY: [string, string][] = [
  ['Who are you?', 'I am minichat, a small language model trained from scratch in TypeScript.'],
  ['What is your name?', 'My name is minichat.'],
  ['What are you?', 'I am minichat, a small model trained on simple stories and taught to chat.'],
  ['Are you a person?', 'No. I am minichat, a small language model. I can answer questions about stories and use a calculator.'],
  ['Who made you?', 'I am minichat. I was trained with the minichat training stack, written in TypeScript.'],
  ['Introduce yourself.', 'Hello! I am minichat, a small language model. I know simple stories and I can use a calculator.'],
  ['What can you do?', 'I am minichat. I can answer questions about short stories and do arithmetic with a calculator.'],
  ['Are you ChatGPT?', 'No, I am minichat, a much smaller model trained from scratch.'],
];

/** The fixed identity set (answer "minichat": a reply should name itself). */
export function identity(): ChatExample[] {
  return IDENTITY.map(([q, a]) => ({
    task: 'identity' as const,
    messages: [{ role: 'user' as const, content: q }, { role: 'assistant' as const, content: a }],
    answer: 'minichat',
  }));
}

// ---- the built-in mix -------------------------------------------------------------------

/** Shares of the built-in mix; identity takes what is left. */
export const BUILTIN_MIX = { storyQA: 0.3, arithmeticTool: 0.45, arithmeticNoTool: 0.15 };

/**
 * n training examples: story-QA, arithmetic with and without the tool, and the identity set
 * repeated to fill its share; shuffled, deterministic for a seed, train split only.
 */
export function builtinChatMix(n: number, seed: number): ChatExample[] {
  checkCount(n, 'builtinChatMix');
  const nStory = Math.round(n * BUILTIN_MIX.storyQA);
  const nTool = Math.round(n * BUILTIN_MIX.arithmeticTool);
  const nNoTool = Math.min(n - nStory - nTool, Math.round(n * BUILTIN_MIX.arithmeticNoTool));
  const nId = n - nStory - nTool - nNoTool;
  // each part from its own seed, so changing one share does not reshuffle the others
  const ids = identity();
  const all = [
    ...storyQA(nStory, seed * 4 + 1, 'train'),
    ...arithmetic(nTool, seed * 4 + 2, 'train', { tool: true }),
    ...arithmetic(nNoTool, seed * 4 + 3, 'train', { tool: false }),
    ...Array.from({ length: nId }, (_, i) => ids[i % ids.length]),
  ];
  return new Rng(seed * 4).shuffle(all);
}

/** One JSONL line in the format conversations.ts reads back (plus the task and answer). */
export function exampleToJsonLine(ex: ChatExample): string {
  return JSON.stringify({ task: ex.task, answer: ex.answer, messages: ex.messages });
}
