// `minichat import --hf DIR --out RUN`: a Hugging Face Qwen3 or Llama directory becomes a
// minichat run directory (RUN/checkpoint/ plus made-by.json) that sft --init, rl --init,
// pretrain --resume, chat, serve and export read like any other (src/io/hf-import.ts).
import type { Command } from 'commander';
import { join } from 'node:path';
import { writeCheckpointDir } from '../io/checkpoint.ts';
import { importHF } from '../io/hf-import.ts';
import { claimRunDir, isWithin } from '../io/run-dir.ts';
import { countParams } from '../model/gpt.ts';
import { UserError } from '../util/errors.ts';
import { posInt } from './common.ts';

interface Flags {
  hf: string;
  out: string;
  chatTokens: boolean;
  maxSeqLen?: number;
  json: boolean;
}

export function registerImport(program: Command): void {
  program
    .command('import')
    .description('import a Hugging Face Qwen3ForCausalLM or LlamaForCausalLM directory as a minichat checkpoint')
    .requiredOption('--hf <dir>', 'the Hugging Face directory: config.json, tokenizer.json, model.safetensors (or an index and its shards)')
    .requiredOption('--out <dir>', "run directory to write (new, empty, or a previous import's): RUN/checkpoint/")
    .option('--no-chat-tokens', "do not append minichat's chat special tokens (<|bos|>, <|user_start|>, ...) that the tokenizer lacks (sft, rl and chat need them)")
    .option('--max-seq-len <n>', "cap the model's context (max_position_embeddings) at n tokens", posInt)
    .option('--json', 'print one JSON summary on stdout', false)
    .action(async (f: Flags) => {
      if (isWithin(f.out, f.hf) || isWithin(f.hf, f.out)) throw new UserError(`--out ${f.out} is (or holds, or is inside) the --hf directory ${f.hf}: choose another --out`);
      // read and check everything first: a refused import leaves --out untouched
      const r = await importHF(f.hf, { chatTokens: f.chatTokens, maxSeqLen: f.maxSeqLen });
      await claimRunDir(f.out, 'import', { mode: 'replace', options: { hf: f.hf, chatTokens: f.chatTokens, maxSeqLen: f.maxSeqLen ?? null } });
      await writeCheckpointDir(join(f.out, 'checkpoint'), r.parts);
      const c = r.parts.config;
      const summary = {
        architecture: r.architecture, params: countParams(c), vocab: c.vocabSize, added_tokens: r.addedTokens, dtypes: r.sourceDtypes,
        qk_norm: c.qkNorm, tied: c.tieEmbeddings, context: c.maxSeqLen, out: f.out, notices: r.notices,
      };
      if (f.json) return console.log(JSON.stringify(summary));
      for (const n of r.notices) console.error(`minichat: note: ${n}`);
      console.log(
        `imported ${r.architecture}: ${(summary.params / 1e6).toFixed(2)}M parameters (${r.sourceDtypes.join('/')} → float32), ` +
          `${c.numLayers} layers, QK-norm ${c.qkNorm ? 'on' : 'off'}, ${c.tieEmbeddings ? 'tied' : 'untied'} head, rope theta ${c.ropeTheta}, ` +
          `vocab ${r.hfVocabSize}${r.addedTokens.length ? ` + ${r.addedTokens.length} chat tokens` : ''} -> ${f.out}\n` +
          `next: minichat sft --init ${f.out} --out runs/sft   (or: minichat chat --ckpt ${f.out})`,
      );
    });
}
