// `minichat tokenizer ...` (being written).
import type { Command } from 'commander';

export function registerTokenizer(_program: Command): void {}
