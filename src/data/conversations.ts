// Conversations for supervised fine-tuning (SFT): reading them, mixing sources, tokenizing
// them with their loss masks, and packing them into (x, y) batches.
//
//   JSONL / parquet ──parse──► Message[][] ──mix (weights)──► renderConversations ──► Rendered[]
//        ──ConversationBatches (shuffle per epoch, pack rows of T+1)──► { x, y } with y = -1
//          wherever no loss is taken
//
// Input formats, one conversation per JSONL line (or parquet row):
//
//   OpenAI style     {"messages": [{"role": "user", "content": "..."}, ...]}
//   MiniMind style   {"conversations": [{"role": "user", "content": "..."}, ...]}
//   GSM8K            {"question": "...", "answer": "... <<48/2=24>>24 ... #### 72"}: the
//                    answer's annotations become calculator calls (src/data/gsm8k.ts)
//
// Roles are system (first message only), user, assistant and tool; any other role is an
// error naming file:line. How tool use maps onto minichat's chat format (src/tokenizer/chat.ts),
// where one assistant turn holds its text, its calls and their results as AssistantPart[]:
//
//   - an assistant message's content is a string, or a list of parts
//     [{"type": "text", "text"}, {"type": "tool_call", "text": "calc(2+3)"},
//      {"type": "tool_result", "text": "5"}] (minichat's own format, written by chat-synthetic);
//   - OpenAI's "tool_calls": [{"function": {"name": "calc", "arguments": "..."}}] become
//     tool_call parts after the message's text. A call's text is `name(args)`: when
//     "arguments" is a JSON object with exactly one string value ({"expression": "2+3"}) that
//     value is args, otherwise the arguments string itself is;
//   - a "tool" message becomes a tool_result part of the assistant turn before it, and an
//     assistant message that follows tool messages continues that same turn. So OpenAI's
//     assistant(call) → tool(result) → assistant(text) is ONE assistant turn, exactly as the
//     engine generates it (call, forced result, more text, <|assistant_end|>).
//
// Mixing: `--data a.jsonl:2,b.jsonl:0.5,c.jsonl` — each source's weight says how many times
// it is used per epoch: 2 = every conversation twice, 0.5 = a seeded random half, 1 (the
// default) = once. Integer parts repeat the whole source; a fractional part adds that fraction
// of it, drawn without replacement with the run's seed.
//
// Tokenizing: a conversation longer than the row (T+1 tokens) is truncated (its beginning is
// kept) or skipped, as the caller chooses; either way it is counted in a summary that the SFT
// run prints, so nothing disappears silently. A conversation with no assistant token inside
// the limit teaches nothing and is skipped and counted too.
//
// Packing vs padding. Padding (one conversation per row, the rest filled with a pad token)
// is simplest but wastes most of each row when conversations are short: with T = 512 and
// 120-token conversations, ~75% of the compute goes to padding. Packing puts several whole
// conversations in one row, in order, and starts a new row when the next one does not fit
// in what is left; only the tail of each row is padding. Conversations are never split
// across rows, so every conversation is seen whole, from its <|bos|>.
//
// An honest caveat: packed conversations share a row, and causal attention lets a token see
// every earlier token in its row, including the previous conversations. Each conversation
// starts with <|bos|>, which the model learned in pretraining to read as "a new, unrelated
// text begins", so in practice it learns to ignore what came before (pretraining packs
// documents the same way). Exact isolation would need a block-diagonal attention mask per
// row (document masking), which the fused attention kernels do not take; that is a
// possible later improvement, not done here. Loss is never taken across a boundary: the
// target of the last token of a conversation is the next <|bos|>, whose mask is 0.
//
// The file readers are Node-only and load node:fs on demand, so the rest of this file
// (parsing, mixing, rendering, packing) also runs in the browser.
import { Rng, type RngState } from '../tensor/random.ts';
import { renderConversation, type AssistantPart, type Message, type Rendered } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/bpe.ts';
import { UserError } from '../util/errors.ts';
import { gsm8kToExample } from './gsm8k.ts';

// ---- parsing ------------------------------------------------------------------------------

const ROLES = ['system', 'user', 'assistant', 'tool'];

/** One raw message as it appears in the file (before conversion to Message). */
interface RawMessage {
  role?: unknown;
  content?: unknown;
  tool_calls?: unknown;
}

