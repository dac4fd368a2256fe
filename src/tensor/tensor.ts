// The Tensor: a shape, a dtype and a backend storage, plus what autograd needs.
//
// Memory lifecycle. GPU memory is not reclaimed in time by JavaScript's garbage collector,
// so tensors are freed explicitly:
//   - `t.dispose()` frees one tensor now;
//   - `tidy(fn)` frees every tensor created inside fn except those it returns (which move to
//     the enclosing scope) and those marked with `keep(t)`;
//   - tensors created outside any scope (parameters, optimizer state) live until disposed.
// A training step runs inside `tidy`, so its intermediates are gone when it ends and live
// memory stays flat from step to step (tested).
import type { Backend, DType, HostArray, Storage } from '../backend/backend.ts';
import { sizeOf } from '../backend/backend.ts';
import { cpu } from '../backend/cpu.ts';

let nextId = 1;
let defaultBackend: Backend = cpu;

export function setDefaultBackend(b: Backend): void {
  defaultBackend = b;
}
export function getDefaultBackend(): Backend {
  return defaultBackend;
}

/** One recorded op on the autograd tape: enough to run its gradient rule later. */
export interface TapeNode {
  op: string;
  inputs: Tensor[];
  output: Tensor;
  attrs: Record<string, unknown>;
}

/** A backend storage shared by a tensor and its views, freed when the last one is disposed. */
class Buffer {
  refs = 0;
  constructor(readonly storage: Storage, readonly backend: Backend) {}
}

export class Tensor {
  readonly id = nextId++;
  readonly shape: number[];
  readonly dtype: DType;
  readonly backend: Backend;
  readonly size: number;
  /** Which op made this tensor (for error messages). */
  readonly origin: string;
  requiresGrad = false;
  /** Accumulated gradient, set by backward() on tensors that require grad and have no op. */
  grad: Tensor | null = null;
  /** Set when this tensor is the output of a recorded op. */
  node: TapeNode | null = null;
  /** Survives the end of the enclosing tidy(). */
  kept = false;
  private buf: Buffer | null;

  constructor(buf: Buffer, shape: number[], dtype: DType, origin: string) {
    this.buf = buf;
    buf.refs++;
    this.shape = shape;
    this.dtype = dtype;
    this.backend = buf.backend;
    this.size = sizeOf(shape);
    this.origin = origin;
    if (buf.storage.length !== this.size) {
      throw new Error(`internal: storage of ${buf.storage.length} elements for shape [${shape}]`);
    }
    live.count++;
    scopes.at(-1)?.push(this);
  }

  get rank(): number {
    return this.shape.length;
  }
  get disposed(): boolean {
    return this.buf === null;
  }

  /** The backend storage; throws a clear error if this tensor was disposed. */
  get storage(): Storage {
    if (this.buf === null) {
      throw new Error(`use after dispose: ${this.describe()} (made by ${this.origin}) was disposed`);
    }
    return this.buf.storage;
  }

  /** Internal: the shared buffer, for making views. */
  get buffer(): Buffer {
    this.storage; // throws when disposed
    return this.buf!;
  }

  describe(): string {
    return `tensor #${this.id} ${this.dtype}[${this.shape}]`;
  }

  /**
   * Make this tensor hold `value`'s data (same shape and dtype) without a copy: this takes
   * over value's storage and lets go of its own. How optimizers update parameters in place
   * on every backend. `value` stays valid (it shares the storage) and is usually disposed.
   */
  assign(value: Tensor): void {
    if (value.backend !== this.backend || value.dtype !== this.dtype || value.shape.join() !== this.shape.join()) {
      throw new Error(`assign: cannot assign ${value.describe()} on ${value.backend.name} to ${this.describe()} on ${this.backend.name}`);
    }
    const old = this.buffer;
    const next = value.buffer;
    next.refs++;
    this.buf = next;
    if (--old.refs === 0) old.backend.free(old.storage);
  }

  /** Free this tensor now (its storage goes back once no view shares it). Idempotent. */
  dispose(): void {
    const buf = this.buf;
    if (buf === null) return;
    this.buf = null;
    live.count--;
    if (--buf.refs === 0) buf.backend.free(buf.storage);
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
    this.node = null;
  }

