// The run directory: the Node implementation of RunStore (src/train/store.ts; matched by
// shape, not imported, because io/ sits below train/).
//
//   <out>/checkpoint/      the latest checkpoint, replaced atomically (checkpoint.ts header)
//   <out>/metrics.jsonl    one JSON record per line, appended
//   <out>/spec.json, <out>/tokenizer/...   side files, each written to a temporary name and renamed
//
// Node-only.
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
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
    await writeFileAtomic(path, data);
  }

  /** On resume: drop the metrics of steps after the checkpoint's (they are run again). */
  keepMetricsUpTo(step: number): Promise<void> {
    return keepMetricsUpTo(join(this.where, 'metrics.jsonl'), step);
  }
}

async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/**
 * Keep the records of a metrics.jsonl up to `step`: a run killed after its last checkpoint
 * logged steps that its resumed run logs again, and a curve drawn from the file would show
 * them twice. A line that does not parse (cut off by the kill) goes too.
 */
export async function keepMetricsUpTo(path: string, step: number): Promise<void> {
  if (!existsSync(path)) return;
  const kept = (await readFile(path, 'utf8')).split('\n').filter((line) => {
    try {
      const rec = JSON.parse(line);
      return !(typeof rec.step === 'number' && rec.step > step);
    } catch {
      return false;
    }
  });
  await writeFileAtomic(path, kept.map((l) => l + '\n').join(''));
}
