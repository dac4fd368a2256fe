// The tokenizer stage's public face. Everything here is browser-safe: file I/O (files.ts)
// and the WASM fast path (fast.ts) are loaded on demand by the functions that need them.
//
//   bpe.ts       Tokenizer: rank-based BPE encode/decode, identical to tiktoken
//   patterns.ts  pre-split regexes (gpt2, cl100k, o200k) and their translation to JS
//   train.ts     trainTokenizer: BPE training with incremental pair counts and a heap
//   chat.ts      special tokens and renderConversation → { ids, lossMask }
//   files.ts     tiktoken ranks files + tokenizer.json (Node only)
//   fast.ts      bulk encoding through the npm tiktoken WASM
export { Tokenizer, StreamDecoder, toWellFormed } from './bpe.ts';
export type { AllowedSpecial, EncodeOptions, Ranks } from './bpe.ts';
export { trainTokenizer, countChunks } from './train.ts';
export type { TrainOptions } from './train.ts';
export { renderConversation, renderForCompletion, chatStops, chatSuppress, SPECIALS, DEFAULT_SPECIALS } from './chat.ts';
export type { Message, AssistantPart, Rendered } from './chat.ts';
export { PATTERNS, DEFAULT_PATTERN, patternByName, compilePattern, toJsRegexSource } from './patterns.ts';
export type { PatternName } from './patterns.ts';
export { createFastEncoder, typescriptEncoder } from './fast.ts';
export type { BulkEncoder } from './fast.ts';
