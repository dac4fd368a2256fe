// Every command the docs show works. The test reads README.md and docs/**/*.md, extracts each
// `npx minichat …` command (in code blocks and in inline `code`, and `minichat …` lines in code
// blocks), and
//   1. parses each one with the real commander program, stopping before its action
//      (parseOnly in src/cli/main.ts): the (sub)command, every flag, choices, required options
//      and number flags must be accepted. Placeholders such as FILE or CKPT are fine values here.
//   2. runs README's commands for real, in README's order, in one scratch directory whose
//      ../shared/data holds small stand-ins for the data sets, so `../shared/data/…` paths work
//      as printed. A slow command runs with a smaller budget (BUDGETS: fewer steps, smaller
//      batches), never with one of its printed flags dropped; each must exit 0 and produce what
//      it promises (its --out, or output on stdout). What cannot run here is skipped for the
//      reason written in SKIP, and is still parsed in 1.
// It also checks README's "Commands" table: each command named there exists and takes the flags
// its row mentions.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { buildProgram, parseOnly } from '../src/cli/main.ts';
import { generateSyntheticCorpus } from '../src/data/synthetic.ts';
import { tempDir } from './tmp.ts';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin', 'minichat.mjs');

/** One command as the docs print it. */
interface DocCommand {
  where: string; // file:line
  text: string; // as printed, continuation lines joined
  args: string[]; // the words after `minichat`
  stdout?: string; // `> FILE`
}

/**
 * A shell line split into its simple commands, as sh would word-split it: quotes, backslash
 * escapes, `#` comments, and the operators && || | ; & (which end a command) and > FILE.
 */
export function shellCommands(line: string): { words: string[]; stdout?: string }[] {
  const out: { words: string[]; stdout?: string }[] = [];
  let words: string[] = [], word: string | null = null, stdout: string | undefined, redirect = false;
  const endWord = () => {
    if (word === null) return;
    if (redirect) (stdout = word), (redirect = false);
    else words.push(word);
    word = null;
  };
  const endCommand = () => {
    endWord();
    if (words.length) out.push({ words, stdout });
    (words = []), (stdout = undefined);
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") {
      const j = line.indexOf("'", i + 1);
      if (j < 0) throw new Error(`unclosed ' in: ${line}`);
      word = (word ?? '') + line.slice(i + 1, j);
      i = j;
    } else if (c === '"') {
      let s = '';
      for (i++; i < line.length && line[i] !== '"'; i++) s += line[i] === '\\' && '"\\$`'.includes(line[i + 1]) ? line[++i] : line[i];
      if (i >= line.length) throw new Error(`unclosed " in: ${line}`);
      word = (word ?? '') + s;
    } else if (c === '\\') word = (word ?? '') + line[++i];
    else if (c === '#' && word === null) break;
    else if (/\s/.test(c)) endWord();
    else if ('&|;'.includes(c)) {
      if (line[i + 1] === c) i++;
      endCommand();
    } else if (c === '>') endWord(), (redirect = true);
    else word = (word ?? '') + c;
  }
  endCommand();
  return out;
}

const KNOWN = new Set(buildProgram().commands.map((c) => c.name()));

/** Every minichat command in one markdown file, in order. */
function extract(file: string): DocCommand[] {
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  const found: DocCommand[] = [];
  const take = (text: string, lineNo: number, bare: boolean) => {
    for (const { words, stdout } of shellCommands(text)) {
      const at = words[0] === 'npx' && words[1] === 'minichat' ? 2 : bare && words[0] === 'minichat' && KNOWN.has(words[1]) ? 1 : -1;
      // a trailing `...` stands for "and more flags": the flags printed before it are checked
      const args = words.slice(at).filter((w, j, a) => !(j === a.length - 1 && /^(\.\.\.|…)$/.test(w)));
      if (at > 0) found.push({ where: `${file}:${lineNo}`, text: text.trim(), args, stdout });
    }
  };
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    if (/^\s*```/.test(lines[i])) {
      fenced = !fenced;
      continue;
    }
    if (fenced || /^ {4,}\S/.test(lines[i])) {
      // a code line; `\` at the end continues it on the next one
      let text = lines[i];
      while (text.endsWith('\\') && i + 1 < lines.length) text = text.slice(0, -1) + ' ' + lines[++i].trim();
      if (/\bminichat /.test(text)) take(text, lineNo, true);
      continue;
    }
    for (const m of lines[i].matchAll(/`([^`]+)`/g)) if (m[1].startsWith('npx minichat ')) take(m[1].replaceAll('\\|', '|'), lineNo, false);
  }
  return found;
}

const docFiles = (dir: string): string[] =>
  readdirSync(join(root, dir)).flatMap((f) => {
    const p = join(dir, f);
    return statSync(join(root, p)).isDirectory() ? docFiles(p) : f.endsWith('.md') ? [p] : [];
  });
const README = extract('README.md');
const DOCS = docFiles('docs').sort().flatMap(extract);

