// `minichat generate`, `minichat eval loss` and `minichat export`: using a trained checkpoint.
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { generate } from '../model/engine.ts';
import { exportHF } from '../model/export.ts';
import * as T from '../tensor/index.ts';
import { loadCheckpoint } from '../train/checkpoint.ts';
import { UserError } from '../util/errors.ts';
import { nonNeg, nonNegInt, oneOf, posInt, selectBackend } from './common.ts';

export function registerInfer(program: Command): void {
  program
    .command('generate')
    .description('sample text from a checkpoint (the prompt follows a BOS token, as documents did in training)')
    .requiredOption('--ckpt <dir>', 'checkpoint directory, or a run directory holding checkpoint/')
    .option('--prompt <text>', 'text to continue', '')
    .option('--max-tokens <n>', 'tokens to generate', posInt, 100)
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', nonNeg, 0.8)
    .option('--top-k <k>', 'sample among the K most likely tokens (0 = all)', nonNegInt, 40)
    .option('--seed <n>', 'sampling seed', nonNegInt, 0)
    .option('--tokenizer <dir>', "use this tokenizer instead of the checkpoint's")
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', 'threads for the wasm backend (matmul split by rows)', posInt, availableParallelism())
    .option('--json', 'print {"prompt", "completion", "tokens"} as JSON instead of streaming', false)
    .action(async (o) => {
      const backend = await selectBackend(o.backend, o.threads);
      const { model, tokenizer: tok } = await loadCheckpoint(o.ckpt, { backend, tokenizerDir: o.tokenizer });
      const prompt = [tok.bosId, ...tok.encode(o.prompt)];
      const stream = tok.streamDecoder();
      if (!o.json) process.stdout.write(o.prompt);
      const ids = await generate(
        model, prompt,
        {
          maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, rng: new T.Rng(o.seed), stopAt: [tok.bosId],
          suppress: Object.values(tok.specials).filter((id) => id !== tok.bosId), // a base model has no use for chat tokens
        },
        o.json ? undefined : (id) => process.stdout.write(stream.push(id)),
      );
      if (o.json) console.log(JSON.stringify({ prompt: o.prompt, completion: tok.decode(ids), tokens: ids.length }));
      else process.stdout.write(stream.flush() + '\n');
      model.dispose();
    });

  const evalCmd = program.command('eval').description('evaluate a checkpoint');
  evalCmd
    .command('loss')
    .description('mean next-token loss (nats) of one sequence of token ids, evaluated exactly as given (no BOS added)')
    .requiredOption('--ckpt <dir>', 'checkpoint directory, or a run directory holding checkpoint/')
    .requiredOption('--tokens <file>', 'a JSON file holding one array of token ids')
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', 'threads for the wasm backend (matmul split by rows)', posInt, availableParallelism())
    .option('--json', 'print {"loss", "tokens"} as JSON', false)
    .action(async (o) => {
      const backend = await selectBackend(o.backend, o.threads);
      let ids: unknown;
      try {
        ids = JSON.parse(await readFile(o.tokens, 'utf8'));
      } catch (e) {
        throw new UserError(`${o.tokens}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not valid JSON (${(e as Error).message})`}`);
      }
      if (!Array.isArray(ids) || !ids.every((v) => Number.isInteger(v))) throw new UserError(`${o.tokens}: expected one JSON array of integer token ids`);
      const { model, config } = await loadCheckpoint(o.ckpt, { backend });
      if (ids.length < 2) throw new UserError(`${o.tokens}: need at least 2 tokens (one prediction), got ${ids.length}`);
      const bad = ids.findIndex((v) => v < 0 || v >= config.vocabSize);
      if (bad >= 0) throw new UserError(`${o.tokens}: token ${ids[bad]} at index ${bad} is outside the model's vocabulary [0, ${config.vocabSize})`);
      if (ids.length - 1 > config.maxSeqLen) {
        throw new UserError(`${o.tokens}: ${ids.length} tokens is longer than the model's context (${config.maxSeqLen} + 1); split the sequence`);
      }
      const x = ids.slice(0, -1), y = ids.slice(1);
      const loss = await T.noGrad(() => T.tidy(async () => model.loss(T.tensor(x, [1, x.length], { dtype: 'int32', backend }), y).item()));
      // `tokens` counts the predicted positions: every id after the first
      const r = { loss, tokens: y.length };
      console.log(o.json ? JSON.stringify(r) : `loss ${loss.toFixed(4)} nats over ${y.length} predicted tokens (perplexity ${Math.exp(loss).toFixed(2)})`);
      model.dispose();
    });

  program
    .command('export')
    .description('export a checkpoint in another format (hf: a Hugging Face Qwen3ForCausalLM directory)')
    .requiredOption('--ckpt <dir>', 'checkpoint directory, or a run directory holding checkpoint/')
    .option('--format <name>', 'output format', oneOf('hf'), 'hf')
    .requiredOption('--out <dir>', 'output directory (replaced if it exists)')
    .action(async (o) => {
      const { model, tokenizer } = await loadCheckpoint(o.ckpt);
      await exportHF(model, tokenizer, o.out);
      console.log(`exported ${(model.numParams() / 1e6).toFixed(2)}M parameters as Qwen3ForCausalLM -> ${o.out}`);
      model.dispose();
    });
}
