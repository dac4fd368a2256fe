// minichat's command line. This is the only code that reads argv: every command lives in its
// own file under src/cli/ and calls library code with plain typed options.
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { UserError } from '../util/errors.ts';
import * as T from '../tensor/index.ts';
import { initWasmMatmul } from '../backend/wasm-matmul.ts';
import { checkpointNotices } from '../io/checkpoint.ts';
import { registerDemo } from './demo.ts';
import { registerTokenizer } from './tokenizer.ts';
import { registerData } from './data.ts';
import { registerPretrain } from './pretrain.ts';
import { registerInfer } from './infer.ts';
import { registerExperiment } from './experiment.ts';
import { registerReport } from './report.ts';
import { registerSft } from './sft.ts';
import { registerRl } from './rl.ts';
import { registerSpeedrun } from './speedrun.ts';
import { registerChat } from './chat.ts';
import { registerServe } from './serve.ts';
import { registerImport } from './import.ts';
import { registerPlan } from './plan.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export function buildProgram(): Command {
  const program = new Command('minichat')
    .description('A minimal, readable training stack for small language models.')
    .version(pkg.version, '-v, --version', 'print the version')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ showGlobalOptions: false })
    // a command's flags belong to the command they follow (`eval loss --ckpt X` is loss's --ckpt)
    .enablePositionalOptions();
  registerTokenizer(program);
  registerData(program);
  registerPretrain(program);
  registerSpeedrun(program);
  registerPlan(program);
  registerSft(program);
  registerRl(program);
  registerInfer(program);
  registerExperiment(program);
  registerReport(program);
  registerChat(program);
  registerServe(program);
  registerImport(program);
  registerDemo(program);
  // Every command: unknown flags are errors and defaults are shown in --help.
  const strict = (c: Command) => {
    c.allowUnknownOption(false).allowExcessArguments(false);
    c.commands.forEach(strict);
  };
  strict(program);
  return program;
}

/** What `parseOnly` found: the command that would run (e.g. "eval loss") and its parsed options. */
export interface ParsedCommand {
  command: string;
  opts: Record<string, unknown>;
}

/**
 * Parse `args` (what follows `minichat`) with the real program and stop just before the
 * command's action runs: the (sub)command, every flag, choices, required options and number
 * flags are checked exactly as in a real run, and nothing is executed. An unknown command or
 * flag throws commander's error (its message is what the user would see). Used by
 * test/readme-commands.test.ts to check every command the docs show.
 */
export async function parseOnly(args: string[]): Promise<ParsedCommand> {
  const program = buildProgram();
  class Parsed extends Error {
    constructor(readonly parsed: ParsedCommand) {
      super('parsed');
    }
  }
  program.commands.forEach(function quiet(c: Command) {
    c.exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
    c.commands.forEach(quiet);
  });
  program.exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
  // preAction runs after all parsing and validation, right before the action: stop there
  program.hook('preAction', (_program, cmd) => {
    const names: string[] = [];
    for (let c: Command | null = cmd; c && c !== program; c = c.parent) names.unshift(c.name());
    throw new Parsed({ command: names.join(' '), opts: cmd.opts() });
  });
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (e) {
    if (e instanceof Parsed) return e.parsed;
    throw e;
  }
  throw new Error(`minichat ${args.join(' ')}: no command would run`);
}

export async function main(argv: string[]): Promise<void> {
  // `minichat ... | head` closes stdout early: that is the reader's choice, not an error
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  // The CPU backend's fast matmul: enabled once, before any work, so a run never switches
  // kernels midway (which would change its results in the last bits).
  await initWasmMatmul();
  // `--ckpt runs/speedrun` stands for the pipeline's last stage: say which (src/io/checkpoint.ts)
  checkpointNotices.log = (line) => process.stderr.write(`minichat: ${line}\n`);
  const program = buildProgram();
  program.exitOverride();
  program.commands.forEach(function override(c: Command) {
    c.exitOverride();
    c.commands.forEach(override);
  });
  try {
    await program.parseAsync(argv);
    T.getDefaultBackend().destroy?.(); // a GPU device would otherwise keep the process alive
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version land here with exit code 0; commander already printed.
      process.exitCode = e.exitCode;
      return;
    }
    if (e instanceof UserError) {
      process.stderr.write(`minichat: ${e.message}\n`);
      process.exitCode = 1;
      return;
    }
    throw e;
  }
}
