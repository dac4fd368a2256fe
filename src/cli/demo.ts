// `minichat demo`: the tensor engine end to end on a task small enough to read in full.
// A 2-layer MLP learns to classify points of a 3-armed spiral (not linearly separable),
// trained with plain SGD + momentum; the loss is printed as it falls.
import type { Command } from 'commander';
import * as T from '../tensor/index.ts';
import { check } from '../util/errors.ts';
import { nonNeg, nonNegInt, posInt } from './common.ts';

export interface DemoOptions {
  steps: number;
  hidden: number;
  lr: number;
  seed: number;
  json: boolean;
}

/** Points on a K-armed spiral: (N*K, 2) coordinates and their arm as the label. */
export function spiral(rng: T.Rng, N: number, K: number): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(N * K * 2), y = new Int32Array(N * K);
  for (let k = 0; k < K; k++) {
    for (let i = 0; i < N; i++) {
      const r = i / N, angle = (k * 2 * Math.PI) / K + r * 4 + rng.normal() * 0.2;
      const j = k * N + i;
      x[2 * j] = r * Math.sin(angle);
      x[2 * j + 1] = r * Math.cos(angle);
      y[j] = k;
    }
  }
  return { x, y };
}

export function runDemo(o: DemoOptions, log: (line: string) => void = console.log) {
  const rng = new T.Rng(o.seed);
  const K = 3, N = 100;
  const data = spiral(rng, N, K);
  const X = T.tensor(data.x, [N * K, 2]);
  // parameters: created outside any scope, so they persist across steps
  const param = (shape: number[], std: number) => T.tensor(rng.normalArray(shape.reduce((a, b) => a * b), std), shape, { requiresGrad: true });
  const W1 = param([2, o.hidden], 1), b1 = T.zeros([o.hidden], { requiresGrad: true });
  const W2 = param([o.hidden, K], 1 / Math.sqrt(o.hidden)), b2 = T.zeros([K], { requiresGrad: true });
  const params = [W1, b1, W2, b2];
  const velocity = params.map((p) => T.zeros(p.shape));

  const forward = () => T.add(T.matmul(T.tanh(T.add(T.matmul(X, W1), b1)), W2), b2); // (N*K, K) logits
  let loss = NaN;
  const t0 = performance.now();
  for (let step = 1; step <= o.steps; step++) {
    loss = T.tidy(() => {
      const l = T.crossEntropy(forward(), data.y);
      T.backward(l);
      return l.itemSync();
    });
    // SGD with momentum 0.9: v = 0.9 v + g; p -= lr v
    T.noGrad(() =>
      T.tidy(() =>
        params.forEach((p, i) => {
          velocity[i].assign(T.add(T.mulScalar(velocity[i], 0.9), p.grad!));
          p.assign(T.sub(p, T.mulScalar(velocity[i], o.lr)));
        }),
      ),
    );
    T.zeroGrad(params);
    if (step === 1 || step % Math.max(1, Math.floor(o.steps / 10)) === 0) log(`step ${String(step).padStart(4)}  loss ${loss.toFixed(4)}`);
  }
  const accuracy = T.tidy(() => {
    const logits = forward().dataSync();
    let right = 0;
    for (let i = 0; i < N * K; i++) {
      let best = 0;
      for (let k = 1; k < K; k++) if (logits[i * K + k] > logits[i * K + best]) best = k;
      if (best === data.y[i]) right++;
    }
    return right / (N * K);
  });
  const result = { steps: o.steps, final_loss: loss, initial_loss_uniform: Math.log(K), accuracy, seconds: (performance.now() - t0) / 1000 };
  [...params, ...velocity, X].forEach((t) => t.dispose());
  return result;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('train a 2-layer MLP on a 3-armed spiral with the tensor engine (no data needed)')
    .option('--steps <n>', 'training steps', posInt, 300)
    .option('--hidden <n>', 'hidden units', posInt, 64)
    .option('--lr <x>', 'learning rate', nonNeg, 0.5)
    .option('--seed <n>', 'random seed', nonNegInt, 0)
    .option('--json', 'print one JSON summary on stdout', false)
    .action((o: DemoOptions) => {
      check(Number.isInteger(o.steps) && o.steps > 0, `--steps must be a positive integer, got ${o.steps}`);
      check(Number.isInteger(o.hidden) && o.hidden > 0, `--hidden must be a positive integer, got ${o.hidden}`);
      check(o.lr > 0, `--lr must be positive, got ${o.lr}`);
      const r = runDemo(o, o.json ? () => {} : console.log);
      if (o.json) console.log(JSON.stringify(r));
      else console.log(`accuracy ${(r.accuracy * 100).toFixed(1)}% on ${3 * 100} points (chance 33.3%), ${r.seconds.toFixed(1)}s`);
    });
}
