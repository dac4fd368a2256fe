// The last run, kept in the browser's IndexedDB so that reloading the page does not lose it:
// one record holding the checkpoint file's bytes (checkpoint.ts; the chart's history is inside).
// IndexedDB rather than localStorage because a checkpoint is megabytes of binary data.
const DB = 'minichat-demo', STORE = 'runs', KEY = 'last';

export interface SavedRun {
  bytes: ArrayBuffer; // a checkpoint file, as downloaded
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
      tx.oncomplete = () => resolve(req.result as R);
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB: the transaction failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB: the transaction was aborted (storage full?)'));
    });
  } finally {
    db.close();
  }
}

export const saveLastRun = (r: SavedRun) => withStore<void>('readwrite', (s) => s.put(r, KEY));
export const loadLastRun = () => withStore<SavedRun | undefined>('readonly', (s) => s.get(KEY));
export const clearLastRun = () => withStore<void>('readwrite', (s) => s.delete(KEY));
