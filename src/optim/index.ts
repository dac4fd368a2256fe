// The optimizers a training run uses, as parameter groups: Muon for the hidden matrices and
// AdamW for everything else (the split of modded-nanogpt, nanochat and Moonlight), or AdamW
// for everything as the baseline. Which group a parameter joins is read from its declared
// role (types.ts), never from its name; a parameter that does not train (requiresGrad off,
// e.g. a frozen base under LoRA) joins no group, so it gets no optimizer state.
//
//   const groups = buildParamGroups(model.trainableParams(), { kind: 'muon', lr: 3e-3, weightDecay: 0.1 });
//   // train/trainer.ts steps each group at lrAt(step, group.schedule)
//
// buildOptimizer wraps the groups as one object with one step(lr) for code that wants a
// single optimizer. With Moonlight's scaling (muon.ts) both halves take the same learning rate.
import * as T from '../tensor/index.ts';
import { UserError } from '../util/errors.ts';
import { AdamW } from './adamw.ts';
import { Muon, type MuonScaling } from './muon.ts';
import type { NamedParam, Optimizer } from './types.ts';
import type { Schedule } from './schedule.ts';

export { AdamW, type AdamWOptions } from './adamw.ts';
export { Muon, newtonSchulz5, muonScale, NS_COEFFS, type MuonOptions, type MuonScaling } from './muon.ts';
export { lrAt, type Schedule } from './schedule.ts';
export { clipGradNorm } from './clip.ts';
export { DECAYED_ROLES, type NamedParam, type Optimizer, type ParamRole } from './types.ts';

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

/** One group of parameters with its own optimizer and learning-rate schedule. */
export interface ParamGroup {
  name: string; // 'muon', 'adamw', or a caller's name ('lora', 'policy', 'world', ...)
  params: NamedParam[];
  optimizer: Optimizer & { stateKeys(): string[] };
  schedule: Schedule;
}

export interface BuiltOptimizer extends Optimizer {
  /** Step at `lr` (default: the lr given to buildOptimizer). */
  step(lr?: number): void;
  /** Which parameter names each optimizer updates (every name exactly once). */
  groups(): { muon: string[]; adamw: string[] };
  /** The same optimizers as parameter groups (for train/trainer.ts). */
  paramGroups: ParamGroup[];
}

/** Does this parameter belong on Muon? Its role says it is a hidden matrix. */
export function isMuonParam(p: NamedParam): boolean {
  return p.role === 'matrix';
}

/** Throw unless every parameter appears once (a tied embedding/head listed under two names,
 *  or the same name twice, would be updated twice per step). */
export function checkDistinct(params: NamedParam[]): void {
  const names = new Set<string>(), tensors = new Set<T.Tensor>();
  for (const p of params) {
    if (names.has(p.name)) throw new UserError(`parameter "${p.name}" is listed twice`);
    if (tensors.has(p.param)) throw new UserError(`parameter "${p.name}" is the same tensor as an earlier one (tied weights must be listed once)`);
    names.add(p.name);
    tensors.add(p.param);
  }
}

/**
 * The standard groups: 'muon' (role matrix, when kind is muon) and 'adamw' (everything else
 * that trains). Frozen parameters (requiresGrad false) are left out. `schedule` defaults to a
 * constant lr.
 */
export function buildParamGroups(params: NamedParam[], opts: BuildOptions & { schedule?: Schedule }): ParamGroup[] {
  if (opts.kind !== 'muon' && opts.kind !== 'adamw') throw new UserError(`optimizer kind must be 'muon' or 'adamw', got '${opts.kind}'`);
  if (!(opts.lr >= 0 && Number.isFinite(opts.lr))) throw new UserError(`learning rate must be finite and >= 0, got ${opts.lr}`);
  checkDistinct(params);
  const schedule: Schedule = opts.schedule ?? { lr: opts.lr, warmupSteps: 0, totalSteps: 1, warmdownFraction: 0, finalFraction: 1 };
  const training = params.filter((p) => p.param.requiresGrad);
  const muonParams = opts.kind === 'muon' ? training.filter(isMuonParam) : [];
  const adamParams = training.filter((p) => !muonParams.includes(p));
  const groups: ParamGroup[] = [];
  if (muonParams.length) {
    const muon = new Muon(muonParams, { momentum: opts.momentum, nsSteps: opts.nsSteps, weightDecay: opts.weightDecay, scaling: opts.muonScaling });
    groups.push({ name: 'muon', params: muonParams, optimizer: muon, schedule });
  }
  const adamw = new AdamW(adamParams, { betas: opts.betas, eps: opts.eps, weightDecay: opts.weightDecay });
  groups.push({ name: 'adamw', params: adamParams, optimizer: adamw, schedule });
  return groups;
}

/** State dict of several groups as one (keys are parameter names, so they never collide). */
export function groupsStateDict(groups: ParamGroup[]): Record<string, T.Tensor> {
  return Object.assign({}, ...groups.map((g) => g.optimizer.stateDict()));
}

/** Load a state dict made by groupsStateDict into the same groups; unknown keys are an error. */
export async function loadGroupsStateDict(groups: ParamGroup[], state: Record<string, T.Tensor>): Promise<void> {
  const known = new Set(groups.flatMap((g) => g.optimizer.stateKeys()));
  const extra = Object.keys(state).filter((k) => !known.has(k));
  if (extra.length) throw new UserError(`optimizer state has entries this optimizer does not know: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`);
  for (const g of groups) await g.optimizer.loadStateDict(state);
}

export function buildOptimizer(params: NamedParam[], opts: BuildOptions): BuiltOptimizer {
  const paramGroups = buildParamGroups(params, opts);
  const names = (n: string) => paramGroups.find((g) => g.name === n)?.params.map((p) => p.name) ?? [];
  return {
    paramGroups,
    step(lr = opts.lr) {
      for (const g of paramGroups) g.optimizer.step(lr);
    },
    zeroGrad() {
      for (const g of paramGroups) g.optimizer.zeroGrad();
    },
    stateDict: () => groupsStateDict(paramGroups),
    loadStateDict: (state) => loadGroupsStateDict(paramGroups, state),
    groups: () => ({ muon: names('muon'), adamw: names('adamw') }),
  };
}