/**
 * Convert one record's message list to minichat's Message[]; `where` ("file:line") starts
 * every error. Throws UserError for anything that cannot be rendered.
 */
export function toMessages(raw: unknown, where: string): Message[] {
  if (!Array.isArray(raw)) throw new UserError(`${where}: "messages" must be a list of {"role", "content"} objects`);
  if (raw.length === 0) throw new UserError(`${where}: the conversation has no messages`);
  const out: Message[] = [];
  // the assistant turn that tool results and continuing assistant messages are appended to
  let turn: AssistantPart[] | null = null;
  let lastRole = '';
  raw.forEach((m: RawMessage, i) => {
    const at = `${where}: message ${i + 1}`;
    if (m === null || typeof m !== 'object') throw new UserError(`${at}: expected a {"role", "content"} object`);
    const role = m.role;
    if (typeof role !== 'string' || !ROLES.includes(role)) {
      throw new UserError(`${at}: unknown role ${JSON.stringify(role)} (expected one of ${ROLES.join(', ')})`);
    }
    if (role === 'system') {
      if (i !== 0) throw new UserError(`${at}: a system message can only come first`);
      out.push({ role, content: textContent(m.content, at) });
    } else if (role === 'user') {
      out.push({ role, content: textContent(m.content, at) });
      turn = null;
    } else if (role === 'tool') {
      if (!turn) throw new UserError(`${at}: a tool message must follow an assistant message`);
      turn.push({ type: 'tool_result', text: textContent(m.content, at) });
    } else {
      const parts = assistantParts(m, at);
      if (turn && lastRole === 'tool') turn.push(...parts); // the same turn continues after its results
      else {
        turn = parts;
        out.push({ role: 'assistant', content: turn });
      }
    }
    lastRole = role;
  });
  return out;
}

/** A user/system/tool content: a string, or a list of {"type": "text", "text"} parts. */
function textContent(c: unknown, at: string): string {
  if (typeof c === 'string') return c;
  if (Array.isArray(c) && c.every((p) => p && typeof p === 'object' && p.type === 'text' && typeof p.text === 'string')) {
    return c.map((p) => p.text).join('');
  }
  throw new UserError(`${at}: "content" must be a string (or a list of {"type": "text", "text"} parts), got ${describeValue(c)}`);
}

function assistantParts(m: RawMessage, at: string): AssistantPart[] {
  const parts: AssistantPart[] = [];
  const c = m.content;
  if (typeof c === 'string') {
    if (c.length > 0) parts.push({ type: 'text', text: c });
  } else if (Array.isArray(c)) {
    c.forEach((p, j) => {
      const ok = p && typeof p === 'object' && ['text', 'tool_call', 'tool_result'].includes(p.type) && typeof p.text === 'string';
      if (!ok) throw new UserError(`${at}: part ${j + 1} must be {"type": "text" | "tool_call" | "tool_result", "text": string}`);
      parts.push({ type: p.type, text: p.text });
    });
  } else if (!(c === null || c === undefined) || m.tool_calls === undefined) {
    // (content may be null only when the message carries tool calls, as in OpenAI's API)
    throw new UserError(`${at}: "content" must be a string or a list of parts, got ${describeValue(c)}`);
  }
  if (m.tool_calls !== undefined) {
    if (!Array.isArray(m.tool_calls)) throw new UserError(`${at}: "tool_calls" must be a list`);
    m.tool_calls.forEach((tc, j) => parts.push({ type: 'tool_call', text: openAiCallText(tc, `${at}: tool call ${j + 1}`) }));
  }
  return parts;
}

/** {"function": {"name": "calc", "arguments": "{\"expression\":\"2+3\"}"}} → "calc(2+3)". */
function openAiCallText(tc: unknown, at: string): string {
  const f = (tc as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
  if (!f || typeof f.name !== 'string' || typeof f.arguments !== 'string') {
    throw new UserError(`${at}: expected {"function": {"name": string, "arguments": string}}`);
  }
  let args = f.arguments;
  try {
    const parsed = JSON.parse(args);
    const values = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? Object.values(parsed) : [];
    if (values.length === 1 && typeof values[0] === 'string') args = values[0];
  } catch {
    // not JSON: the arguments string is used as written
  }
  return `${f.name}(${args})`;
}

const describeValue = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v);

