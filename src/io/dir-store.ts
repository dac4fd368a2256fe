// The run directory: the Node implementation of RunStore (src/train/store.ts; matched by
// shape, not imported, because io/ sits below train/).
//
//   <out>/checkpoint/      the latest checkpoint, replaced atomically (checkpoint.ts header)
//   <out>/metrics.jsonl    one JSON record per line, appended
//   <out>/spec.json, <out>/tokenizer/...   side files, each written to a temporary name and renamed
//
// Node-only.
import { appendFile, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type CheckpointParts, findCheckpoint, readCheckpointDir, writeCheckpointDir } from './checkpoint.ts';

export class DirStore {
  constructor(readonly where: string) {}

  /** The checkpoint directory inside the run directory. */
  get checkpointDir(): string {
    return join(this.where, 'checkpoint');
  }

  async writeCheckpoint(ckpt: CheckpointParts): Promise<void> {
    await mkdir(this.where, { recursive: true });
    await writeCheckpointDir(this.checkpointDir, ckpt);
  }

  async readCheckpoint(): Promise<CheckpointParts | null> {
    const dir = await findCheckpoint(this.checkpointDir);
    return dir ? readCheckpointDir(dir) : null;
  }

  async appendMetrics(rec: Record<string, unknown>): Promise<void> {
    await mkdir(this.where, { recursive: true });
    await appendFile(join(this.where, 'metrics.jsonl'), JSON.stringify(rec) + '\n');
  }

  async writeFile(name: string, data: Uint8Array | string): Promise<void> {
    const path = join(this.where, name);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, data);
    await rename(tmp, path);
  }
}
