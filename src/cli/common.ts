// Helpers shared by the CLI commands: flag parsers that reject bad values with a clear
// message, backend selection, and the progress line.
import { type Command, InvalidArgumentError } from 'commander';
import type { Backend } from '../backend/backend.ts';
import { cpu } from '../backend/cpu.ts';
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

/** The backend named by --backend, made the default for new tensors. One instance per
 *  (name, threads) in a process: the speedrun's stages share it (and its worker threads). */
export async function selectBackend(name: string, threads = 1): Promise<Backend> {
  // only the wasm backend has worker threads: refuse rather than ignore the flag
  if (threads > 1 && name !== 'wasm') throw new UserError(`--threads ${threads} applies to --backend wasm only (the ${name} backend has no worker threads)`);
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