/** Parse one JSONL record (OpenAI "messages", MiniMind "conversations", or a GSM8K item). */
export function parseConversationRecord(rec: unknown, where: string): Message[] {
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) throw new UserError(`${where}: expected a JSON object per line`);
  const o = rec as Record<string, unknown>;
  const list = o.messages ?? o.conversations;
  if (list === undefined && typeof o.question === 'string' && typeof o.answer === 'string') {
    return gsm8kToExample({ question: o.question, answer: o.answer }, where).messages;
  }
  if (list === undefined) {
    throw new UserError(`${where}: no "messages" or "conversations" field (fields: ${Object.keys(o).join(', ') || 'none'})`);
  }
  // a parquet column of JSON text (some exports store the list as a string)
  return toMessages(typeof list === 'string' ? safeJson(list, where) : list, where);
}

function safeJson(s: string, where: string): unknown {
  try {
    return JSON.parse(s);
  } catch (e) {
    throw new UserError(`${where}: not valid JSON (${(e as Error).message})`);
  }
}

/** Parse JSONL text; `file` names the source in errors (file:line, 1-based). Blank lines skip. */
export function parseConversationsJsonl(text: string, file: string): Message[][] {
  const convs: Message[][] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const where = `${file}:${i + 1}`;
    convs.push(parseConversationRecord(safeJson(line, where), where));
  }
  return convs;
}

// ---- reading files (Node only) ------------------------------------------------------------

export interface ReadConversationsOptions {
  /** Stop after this many conversations (a quick run on a big file). Default: all. */
  limit?: number;
}

/**
 * Read a .jsonl file of conversations (streamed line by line: MiniMind's 1.2 GB file is
 * longer than the longest string V8 can hold), or a .parquet file with a "messages" column.
 */
export async function readConversationFile(file: string, opts: ReadConversationsOptions = {}): Promise<Message[][]> {
  const limit = opts.limit ?? Infinity;
  if (!(limit > 0)) throw new UserError(`the conversation limit must be positive, got ${limit}`);
  if (file.toLowerCase().endsWith('.parquet')) return (await readConversationParquet(file)).slice(0, limit);
  // loaded on demand, so that the rest of this file runs in a browser
  const fsName = 'node:fs', readlineName = 'node:readline';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs');
  const readline = (await import(/* @vite-ignore */ readlineName)) as typeof import('node:readline');
  try {
    await fs.promises.stat(file);
  } catch {
    throw new UserError(`conversation file not found: ${file}`);
  }
  const lines = readline.createInterface({ input: fs.createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  const convs: Message[][] = [];
  let lineNo = 0;
  try {
    for await (const raw of lines) {
      lineNo++;
      const line = raw.trim();
      if (!line) continue;
      const where = `${file}:${lineNo}`;
      convs.push(parseConversationRecord(safeJson(line, where), where));
      if (convs.length >= limit) break;
    }
  } finally {
    lines.close();
  }
  if (convs.length === 0) throw new UserError(`${file}: no conversations found`);
  return convs;
}

/** smol-smoltalk's layout: a "messages" column of [{role, content}] lists. */
async function readConversationParquet(file: string): Promise<Message[][]> {
  const fsName = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
  const { parquetReadObjects } = await import('hyparquet');
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch {
    throw new UserError(`conversation file not found: ${file}`);
  }
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: buf, columns: ['messages'] });
  } catch (e) {
    throw new UserError(`${file}: could not read a "messages" column (${(e as Error).message})`);
  }
  return rows.map((r, i) => parseConversationRecord(r, `${file}: row ${i + 1}`));
}

// ---- mixing -------------------------------------------------------------------------------

export interface DataSource {
  path: string;
  /** Uses per epoch: 2 = twice, 0.5 = a seeded half (see the header). */
  weight: number;
}

/** Parse `FILE[:WEIGHT],FILE[:WEIGHT],...`. A weight is a positive number after the last ":". */
export function parseDataSpec(spec: string): DataSource[] {
  const items = spec.split(',').map((s) => s.trim());
  if (items.some((s) => !s)) throw new UserError(`--data "${spec}": an empty entry (expected FILE[:WEIGHT],FILE[:WEIGHT],...)`);
  return items.map((item) => {
    const m = /^(.*):([^:]*)$/.exec(item);
    // "C:\x.jsonl" and "dir:name/x.jsonl" have a ":" that is not a weight: only digits count
    if (!m || !/^[0-9.]+$/.test(m[2]) || m[1] === '') return { path: item, weight: 1 };
    const w = Number(m[2]);
    if (!(w > 0 && Number.isFinite(w))) throw new UserError(`--data "${item}": the weight must be a positive number, got "${m[2]}"`);
    return { path: m[1], weight: w };
  });
}

