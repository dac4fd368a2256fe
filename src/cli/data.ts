// `minichat data ...` (being written).
import type { Command } from 'commander';

export function registerData(_program: Command): void {}
