// Batches for language-model training: (B, T) windows of token ids and their targets.
//
// A language model learns to predict token t+1 from tokens 0..t. So a training example is a
// window of T+1 consecutive tokens: x is the first T, y the last T (x shifted by one).
// Every position in the window is a prediction, so one window gives T training signals.
//
//   tokens:  ... [BOS] Once upon a time , there ...
//   x:             BOS  Once upon a    time ,
//   y:             Once upon a   time ,    there
//
// Training (BatchLoader): windows start at random positions, drawn from the loader's own
// seeded Rng, so a run is reproducible and, with getState()/setState() saved in the
// checkpoint, a resumed run sees exactly the batches it would have seen without stopping.
// Windows cross document boundaries freely: the BOS token at each document start tells the
// model that what follows is unrelated (as in nanoGPT / GPT-2 pretraining).
//
// Evaluation (evalBatches): sequential, non-overlapping windows over the whole validation
// array, so every validation token is predicted exactly once and the loss is the same
// number every time it is computed.
//
// Browser-safe: no Node imports.
import { Rng, type RngState } from '../tensor/random.ts';
import { UserError } from '../util/errors.ts';

/** Token ids as stored in shards: uint16 when the vocabulary fits, else int32. */
export type TokenArray = Uint16Array | Int32Array;

export interface Batch {
  /** Inputs, row-major (B, T). */
  x: Int32Array;
  /** Targets: y[b, t] = the token after x[b, t]. (B, T) */
  y: Int32Array;
  /** Rows in this batch (the last evaluation batch may have fewer than asked). */
  B: number;
  /** Sequence length. */
  T: number;
}

export interface LoaderState {
  /** The loader's Rng state: the next window positions follow from it alone. */
  rng: RngState;
  /** How many batches have been served (for logs and sanity checks on resume). */
  batches: number;
}

function checkShape(n: number, B: number, T: number, what: string): void {
  if (!(Number.isInteger(B) && B > 0)) throw new UserError(`batch size must be a positive integer, got ${B}`);
  if (!(Number.isInteger(T) && T > 0)) throw new UserError(`sequence length must be a positive integer, got ${T}`);
  if (n < T + 1) {
    throw new UserError(
      `the ${what} data has ${n} tokens, but a window of sequence length ${T} needs at least ${T + 1} ` +
        `(T inputs plus one target): use more data or a shorter sequence length (at most ${Math.max(1, n - 1)})`,
    );
  }
}

/** Copy the window starting at `start` into row `b` of x and y. */
function fillRow(tokens: TokenArray, start: number, T: number, b: number, x: Int32Array, y: Int32Array): void {
  const off = b * T;
  for (let t = 0; t < T; t++) {
    x[off + t] = tokens[start + t];
    y[off + t] = tokens[start + t + 1];
  }
}

/** Random (B, T) training batches from one token array, deterministic for a seed. */
export class BatchLoader {
  private rng: Rng;
  private served = 0;

  constructor(
    private readonly tokens: TokenArray,
    readonly B: number,
    readonly T: number,
    seed = 0,
    what = 'training',
  ) {
    checkShape(tokens.length, B, T, what);
    this.rng = new Rng(seed);
  }

  /** Number of distinct window start positions: 0 .. N-T-1. */
  get windows(): number {
    return this.tokens.length - this.T;
  }

  /** The next batch. Each row is an independent uniformly random window. */
  next(): Batch {
    const { B, T } = this;
    const x = new Int32Array(B * T), y = new Int32Array(B * T);
    for (let b = 0; b < B; b++) fillRow(this.tokens, this.rng.int(this.windows), T, b, x, y);
    this.served++;
    return { x, y, B, T };
  }

  getState(): LoaderState {
    return { rng: this.rng.getState(), batches: this.served };
  }

  setState(s: LoaderState): void {
    this.rng.setState(s.rng);
    this.served = s.batches;
  }
}

/**
 * Sequential, non-overlapping (B, T) batches covering `tokens` from the start: window i is
 * tokens[i*T .. i*T+T] (T+1 tokens; consecutive windows share one boundary token, so each
 * token after the first is a target exactly once). The last batch may have fewer rows;
 * the leftover tokens that do not fill a whole window are skipped. `maxBatches` stops early.
 */
export function* evalBatches(tokens: TokenArray, B: number, T: number, maxBatches = Infinity): Generator<Batch> {
  checkShape(tokens.length, B, T, 'validation');
  const windows = Math.floor((tokens.length - 1) / T);
  let w = 0;
  for (let k = 0; k < maxBatches && w < windows; k++) {
    const rows = Math.min(B, windows - w);
    const x = new Int32Array(rows * T), y = new Int32Array(rows * T);
    for (let b = 0; b < rows; b++, w++) fillRow(tokens, w * T, T, b, x, y);
    yield { x, y, B: rows, T };
  }
}

/** How many batches evalBatches() will yield (for progress bars). */
export function countEvalBatches(n: number, B: number, T: number, maxBatches = Infinity): number {
  if (n < T + 1) return 0;
  return Math.min(maxBatches, Math.ceil(Math.floor((n - 1) / T) / B));
}
