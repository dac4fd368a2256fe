// The tensor engine's public face: import * as T from '../tensor/index.ts'.
export * from './tensor.ts';
export * from './ops.ts';
export * from './composed.ts';
export { backward, zeroGrad, sumTo, PRIM_OPS, VJP } from './grad.ts';
export { Rng, type RngState } from './random.ts';
export { crossEntropyFused, targetLogprobsFused, targetLogprobsAuto, rmsnormFused, attentionFused, fusedKernels, rmsnormAuto, attentionAuto, attentionRunsFused, crossEntropyAuto, adamwUpdateFused, swigluFused, swigluAuto, ropeFused, ropeAuto } from './fused.ts';
export { checkpoint } from './checkpoint.ts';
