// `minichat chat`: talk to a checkpoint in the terminal.
//
//   minichat chat --ckpt DIR                 a multi-turn conversation (REPL); /help lists commands
//   minichat chat --ckpt DIR -p "question"   one reply, streamed to stdout (--json: one JSON object)
//
// The conversation is kept here as a list of messages and sent whole every turn; the
// ChatModel (src/serve/chat-model.ts) renders it with the chat specials, drops the oldest
// turns if it outgrows the context, and streams the reply back.
import { InvalidArgumentError, type Command } from 'commander';
import { createInterface } from 'node:readline';
import { CHAT_DEFAULTS, defaultMaxTokens, loadChatModel, type AssistantPart, type ChatModel, type CompleteOptions, type Message } from '../serve/chat-model.ts';
import { UserError } from '../util/errors.ts';
import { nonNeg, nonNegInt, num, posInt, selectBackend, THREADS_HELP } from './common.ts';

const HELP = `commands:
  /reset            forget the conversation (the system message stays)
  /system TEXT      set the system message (empty: none) and start over
  /temperature X    set the sampling temperature (0 = greedy)
  /help             this list
  /quit             leave (or Ctrl-D)
`;

function topP(v: string): number {
  const n = num(v);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError(`expected a number in (0, 1], got "${v}"`);
  return n;
}

export function registerChat(program: Command): void {
  program
    .command('chat')
    .description('chat with a checkpoint: a multi-turn conversation, or one reply with -p')
    .requiredOption('--ckpt <dir>', 'checkpoint directory, or a run directory holding checkpoint/')
    .option('-p, --prompt <text>', 'ask one question, print the reply and exit (scriptable)')
    .option('--system <text>', 'system message that starts the conversation')
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', nonNeg, CHAT_DEFAULTS.temperature)
    .option('--top-p <p>', 'nucleus sampling: sample among the most likely tokens holding probability p (1 = all)', topP, CHAT_DEFAULTS.topP)
    .option('--top-k <k>', 'sample among the K most likely tokens (0 = all)', nonNegInt, CHAT_DEFAULTS.topK)
    .option('--max-tokens <n>', `tokens per reply at most (default: ${CHAT_DEFAULTS.maxTokens}, or half the context if smaller)`, posInt)
    .option('--seed <n>', 'sampling seed (default: a new random seed for every reply)', nonNegInt)
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
    .option('--json', 'with -p: print {"reply", "finish_reason", "usage"} as JSON instead of streaming', false)
    .action(async (o) => {
      if (o.json && o.prompt === undefined) throw new UserError('--json needs -p/--prompt (the interactive chat streams text)');
      const backend = await selectBackend(o.backend, o.threads);
      const model = await loadChatModel(o.ckpt, backend);
      try {
        const opts: CompleteOptions = {
          maxTokens: o.maxTokens ?? defaultMaxTokens(model.contextLength),
          temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed,
        };
        if (opts.maxTokens >= model.contextLength) {
          throw new UserError(`--max-tokens ${opts.maxTokens} leaves no room for the prompt in the model's ${model.contextLength}-token context`);
        }
        const system: Message[] = o.system ? [{ role: 'system', content: o.system }] : [];
        if (o.prompt !== undefined) await oneShot(model, [...system, { role: 'user', content: o.prompt }], opts, o.json);
        else await repl(model, o.system ?? '', opts);
      } finally {
        model.dispose();
      }
    });
}

/**
 * Streams a reply to the terminal with tool use bracketed: text as is, a tool call and its
 * result as `[calc(37*12) → 444]`, dimmed on a TTY (SGR 2 … 22) so it reads as the tool's
 * aside, not the model's words. Deltas arrive per part (OnText's `part`), so the brackets go
 * in where the kind of part changes; end() closes a call the reply cut off.
 */