describe('every minichat command in README.md and docs/ parses', () => {
  it('the extraction finds them (README in its order, the docs too)', () => {
    // if extraction broke, the tests below would pass on nothing
    expect(README.length).toBeGreaterThanOrEqual(30);
    expect(DOCS.length).toBeGreaterThanOrEqual(15);
    expect(README[0].args).toEqual(['speedrun']);
    expect(README.some((c) => c.text.startsWith('npx minichat tokenizer encode') && c.stdout === 'tokens.json')).toBe(true);
    expect(DOCS.some((c) => c.where.startsWith('docs/data.md') && c.args.at(-1) === 'runs/shards/ts')).toBe(true); // joined across a `\` line end
  });

  it.each([...README, ...DOCS].map((c) => [c.where, c] as const))('%s', async (_where, c) => {
    await expect(parseOnly(c.args), c.text).resolves.toMatchObject({ command: expect.any(String) });
  });

  it('parseOnly refuses what a real run refuses, and runs nothing', async () => {
    await expect(parseOnly(['pretrain', '--bogus'])).rejects.toThrow(/unknown option '--bogus'/);
    await expect(parseOnly(['eval', 'lost', '--ckpt', 'X'])).rejects.toThrow(/too many arguments|unknown command/);
    await expect(parseOnly(['eval', 'loss', '--ckpt', 'X'])).rejects.toThrow(/required option '--tokens <file>'/);
    await expect(parseOnly(['pretrain', '--steps', '10abc'])).rejects.toThrow(/expected an integer/);
    await expect(parseOnly(['export', '--format', 'zip', '--ckpt', 'X', '--out', 'Y'])).rejects.toThrow(/zip/);
    const out = join(tempDir('mc-parse-'), 'never');
    await expect(parseOnly(['eval', 'loss', '--ckpt', 'CKPT', '--tokens', 'FILE'])).resolves.toMatchObject({ command: 'eval loss', opts: { ckpt: 'CKPT' } });
    await expect(parseOnly(['pretrain', '--steps', '1', '--out', out])).resolves.toMatchObject({ command: 'pretrain', opts: { steps: 1 } });
    expect(existsSync(out), 'parseOnly must not run the command').toBe(false);
  });
});

