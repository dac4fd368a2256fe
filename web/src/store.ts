// The browser's RunStore (src/train/store.ts): the last run kept in IndexedDB, so reloading
// the page does not lose it. The checkpoint is stored as the one-file checkpoint
// (src/io/checkpoint.ts), the same bytes the page's "Download" gives and `minichat generate
// --ckpt FILE` reads; side files and metrics records go to their own keys. IndexedDB rather
// than localStorage because a checkpoint is megabytes of binary data. Used by the worker
// (IndexedDB works in Web Workers); the page itself only clears it (Reset).
import { type CheckpointParts, decodeCheckpointFile, encodeCheckpointFile } from '../../src/io/checkpoint.ts';

const DB = 'minichat-demo', STORE = 'runs', CKPT = 'last', METRICS = 'metrics', FILE = 'file:';

export interface SavedRun {
  bytes: Uint8Array; // a one-file checkpoint, as downloaded
  step: number;
  savedAt: number; // Date.now()
}

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB: cannot open the database'));
  });
}

async function withStore<R>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest): Promise<R> {
  const db = await open();
  try {
    return await new Promise<R>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      // resolved on commit, not on the request's success: only then is the write durable
      tx.oncomplete = () => resolve(req.result as R);
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB: the transaction failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB: the transaction was aborted (storage full?)'));
    });
  } finally {
    db.close();
  }
}

export class IndexedDBStore {
  readonly where = "this browser's IndexedDB";
  private metrics: Record<string, unknown>[] = [];

  /** `onSaved` hears of every checkpoint that reached IndexedDB. */
  constructor(private readonly onSaved: (step: number) => void = () => {}) {}

  /** One put: a single IndexedDB transaction is atomic, so a crash keeps the previous run. */
  async writeCheckpoint(ckpt: CheckpointParts): Promise<void> {
    const step = ckpt.state?.step ?? 0;
    const saved: SavedRun = { bytes: encodeCheckpointFile(ckpt), step, savedAt: Date.now() };
    await withStore<void>('readwrite', (s) => s.put(saved, CKPT));
    // the metrics so far travel with the checkpoint they belong to
    await withStore<void>('readwrite', (s) => s.put(this.metrics, METRICS));
    this.onSaved(step);
  }

  async readCheckpoint(): Promise<CheckpointParts | null> {
    const saved = await withStore<SavedRun | undefined>('readonly', (s) => s.get(CKPT));
    return saved ? decodeCheckpointFile(new Uint8Array(saved.bytes), 'the run kept in IndexedDB') : null;
  }

  async appendMetrics(rec: Record<string, unknown>): Promise<void> {
    this.metrics.push(rec); // kept in memory; stored with the next checkpoint
  }

  async writeFile(name: string, data: Uint8Array | string): Promise<void> {
    await withStore<void>('readwrite', (s) => s.put(data, FILE + name));
  }
}

/** Forget the last run (the page's Reset). */
export const clearLastRun = () => withStore<void>('readwrite', (s) => s.clear());