export function toolPrinter(write: (s: string) => void, tty: boolean) {
  const dim = tty ? '\x1b[2m' : '', undim = tty ? '\x1b[22m' : '';
  let kind: AssistantPart['type'] = 'text';
  const close = () => kind !== 'text' && write(`]${undim}`);
  return {
    onText(delta: string, part: AssistantPart['type']): void {
      if (part !== kind) {
        if (kind === 'tool_call' && part === 'tool_result') write(' → '); // the call's own result
        else {
          close();
          if (part !== 'text') write(`${dim}[${part === 'tool_result' ? '→ ' : ''}`);
        }
        kind = part;
      }
      write(delta);
    },
    end(): void {
      close();
      kind = 'text';
    },
  };
}

async function oneShot(model: ChatModel, messages: Message[], opts: CompleteOptions, json: boolean): Promise<void> {
  const out = toolPrinter((s) => process.stdout.write(s), Boolean(process.stdout.isTTY));
  const c = await model.complete(messages, opts, json ? undefined : out.onText);
  out.end();
  if (json) {
    const usage = { prompt_tokens: c.promptTokens, completion_tokens: c.completionTokens, total_tokens: c.promptTokens + c.completionTokens };
    console.log(JSON.stringify({ reply: c.text, finish_reason: c.finishReason, usage, ...(c.parts?.some((p) => p.type !== 'text') ? { parts: c.parts } : {}) }));
  } else process.stdout.write('\n');
}

async function repl(model: ChatModel, system: string, opts: CompleteOptions): Promise<void> {
  const tty = Boolean(process.stdin.isTTY);
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty });
  let history: Message[] = [];
  let busy: AbortController | null = null;
  // Ctrl-C stops the reply being written; at the prompt it leaves, like Ctrl-D.
  rl.on('SIGINT', () => (busy ? busy.abort() : rl.close()));
  const say = (s: string) => process.stderr.write(s);
  say(`chatting with ${model.id} (${model.contextLength}-token context). /help for commands, Ctrl-D to leave.\n`);
  const prompt = () => tty && rl.prompt();
  rl.setPrompt('> ');
  prompt();
  // readline's async iterator buffers lines that arrive while a reply is being generated
  for await (const raw of rl) {
    const line = raw.trim();
    if (line.startsWith('/')) {
      const [cmd, ...rest] = line.split(/\s+/);
      const arg = line.slice(cmd.length).trim();
      if (cmd === '/quit' || cmd === '/exit') break;
      else if (cmd === '/help') say(HELP);
      else if (cmd === '/reset') (history = []), say('(conversation cleared)\n');
      else if (cmd === '/system') (system = arg), (history = []), say(arg ? '(system message set; conversation cleared)\n' : '(no system message; conversation cleared)\n');
      else if (cmd === '/temperature') {
        const t = Number(rest[0]);
        if (rest.length !== 1 || !Number.isFinite(t) || t < 0) say(`/temperature needs one number >= 0, got "${arg}"\n`);
        else (opts = { ...opts, temperature: t }), say(`(temperature ${t})\n`);
      } else say(`unknown command ${cmd}; /help lists them\n`);
      prompt();
      continue;
    }
    if (!line) {
      prompt();
      continue;
    }
    const turn: Message[] = [...history, { role: 'user', content: raw }];
    const messages: Message[] = system ? [{ role: 'system', content: system }, ...turn] : turn;
    busy = new AbortController();
    const out = toolPrinter((s) => process.stdout.write(s), Boolean(process.stdout.isTTY));
    try {
      const c = await model.complete(messages, opts, out.onText, busy.signal);
      out.end();
      process.stdout.write('\n');
      if (c.finishReason === 'length') say(`(stopped after ${c.completionTokens} tokens: --max-tokens)\n`);
      history = [...turn, { role: 'assistant', content: c.parts ?? c.text }];
    } catch (e) {
      out.end();
      if ((e as Error).name === 'AbortError') say('\n(stopped)\n');
      else if (e instanceof UserError) say(`${e.message}\n`); // e.g. a message too long for the context: the turn is not kept
      else throw e;
    } finally {
      busy = null;
    }
    prompt();
  }
  rl.close();
}
