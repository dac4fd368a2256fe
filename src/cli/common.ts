// Helpers shared by the CLI commands: flag parsers that reject bad values with a clear
// message, backend selection, and the progress line.
import { availableParallelism, cpus } from 'node:os';
import { type Command, InvalidArgumentError } from 'commander';
import type { Backend } from '../backend/backend.ts';
import { cpu } from '../backend/cpu.ts';
import { DEFAULT_THREADS_CAP, defaultThreads } from '../backend/platform.ts';
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';

// Strict: the whole value must be the number ("10abc", "1.5", "", "0x10" and "1e3" are not
// integers here; Number() and parseInt would accept some of them).
export function int(v: string): number {
  const n = /^[+-]?\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`expected an integer, got "${v}"`);
  return n;
}
export function posInt(v: string): number {
  const n = int(v);
  if (n <= 0) throw new InvalidArgumentError(`expected a positive integer, got "${v}"`);
  return n;
}
export function nonNegInt(v: string): number {
  const n = int(v);
  if (n < 0) throw new InvalidArgumentError(`expected an integer >= 0, got "${v}"`);
  return n;
}
export function num(v: string): number {
  const n = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got "${v}"`);
  return n;
}
export function nonNeg(v: string): number {
  const n = num(v);
  if (n < 0) throw new InvalidArgumentError(`expected a number >= 0, got "${v}"`);
  return n;
}
/** A number in [0, 1]. */
export function fraction01(v: string): number {
  const n = num(v);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError(`expected a number in [0, 1], got "${v}"`);
  return n;
}
export function oneOf<T extends string>(...choices: T[]) {
  return (v: string): T => {
    if (!choices.includes(v as T)) throw new InvalidArgumentError(`expected one of ${choices.join(', ')}, got "${v}"`);
    return v as T;
  };
}

/**
 * On --resume: the options the run was started with (its checkpoint's spec), for every key in
 * `keys` whose flag was not typed on this command line; typed flags win. So the command that
 * started a run, or just `--out DIR --resume`, continues it with its own steps and schedule.
 */
export function withSavedOptions<F extends object>(f: F, cmd: Command, saved: Record<string, unknown>, keys: readonly string[]): F {
  const filled = { ...f } as Record<string, unknown>;
  for (const k of keys) if (k in saved && cmd.getOptionValueSource(k) !== 'cli') filled[k] = saved[k];
  return filled as F;
}

const made = new Map<string, Backend>();

/** The help text of every command's --threads option (one place, so they cannot drift). */
export const THREADS_HELP = 'threads for the wasm backend (large matmuls split by rows over worker threads; default: $MINICHAT_THREADS if set, else min(cores, 8); 1 = no worker threads; see docs/wasm.md)';

/** The cap of the default thread count (the rule, defaultThreads, is in src/backend/platform.ts: the page uses it too). */
export { DEFAULT_THREADS_CAP };

/**
 * How many threads a backend gets. In order: the --threads flag (`typed`, undefined when not
 * given), else the MINICHAT_THREADS environment variable (`env`), else the default: min(cores,
 * DEFAULT_THREADS_CAP) for wasm, 1 for the backends without worker threads. Threads the user
 * ASKED for (flag or env var) on cpu/webgpu are refused rather than ignored; the default is
 * just not applied there. Pure (cores and env passed in), so it is unit-tested directly.
 */
export function resolveThreads(backend: string, typed: number | undefined, env: string | undefined, cores: number): number {
  let asked = typed, source = `--threads ${typed}`;
  if (asked === undefined && env !== undefined && env.trim() !== '') {
    const n = /^\s*\+?\d+\s*$/.test(env) ? Number(env) : NaN;
    if (!(Number.isSafeInteger(n) && n >= 1)) throw new UserError(`MINICHAT_THREADS must be a positive integer, got "${env}"`);
    asked = n;
    source = `MINICHAT_THREADS=${n}`;
  }
  if (asked !== undefined) {
    // only the wasm backend has worker threads: refuse rather than ignore what was asked for
    if (asked > 1 && backend !== 'wasm') throw new UserError(`${source} applies to --backend wasm only (the ${backend} backend has no worker threads)`);
    return asked;
  }
  return backend === 'wasm' ? defaultThreads(cores) : 1;
}

/** The core count the default thread count uses (os.availableParallelism: respects CPU affinity). */
function coreCount(): number {
  return typeof availableParallelism === 'function' ? availableParallelism() : cpus().length;
}

/** The backend named by --backend, made the default for new tensors. One instance per
 *  (name, threads) in a process: the speedrun's stages share it (and its worker threads).
 *  `threads` is the --threads flag as typed (undefined: MINICHAT_THREADS, else the default;
 *  see resolveThreads). */
export async function selectBackend(name: string, typedThreads?: number): Promise<Backend> {
  const threads = resolveThreads(name, typedThreads, process.env.MINICHAT_THREADS, coreCount());
  const key = `${name}:${threads}`;
  const known = made.get(key);
  if (known) {
    T.setDefaultBackend(known);
    return known;
  }
  let b: Backend;
  if (name === 'cpu') b = cpu;
  else if (name === 'wasm') {
    const { createWasmBackend } = await import('../backend/wasm.ts');
    try {
      b = await createWasmBackend({ threads });
    } catch (e) {
      throw new UserError(`${(e as Error).message}; run with --backend cpu instead`);
    }
  } else if (name === 'webgpu') {
    const { createWebGPUBackend } = await import('../backend/webgpu.ts');
    b = await createWebGPUBackend();
  } else throw new UserError(`--backend must be wasm, cpu or webgpu, got ${name}`);
  made.set(key, b);
  T.setDefaultBackend(b);
  return b;
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60), sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/**
 * Progress for long loops: a line redrawn in place on a terminal, plain lines every
 * `every` steps (and the last) otherwise. `log` prints a line above the progress line.
 */
export function progressPrinter(quiet: boolean, every = 10) {
  const tty = process.stderr.isTTY && !quiet;
  let drawn = false;
  return {
    log(line: string) {
      if (quiet) return;
      if (drawn) process.stderr.write('\r\x1b[2K');
      process.stderr.write(line + '\n');
      drawn = false;
    },
    progress(p: { step: number; steps: number; loss: number; lr: number; tokensPerSecond: number; etaSeconds: number }) {
      if (quiet) return;
      const line = `step ${p.step}/${p.steps}  loss ${p.loss.toFixed(4)}  lr ${p.lr.toExponential(2)}  ${Math.round(p.tokensPerSecond)} tok/s  ETA ${duration(p.etaSeconds)}`;
      if (tty) {
        process.stderr.write('\r\x1b[2K' + line);
        drawn = true;
      } else if (p.step % every === 0 || p.step === p.steps || p.step === 1) {
        process.stderr.write(line + '\n');
      }
    },
    done() {
      if (drawn) process.stderr.write('\n');
      drawn = false;
    },
  };
}
