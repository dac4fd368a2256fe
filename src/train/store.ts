// Where a run writes: a small interface with two implementations, so the setup and loop in
// run.ts never touch a file system.
//
//   DirStore    (src/io/dir-store.ts, Node)   a run directory: checkpoint/ (atomic replace),
//               metrics.jsonl, spec.json, tokenizer/
//   IndexedDBStore (web/src/store.ts, browser) the last run in the browser's IndexedDB (one
//               one-file checkpoint), files handed to the page to download
//   MemoryStore (below)                       tests, and runs that keep nothing
//
// Checkpoints travel as CheckpointParts (src/io/checkpoint.ts): each store picks the container
// (a directory, or one file) from the same parts.
import type { CheckpointParts } from '../io/checkpoint.ts';

export interface RunStore {
  /** Where this store writes, in words (for messages: "runs/tiny", "this browser's IndexedDB"). */
  readonly where: string;
  /** Replace the run's checkpoint. Atomic: a crash leaves the previous one readable. */
  writeCheckpoint(ckpt: CheckpointParts): Promise<void>;
  /** The run's latest checkpoint, or null when there is none. */
  readCheckpoint(): Promise<CheckpointParts | null>;
  /** Append one metrics record (a step's loss, a validation, a sample). */
  appendMetrics(rec: Record<string, unknown>): Promise<void>;
  /** Write a side file of the run ("spec.json", "tokenizer/tokenizer.json", ...). */
  writeFile(name: string, data: Uint8Array | string): Promise<void>;
}

/** Keeps everything in memory (tests; runs that need no files). */
export class MemoryStore implements RunStore {
  readonly where = 'memory';
  checkpoint: CheckpointParts | null = null;
  metrics: Record<string, unknown>[] = [];
  files = new Map<string, Uint8Array | string>();
  async writeCheckpoint(ckpt: CheckpointParts): Promise<void> {
    this.checkpoint = ckpt;
  }
  async readCheckpoint(): Promise<CheckpointParts | null> {
    return this.checkpoint;
  }
  async appendMetrics(rec: Record<string, unknown>): Promise<void> {
    this.metrics.push(rec);
  }
  async writeFile(name: string, data: Uint8Array | string): Promise<void> {
    this.files.set(name, data);
  }
}
