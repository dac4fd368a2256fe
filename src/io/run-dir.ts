// Which command made a directory, so that no command deletes or overwrites what it did not
// create. Every directory minichat writes a run or an export into holds
//
//   made-by.json   {"command": "pretrain", "options": {...}, "created": "2026-12-02T19:00:00.000Z"}
//
// written when the command first claims the directory. Before writing, a command claims its
// --out with claimRunDir, which allows
//
//   - a new directory, or an empty one;
//   - one made by the same command: a training command (pretrain, sft, rl) continues it only
//     with --resume, and never starts over on top of a checkpoint; a command that replaces its
//     output (speedrun, export) may replace it;
//
// and refuses everything else with one line naming the directory and what to do. Directories
// written before made-by.json existed are recognised by their files (legacyMaker).
//
// A one-file output (export --format file) carries the same mark in its safetensors metadata,
// "made_by": the command; claimOutFile allows a new path or a file with its own command's mark.
//
// Node-only.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { UserError } from '../util/errors.ts';
import { findCheckpoint } from './checkpoint.ts';
import { decodeSafetensors } from './safetensors.ts';

export const MADE_BY = 'made-by.json';

export interface MadeBy {
  command: string; // the minichat command: pretrain, sft, rl, speedrun, export, ...
  options: Record<string, unknown>; // the options it ran with
  created: string; // ISO time of the first claim
}

function readJson(path: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

/** What made a directory written before made-by.json existed, from the files it holds; or null. */
export function legacyMaker(dir: string): string | null {
  if (existsSync(join(dir, 'pipeline.json'))) return 'speedrun';
  const stage = readJson(join(dir, 'options.json'))?.stage;
  if (stage === 'sft' || stage === 'rl') return stage;
  if (existsSync(join(dir, 'spec.json')) && existsSync(join(dir, 'checkpoint'))) return 'pretrain';
  if (existsSync(join(dir, 'meta.json')) && existsSync(join(dir, 'tokens.bin'))) return 'data prepare';
  if (existsSync(join(dir, 'tokenizer.tiktoken')) && !existsSync(join(dir, 'config.json')) && readdirSync(dir).every((f) => f.startsWith('tokenizer'))) return 'tokenizer train';
  if (existsSync(join(dir, 'qknorm-muon.md'))) return 'experiment qknorm-muon';
  if (existsSync(join(dir, 'grpo-vs-dapo.svg'))) return 'experiment grpo-vs-dapo';
  if (existsSync(join(dir, 'dual-lora.json'))) return 'experiment dual-lora';
  if (existsSync(join(dir, 'tokenizer_minichat.json')) && existsSync(join(dir, 'model.safetensors')) && !existsSync(join(dir, 'state.json'))) return 'export';
  return null;
}

/** The command that made `dir` (its made-by.json, else legacyMaker), or null. */
export function madeBy(dir: string): string | null {
  const m = readJson(join(dir, MADE_BY));
  if (m && typeof m.command === 'string') return m.command;
  // a directory inside a marked run (runs/t1/tokenizer) is part of that run, whatever its files look like
  if (existsSync(join(dirname(resolve(dir)), MADE_BY))) return null;
  return legacyMaker(dir);
}

/** Write `dir`/made-by.json (creating `dir`). */
export function writeMadeBy(dir: string, command: string, options: Record<string, unknown>): void {
  mkdirSync(dir, { recursive: true });
  const m: MadeBy = { command, options, created: new Date().toISOString() };
  writeFileSync(join(dir, MADE_BY), JSON.stringify(m, null, 2) + '\n');
}

export interface Claim {
  /** true: `dir` held a previous output of the same command (which a replacing command may now remove) */
  own: boolean;
}

/**
 * Claim `dir` as the output of `minichat <command>` (see the header). `mode` is 'resume' for
 * training commands (an existing run of the same command continues only with `resume`) and
 * 'replace' for commands whose output may be replaced by their next run. On success `dir`
 * exists and holds made-by.json (a new one, or the one already there); on refusal nothing is
 * touched.
 */
export async function claimRunDir(
  dir: string, command: string, o: { mode: 'resume' | 'replace'; resume?: boolean; options?: Record<string, unknown> },
): Promise<Claim> {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new UserError(`${dir} is a file, not a directory: choose another --out`);
  const entries = existsSync(dir) ? readdirSync(dir) : [];
  if (entries.length === 0) {
    writeMadeBy(dir, command, o.options ?? {});
    return { own: false };
  }
  const maker = madeBy(dir);
  if (maker === null) {
    throw new UserError(`${dir} is not empty and was not made by minichat ${command} (it has no ${MADE_BY}): choose a new or empty directory for --out`);
  }
  if (maker !== command) {
    throw new UserError(`${dir} was made by minichat ${maker}, not ${command} (see its ${MADE_BY}): choose another --out`);
  }
  if (o.mode === 'resume' && !o.resume && (await findCheckpoint(join(dir, 'checkpoint')))) {
    throw new UserError(`${dir} already holds a checkpoint: pass --resume to continue it, or choose another --out`);
  }
  // adopt a legacy directory: from now on it says what made it
  if (!existsSync(join(dir, MADE_BY))) writeMadeBy(dir, command, o.options ?? {});
  return { own: true };
}

/**
 * Claim the file `path` as the output of `minichat <command>`: a new path (its parent
 * directory is created), or a .safetensors file whose metadata says made_by = command (which
 * may be replaced). Returns the metadata to write into the file.
 */
export function claimOutFile(path: string, command: string): Record<string, string> {
  if (existsSync(path)) {
    if (statSync(path).isDirectory()) throw new UserError(`${path} is a directory: --out names the one file to write (e.g. ${join(path, 'model.safetensors')})`);
    let maker: string | undefined;
    try {
      maker = decodeSafetensors(readFileSync(path), path).metadata.made_by;
    } catch {
      maker = undefined;
    }
    if (maker !== command) throw new UserError(`${path} exists and was not written by minichat ${command}: choose another --out, or remove it yourself`);
  } else mkdirSync(dirname(path), { recursive: true });
  return { made_by: command };
}

/** Is `inner` the path `outer` or inside it? */
export function isWithin(inner: string, outer: string): boolean {
  const r = relative(resolve(outer), resolve(inner));
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}