/** Apply a weight to one source's conversations: whole copies plus a seeded fraction. */
export function weightConversations<T>(convs: T[], weight: number, rng: Rng): T[] {
  const out: T[] = [];
  const whole = Math.floor(weight);
  for (let k = 0; k < whole; k++) out.push(...convs);
  const extra = Math.round((weight - whole) * convs.length);
  if (extra > 0) out.push(...shuffled(convs.length, rng).slice(0, extra).map((i) => convs[i]));
  return out;
}

/** Read and mix the sources of a `--data` spec. */
export async function loadConversationMix(spec: string, seed: number): Promise<Message[][]> {
  const rng = new Rng(seed);
  const all: Message[][] = [];
  for (const src of parseDataSpec(spec)) all.push(...weightConversations(await readConversationFile(src.path), src.weight, rng));
  return all;
}

// ---- tokenizing ---------------------------------------------------------------------------

export interface RenderOptions {
  /** Longest conversation in tokens; use T + 1, a row's length. */
  maxTokens: number;
  /** What to do with a longer one: keep its first maxTokens tokens, or drop it. Default truncate. */
  overLong?: 'truncate' | 'skip';
}

export interface RenderSummary {
  conversations: number; // read
  kept: number; // rendered and usable
  truncated: number; // longer than maxTokens, cut (and kept)
  skipped: number; // longer than maxTokens with overLong 'skip'
  noTargets: number; // no assistant token within maxTokens: dropped
  tokens: number; // tokens kept
  targetTokens: number; // of which trained on (mask 1)
}

/** Render conversations with their loss masks, enforcing the length limit (see the header). */
export function renderConversations(tok: Tokenizer, convs: Message[][], o: RenderOptions): { rendered: Rendered[]; summary: RenderSummary } {
  if (!(Number.isInteger(o.maxTokens) && o.maxTokens >= 2)) throw new RangeError(`renderConversations: maxTokens must be an integer >= 2, got ${o.maxTokens}`);
  const overLong = o.overLong ?? 'truncate';
  const s: RenderSummary = { conversations: convs.length, kept: 0, truncated: 0, skipped: 0, noTargets: 0, tokens: 0, targetTokens: 0 };
  const rendered: Rendered[] = [];
  for (const conv of convs) {
    let r = renderConversation(tok, conv);
    if (r.ids.length > o.maxTokens) {
      if (overLong === 'skip') {
        s.skipped++;
        continue;
      }
      r = { ids: r.ids.slice(0, o.maxTokens), lossMask: r.lossMask.slice(0, o.maxTokens) };
      s.truncated++;
    }
    const targets = r.lossMask.reduce((a, b) => a + b, 0);
    if (targets === 0) {
      s.noTargets++;
      continue;
    }
    rendered.push(r);
    s.kept++;
    s.tokens += r.ids.length;
    s.targetTokens += targets;
  }
  return { rendered, summary: s };
}

/** One line for the run's log. */
export function formatRenderSummary(s: RenderSummary): string {
  return (
    `${s.kept} of ${s.conversations} conversations kept (${s.truncated} truncated, ${s.skipped} skipped as too long, ` +
    `${s.noTargets} without assistant tokens); ${s.tokens} tokens, ${s.targetTokens} trained on`
  );
}

// ---- packing into batches -----------------------------------------------------------------

export interface ConversationBatch {
  x: Int32Array; // (B*T) inputs, row-major (B, T)
  y: Int32Array; // (B*T) targets: the next token where its mask is 1, else -1 (ignored)
  B: number;
  T: number;
  /** Number of targets that are not -1: the tokens this batch trains on. */
  tokens: number;
}

export interface ConversationBatchesState {
  epoch: number;
  /** Index into this epoch's order of the next conversation to pack. */
  pos: number;
  /** The Rng's state before this epoch's shuffle: the order is re-derived from it. */
  epochRng: RngState;
}

