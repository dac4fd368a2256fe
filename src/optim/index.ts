// The optimizer a training run uses: Muon for the hidden matrices, AdamW for everything else
// (the split of modded-nanogpt, nanochat and Moonlight), or AdamW for everything as the
// baseline. One object with one step(lr), so the training loop does not care which.
//
//   const opt = buildOptimizer(model.namedParams(), { kind: 'muon', lr: 3e-3, weightDecay: 0.1 });
//   loss.backward(); opt.step(lrAt(step, sched)); opt.zeroGrad();
//
// With Moonlight's scaling (muon.ts) both halves take the same learning rate.
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';
import { AdamW } from './adamw.ts';
import { Muon, type MuonScaling } from './muon.ts';
import type { NamedParam, Optimizer } from './types.ts';

export { AdamW, type AdamWOptions } from './adamw.ts';
export { Muon, newtonSchulz5, muonScale, NS_COEFFS, type MuonOptions, type MuonScaling } from './muon.ts';
export { lrAt, type Schedule } from './schedule.ts';
export { clipGradNorm } from './clip.ts';
export type { NamedParam, Optimizer } from './types.ts';

export interface BuildOptions {
  /** 'muon': hidden matrices on Muon, the rest on AdamW. 'adamw': everything on AdamW. */
  kind: 'muon' | 'adamw';
  /** Peak learning rate; step() without an argument uses it. */
  lr: number;
  /** Decoupled weight decay for matrices (Muon's and AdamW's); 1-D gains are never decayed. */
  weightDecay: number;
  /** AdamW's (β1, β2). Default (0.9, 0.95). */
  betas?: [number, number];
  /** AdamW's ε. Default 1e-8. */
  eps?: number;
  /** Muon's momentum. Default 0.95. */
  momentum?: number;
  /** Muon's Newton–Schulz iterations. Default 5. */
  nsSteps?: number;
  /** Muon's scaling convention. Default 'moonlight' (same lr as AdamW). */
  muonScaling?: MuonScaling;
}

export interface BuiltOptimizer extends Optimizer {
  /** Step at `lr` (default: the lr given to buildOptimizer). */
  step(lr?: number): void;
  /** Which parameter names each optimizer updates (every name exactly once). */
  groups(): { muon: string[]; adamw: string[] };
}

/** Embedding tables and the LM head stay on AdamW even though they are matrices. */
const NOT_MUON = /(^|\.)(embed_tokens|lm_head)(\.|$)/;

/** Does this parameter belong on Muon? Rank-2, and not the embedding or the head. */
export function isMuonParam(p: NamedParam): boolean {
  return p.param.rank === 2 && !NOT_MUON.test(p.name);
}

export function buildOptimizer(params: NamedParam[], opts: BuildOptions): BuiltOptimizer {
  if (opts.kind !== 'muon' && opts.kind !== 'adamw') throw new UserError(`optimizer kind must be 'muon' or 'adamw', got '${opts.kind}'`);
  if (!(opts.lr >= 0 && Number.isFinite(opts.lr))) throw new UserError(`learning rate must be finite and >= 0, got ${opts.lr}`);
  // Each parameter exactly once: a tied embedding/head listed under two names, or the same
  // name twice, would be updated twice per step.
  const names = new Set<string>(), tensors = new Set<T.Tensor>();
  for (const p of params) {
    if (names.has(p.name)) throw new UserError(`parameter "${p.name}" is listed twice`);
    if (tensors.has(p.param)) throw new UserError(`parameter "${p.name}" is the same tensor as an earlier one (tied weights must be listed once)`);
    names.add(p.name);
    tensors.add(p.param);
  }
  const muonParams = opts.kind === 'muon' ? params.filter(isMuonParam) : [];
  const adamParams = params.filter((p) => !muonParams.includes(p));
  const adamw = new AdamW(adamParams, { betas: opts.betas, eps: opts.eps, weightDecay: opts.weightDecay });
  const muon = muonParams.length
    ? new Muon(muonParams, { momentum: opts.momentum, nsSteps: opts.nsSteps, weightDecay: opts.weightDecay, scaling: opts.muonScaling })
    : null;
  const parts: (AdamW | Muon)[] = muon ? [muon, adamw] : [adamw];

  return {
    step(lr = opts.lr) {
      for (const o of parts) o.step(lr);
    },
    zeroGrad() {
      for (const o of parts) o.zeroGrad();
    },
    stateDict() {
      return Object.assign({}, ...parts.map((o) => o.stateDict()));
    },
    async loadStateDict(state) {
      const known = new Set(parts.flatMap((o) => o.stateKeys()));
      const extra = Object.keys(state).filter((k) => !known.has(k));
      if (extra.length) throw new UserError(`optimizer state has entries this optimizer does not know: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`);
      for (const o of parts) await o.loadStateDict(state);
    },
    groups() {
      return { muon: muonParams.map((p) => p.name), adamw: adamParams.map((p) => p.name) };
    },
  };
}