describe("README's Commands table", () => {
  const text = readFileSync(join(root, 'README.md'), 'utf8').split('\n');
  const start = text.findIndex((l) => l.startsWith('| command |'));
  const rows: string[][] = [];
  for (let i = start + 2; start >= 0 && text[i]?.startsWith('|'); i++) rows.push(text[i].split(/(?<!\\)\|/).slice(1, -1).map((s) => s.trim()));

  /** The command at `path` ("eval loss") in the real program, or undefined. */
  const find = (path: string[]): Command | undefined => path.reduce<Command | undefined>((c, name) => c?.commands.find((s) => s.name() === name), buildProgram());

  it('names commands that exist, with the flags each row mentions', () => {
    expect(rows.length).toBeGreaterThanOrEqual(15);
    for (const [name, what] of rows) {
      const m = name.match(/^`minichat ([^`]+)`$/);
      expect(m, `Commands row "${name}"`).not.toBeNull();
      // `minichat tokenizer train\|encode` is one row for several subcommands
      const words = m![1].split(' ');
      const last = words.pop()!;
      for (const alt of last.split('\\|')) {
        const cmd = find([...words, alt]);
        expect(cmd, `README Commands: minichat ${[...words, alt].join(' ')} is a command`).toBeDefined();
        for (const [flag] of what.matchAll(/--[a-z][a-z0-9-]*/g)) {
          const known = cmd!.options.some((o) => o.long === flag);
          expect(known, `README Commands: minichat ${[...words, alt].join(' ')} takes ${flag}`).toBe(true);
        }
      }
    }
  });
});

// ---- 2. running README's commands ----------------------------------------------------------

/** README commands this test does not run, and why (each is still parsed above). */
const SKIP: [RegExp, string][] = [
  [/^serve\b/, 'a server runs until stopped: test/serve-cli.test.ts and serve-load.test.ts start the real one'],
  [/^experiment\b/, 'minutes of training: the experiments have their own tests (test/*experiment*, rl-dual)'],
  [/^data download\b/, 'needs the network: test/data-download.test.ts serves the files locally'],
  [/--backend webgpu/, 'needs a WebGPU adapter: test/webgpu-model.test.ts runs this on SwiftShader'],
];

/**
 * Smaller budgets for the slow commands: `--steps n` becomes ceil(n / divisor) (at least 1, so a
 * `--resume` to more steps still has steps to go), `set` flags are added or replace the printed
 * value. Nothing printed is dropped.
 */
const BUDGETS: Record<string, { divisor?: number; defaultSteps?: number; set?: Record<string, string> }> = {
  speedrun: {
    set: { '--steps': '4', '--batch-size': '2', '--seq-len': '32', '--synthetic-stories': '60', '--vocab-size': '300', '--eval-batches': '1', '--sample-tokens': '4',
      '--sft-steps': '2', '--sft-batch-size': '2', '--eval-problems': '2' },
  },
  pretrain: { divisor: 50, set: { '--batch-size': '2', '--seq-len': '32', '--synthetic-stories': '60', '--vocab-size': '300', '--eval-batches': '1', '--sample-tokens': '4' } },
  sft: { divisor: 100, defaultSteps: 200, set: { '--batch-size': '2', '--builtin-examples': '40' } },
  rl: { divisor: 30, defaultSteps: 20, set: { '--group-size': '2', '--prompts-per-step': '2', '--max-tokens': '8', '--eval-problems': '2' } },
  eval: { set: { '--n': '2', '--max-tokens': '8' } },
  generate: { set: { '--max-tokens': '8' } },
  chat: { set: { '--max-tokens': '8', '--seed': '0' } }, // a fixed seed: a fresh one per reply could sample the end token first and print nothing
  demo: { set: { '--steps': '20' } },
};

/** Values the docs leave to the reader, and what this test gives for them. */
const PLACEHOLDERS: Record<string, string> = { FILE: '../shared/data/tinyshakespeare.txt' };

async function withBudget(args: string[]): Promise<string[]> {
  const a = args.map((w) => PLACEHOLDERS[w] ?? w);
  const b = BUDGETS[(await parseOnly(a)).command];
  if (!b) return a;
  const set = (flag: string, value: string) => {
    const i = a.indexOf(flag);
    if (i >= 0) a[i + 1] = value;
    else a.push(flag, value);
  };
  if (b.divisor) {
    const i = a.indexOf('--steps');
    const n = i >= 0 ? Number(a[i + 1]) : b.defaultSteps!;
    set('--steps', String(Math.max(1, Math.ceil(n / b.divisor))));
  }
  for (const [flag, value] of Object.entries(b.set ?? {})) set(flag, value);
  return a;
}

/** Run the CLI in `cwd` with `input` on stdin (then end of input). */
function minichat(args: string[], cwd: string, input: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd, timeout: 120_000 });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.on('error', () => {}); // a command that never reads stdin may exit first
    child.stdin.end(input);
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

/** The scratch directory: `work/` is the cwd, `shared/data/` the stand-in data sets. */
function fixture(): string {
  const dir = tempDir('mc-readme-');
  const data = join(dir, 'shared', 'data');
  mkdirSync(join(data, 'gsm8k'), { recursive: true });
  mkdirSync(join(dir, 'work'));
  const stories = generateSyntheticCorpus({ stories: 80, seed: 3 });
  writeFileSync(join(data, 'tinyshakespeare.txt'), stories.slice(0, 40).join('\n\n'));
  writeFileSync(join(data, 'tinystories_sample.txt'), stories.slice(40).join('\n<|endoftext|>\n'));
  // GSM8K's format: the worked answer with <<calculator>> annotations, then "#### answer"
  const items = Array.from({ length: 12 }, (_, i) => ({
    question: `Ann has ${i + 3} apples and buys ${2 * i + 1} more. How many apples does she have?`,
    answer: `She has ${i + 3}+${2 * i + 1} = <<${i + 3}+${2 * i + 1}=${3 * i + 4}>>${3 * i + 4} apples.\n#### ${3 * i + 4}`,
  }));
  writeFileSync(join(data, 'gsm8k', 'train.jsonl'), items.map((x) => JSON.stringify(x)).join('\n') + '\n');
  return join(dir, 'work');
}

describe("README's commands run, in README's order", () => {
  it('each exits 0 and produces its output', { timeout: 300_000 }, async () => {
    const cwd = fixture();
    const seen = new Set<string>();
    const ran: string[] = [];
    for (const c of README) {
      const key = [...c.args, '>', c.stdout ?? ''].join(' ');
      if (seen.has(key)) continue;
      seen.add(key);
      const line = c.args.join(' ');
      if (SKIP.some(([re]) => re.test(line))) continue;
      const args = await withBudget(c.args);
      const { opts } = await parseOnly(args);
      const t0 = Date.now();
      // a command without -p that reads stdin (the chat REPL) gets one line, then end of input
      const r = await minichat(args, cwd, 'Who are you?\n');
      const what = `${c.where}: minichat ${args.join(' ')}\n${r.stderr}`;
      expect(r.status, what).toBe(0);
      expect(r.stderr, what).not.toMatch(/\n\s+at /);
      if (c.stdout) writeFileSync(resolve(cwd, c.stdout), r.stdout);
      if (typeof opts.out === 'string') expect(existsSync(resolve(cwd, opts.out)), `${what}\n--out ${opts.out} was written`).toBe(true);
      else expect(r.stdout.trim().length, `${what}\nprints its result on stdout`).toBeGreaterThan(0);
      ran.push(`${((Date.now() - t0) / 1000).toFixed(1)} s  ${line}`);
      console.log(ran.at(-1));
    }
    // the stages the issue names, each run at least once
    for (const stage of ['tokenizer train', 'pretrain', 'pretrain.*--resume', 'export', 'generate', 'eval --ckpt', 'eval loss', 'chat.* -p', 'sft', 'rl', 'report']) {
      expect(ran.some((l) => new RegExp(`s  ${stage}`).test(l)), `a README command for "${stage}" ran`).toBe(true);
    }
  });
});
