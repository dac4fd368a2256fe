// Evaluation by generation: the model answers each problem, a pure function scores the answer.
//
//   problems ──render──► prompts ──Engine.generate (batched)──► replies ──check──► accuracy
//
// pass@1 is scored on one greedy reply per problem (deterministic, so two runs of the eval
// give the same number). pass@k samples k replies per problem at a temperature and counts a
// problem solved if any of them is right; with n ≥ k samples the unbiased estimator of Chen et
// al. 2021 ("Evaluating Large Language Models Trained on Code") is
//   pass@k = 1 − C(n − c, k) / C(n, k),   c = correct samples out of n,
// averaged over problems. Here n = k, so it is simply "any of the k is right".
//
// Multiple choice is scored without generation: each option's total log-probability as a
// continuation of the prompt (model/logprobs.ts); the most likely option is the answer.
import type { Engine, GenerateOptions } from '../model/engine.ts';
import type { GPT } from '../model/gpt.ts';
import { tokenLogprobs } from '../model/logprobs.ts';
import * as T from '../tensor/index.ts';

/** One problem: its prompt ids (ending with <|assistant_start|>) and a scorer for a reply. */
export interface GenProblem {
  prompt: number[];
  check(reply: { tokens: number[]; forced: boolean[] }): boolean;
}

export interface GenEvalOptions {
  maxTokens: number; // reply length limit
  stop: number[]; // e.g. <|assistant_end|> and <|bos|>
  suppress?: number[];
  afterToken?: GenerateOptions['afterToken']; // the tool hook, when tools are allowed
  k?: number; // also report pass@k with k samples per problem (0 = only pass@1)
  temperature?: number; // for the pass@k samples (default 1)
  seed?: number;
}

export interface GenEvalResult {
  n: number; // problems scored
  skipped: number; // problems left out: prompt + maxTokens longer than the model's context
  passAt1: number; // fraction solved by the greedy reply
  passAtK?: number; // fraction solved by at least one of k samples
  k?: number;
  correct: boolean[]; // per problem, greedy
}

export async function evalGenerative(engine: Engine, all: GenProblem[], o: GenEvalOptions): Promise<GenEvalResult> {
  // a prompt that leaves no room for the reply in the model's context cannot be asked: such
  // problems are left out and counted (never silently), not scored as wrong
  const room = engine.model.config.maxSeqLen - o.maxTokens;
  const problems = all.filter((p) => p.prompt.length <= room);
  const skipped = all.length - problems.length;
  if (problems.length === 0) return { n: 0, skipped, passAt1: NaN, correct: [] };
  const base = { maxTokens: o.maxTokens, stop: o.stop, suppress: o.suppress, afterToken: o.afterToken, topK: 0, topP: 1, seed: o.seed ?? 0 };
  const greedy = await engine.generate(problems.map((p) => p.prompt), { ...base, temperature: 0 });
  const correct = greedy.map((r, i) => problems[i].check(r));
  const result: GenEvalResult = { n: problems.length, skipped, passAt1: mean(correct), correct };
  const k = o.k ?? 0;
  if (k > 0) {
    const rows = await engine.generate(problems.map((p) => p.prompt), { ...base, temperature: o.temperature ?? 1, samplesPerPrompt: k });
    const solved = problems.map((p, i) => rows.slice(i * k, (i + 1) * k).some((r) => p.check(r)));
    result.passAtK = mean(solved);
    result.k = k;
  }
  return result;
}

const mean = (xs: boolean[]) => (xs.length ? xs.filter(Boolean).length / xs.length : NaN);

/** Total log-probability of each option's ids as a continuation of `prompt`. */
export async function optionLogprobs(model: GPT, prompt: number[], options: number[][]): Promise<number[]> {
  const L = Math.max(...options.map((o) => prompt.length + o.length));
  const N = options.length;
  const ids = new Int32Array(N * L);
  options.forEach((o, n) => ids.set([...prompt, ...o], n * L));
  const lp = await T.noGrad(() => T.tidy(async () => Float32Array.from(await tokenLogprobs(model, ids, N, L).data())));
  return options.map((o, n) => {
    let s = 0;
    // option token j sits at position prompt.length + j, predicted by position prompt.length + j − 1
    for (let j = 0; j < o.length; j++) s += lp[n * (L - 1) + prompt.length + j - 1];
    return s;
  });
}