  /** Host copy of the data (waits for the device on GPU backends). */
  async data(): Promise<HostArray> {
    return this.backend.read(this.storage, this.dtype);
  }

  /** Synchronous host copy; only on backends whose memory is on the host. */
  dataSync(): HostArray {
    if (!this.backend.readSync) {
      throw new Error(`dataSync: backend ${this.backend.name} cannot read synchronously; use await t.data()`);
    }
    return this.backend.readSync(this.storage, this.dtype);
  }

  /** Plain number array (a copy). */
  async toArray(): Promise<number[]> {
    return Array.from(await this.data());
  }
  toArraySync(): number[] {
    return Array.from(this.dataSync());
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item: ${this.describe()} has ${this.size} elements, not 1`);
    return (await this.data())[0];
  }
  itemSync(): number {
    if (this.size !== 1) throw new Error(`item: ${this.describe()} has ${this.size} elements, not 1`);
    return this.dataSync()[0];
  }
}

// ---- live-memory accounting ----
const live = { count: 0 };

/** Live tensors (not yet disposed) and the bytes the default backend holds. */
export function memory(backend: Backend = defaultBackend): { tensors: number; bytes: number } {
  return { tensors: live.count, bytes: backend.bytesInUse() };
}

// ---- scopes ----
const scopes: Tensor[][] = [];

/** Keep `t` alive when the enclosing tidy() ends. Returns t. */
export function keep<T extends Tensor>(t: T): T {
  t.kept = true;
  return t;
}

function collectTensors(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) v.forEach((x) => collectTensors(x, out));
  else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    Object.values(v).forEach((x) => collectTensors(x, out));
  }
}

function endScope(scope: Tensor[], result: unknown): void {
  const returned = new Set<Tensor>();
  collectTensors(result, returned);
  const parent = scopes.at(-1);
  for (const t of scope) {
    if (returned.has(t)) parent?.push(t);
    else if (!t.kept) t.dispose();
  }
  dropDeadTapeNodes();
}

/**
 * Run fn; dispose every tensor it created except those it returns and those kept.
 * Works with async functions too, as long as scopes are not interleaved.
 */
export function tidy<R>(fn: () => R): R {
  const scope: Tensor[] = [];
  scopes.push(scope);
  let result: R;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    endScope(scope, undefined);
    throw e;
  }
  if (result instanceof Promise) {
    return result.then(
      (r) => {
        scopes.splice(scopes.lastIndexOf(scope), 1);
        endScope(scope, r);
        return r;
      },
      (e) => {
        scopes.splice(scopes.lastIndexOf(scope), 1);
        endScope(scope, undefined);
        throw e;
      },
    ) as R;
  }
  scopes.pop();
  endScope(scope, result);
  return result;
}

// ---- the autograd tape ----
export const tape: TapeNode[] = [];
let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run fn without recording anything on the tape (evaluation, optimizer steps, grad rules). */
export function noGrad<R>(fn: () => R): R {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    const r = fn();
    if (r instanceof Promise) {
      return r.finally(() => {
        gradEnabled = prev;
      }) as R;
    }
    gradEnabled = prev;
    return r;
  } catch (e) {
    gradEnabled = prev;
    throw e;
  }
}

/**
 * Run fn WITH recording, even inside noGrad (backward runs its rules under noGrad; the
 * recompute rule of `checkpoint` must record the block it re-runs). The inverse of noGrad.
 */
export function withGrad<R>(fn: () => R): R {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Forget tape nodes whose output is gone (a forward pass that never ran backward). */
function dropDeadTapeNodes(): void {
  let w = 0;
  for (const n of tape) if (!n.output.disposed) tape[w++] = n;
  tape.length = w;
}

/** Make a tensor from a backend storage; used by ops. */
export function fromStorage(s: Storage, shape: number[], dtype: DType, backend: Backend, origin: string): Tensor {
  return new Tensor(new Buffer(s, backend), shape, dtype, origin);
}

/** A view: same storage, another shape (reshape is free on contiguous tensors). */
export function viewOf(t: Tensor, shape: number[], origin: string): Tensor {
  return new Tensor(t.buffer, shape, t.dtype, origin);
}

/** The same values, cut off from the tape: no gradient flows through the result. */
export function detach(t: Tensor): Tensor {
  return new Tensor(t.buffer, t.shape, t.dtype, 'detach');
}
