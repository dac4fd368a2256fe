// A tiny chat checkpoint for the chat CLI and server tests: a BPE tokenizer with the chat
// specials trained on a few sentences, and a randomly initialised GPT of a few thousand
// parameters saved in the real checkpoint format. Its replies are noise, but every layer
// the user meets (rendering, sampling, streaming, the CLI and HTTP) runs for real.
import { saveCheckpoint, type TrainState } from '../src/io/checkpoint.ts';
import { GPT, type GPTConfig } from '../src/model/gpt.ts';
import * as T from '../src/tensor/index.ts';
import { trainTokenizer } from '../src/tokenizer/index.ts';
import { tempDir } from './tmp.ts';

/** maxSeqLen of the fixture: small, so context-length limits are easy to reach in tests. */
export const FIXTURE_CONTEXT = 128;

export async function tinyChatCheckpoint(): Promise<string> {
  const tok = await trainTokenizer(['Hello there! How are you today? I am fine, thank you. What is two plus two? Four. '.repeat(20)], { vocabSize: 300 });
  const config: GPTConfig = {
    vocabSize: tok.vocabSize, hiddenSize: 32, numLayers: 2, numHeads: 2, numKVHeads: 1, headDim: 16, intermediateSize: 64,
    maxSeqLen: FIXTURE_CONTEXT, ropeTheta: 10000, rmsNormEps: 1e-6, tieEmbeddings: true, qkNorm: true, mlp: 'swiglu', logitSoftcap: 0,
  };
  const model = T.noGrad(() => new GPT(config, new T.Rng(1)));
  const dir = tempDir('mc-chat-ckpt-') + '/checkpoint';
  // no training happened, so there is no train state to record; loadCheckpoint does not need one
  await saveCheckpoint(dir, { model, tokenizer: tok, optimizerState: null, state: null as unknown as TrainState });
  model.dispose();
  return dir;
}