export interface ConversationBatchesOptions {
  /** Id written into padding positions (masked, and after the content, so never attended
   *  to by a trained position). Default 0. */
  padId?: number;
}

/**
 * Packed SFT batches: each epoch visits every conversation once in a seeded random order;
 * each batch is B rows of T+1 tokens (x = row[:-1], y = row[1:] masked), conversations
 * whole and in order, a new row started when the next one does not fit.
 * Deterministic for a seed; getState()/setState() resume exactly.
 */
export class ConversationBatches {
  private readonly rng: Rng;
  private epochRng!: RngState;
  private order: number[] = [];
  private epoch = 0;
  private pos = 0;
  private readonly padId: number;
  /** Conversations the last next() packed (so a caller can make exactly one pass). */
  lastBatchConversations = 0;

  constructor(
    private readonly convs: Rendered[],
    readonly B: number,
    readonly T: number,
    seed: number,
    opts: ConversationBatchesOptions = {},
  ) {
    if (convs.length === 0) throw new UserError('no conversations to train on (all were empty, skipped or filtered)');
    if (!(Number.isInteger(B) && B > 0 && Number.isInteger(T) && T > 0)) throw new RangeError(`ConversationBatches: B and T must be positive integers, got ${B}, ${T}`);
    convs.forEach((c, i) => {
      if (c.ids.length > T + 1) throw new RangeError(`ConversationBatches: conversation ${i} has ${c.ids.length} tokens, more than a row (T+1 = ${T + 1}); render with maxTokens = T+1`);
      if (c.ids.length !== c.lossMask.length) throw new RangeError(`ConversationBatches: conversation ${i}: ids and lossMask differ in length`);
    });
    this.padId = opts.padId ?? 0;
    this.rng = new Rng(seed);
    this.startEpoch(0);
  }

  private startEpoch(epoch: number): void {
    this.epoch = epoch;
    this.pos = 0;
    this.epochRng = this.rng.getState();
    this.order = shuffled(this.convs.length, this.rng);
  }

  /** The next conversation in this epoch's order, moving to a new epoch at the end. */
  private peek(): Rendered {
    if (this.pos >= this.order.length) this.startEpoch(this.epoch + 1);
    return this.convs[this.order[this.pos]];
  }

  next(): ConversationBatch {
    const { B, T } = this;
    const L = T + 1; // a row holds T inputs and, shifted by one, T targets
    const x = new Int32Array(B * T);
    const y = new Int32Array(B * T);
    const row = new Int32Array(L);
    const mask = new Uint8Array(L);
    let tokens = 0;
    this.lastBatchConversations = 0;
    for (let b = 0; b < B; b++) {
      row.fill(this.padId);
      mask.fill(0); // padding is never a target
      let used = 0;
      // whole conversations while the next one fits; every conversation fits an empty row
      while (used + this.peek().ids.length <= L) {
        const c = this.peek();
        row.set(c.ids, used);
        mask.set(c.lossMask, used);
        used += c.ids.length;
        this.pos++;
        this.lastBatchConversations++;
      }
      // x = row[0..T), y = row[1..T+1): position t predicts token t+1, trained iff mask[t+1]
      for (let t = 0; t < T; t++) {
        x[b * T + t] = row[t];
        const target = mask[t + 1] ? row[t + 1] : -1;
        y[b * T + t] = target;
        if (target !== -1) tokens++;
      }
    }
    return { x, y, B, T, tokens };
  }

  getState(): ConversationBatchesState {
    return { epoch: this.epoch, pos: this.pos, epochRng: { s: [...this.epochRng.s], spare: this.epochRng.spare } };
  }

  setState(st: ConversationBatchesState): void {
    this.rng.setState(st.epochRng);
    this.startEpoch(st.epoch); // replays the same shuffle, leaving the Rng where it was
    if (!(Number.isInteger(st.pos) && st.pos >= 0 && st.pos <= this.order.length)) {
      throw new UserError(`data position ${st.pos} does not fit this data (${this.order.length} conversations): was the data changed since the checkpoint?`);
    }
    this.pos = st.pos;
  }
}

/** A seeded random permutation of 0..n-1 (the Rng's Fisher–Yates). */
function shuffled(n: number, rng: Rng): number[] {
  return rng.shuffle(Array.from({ length: n }, (_, i) => i));
}
