// `minichat generate`, `minichat eval loss` and `minichat export`: using a trained checkpoint.
import type { Command } from 'commander';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { Engine } from '../model/engine.ts';
import { EVAL_DEFAULTS, EVAL_TASKS, runEval } from '../eval/suite.ts';
import { chatCore } from '../eval/tasks.ts';
import { exportHF } from '../io/export.ts';
import { GGUF_DTYPES, claimGGUFOut, exportGGUF, ggufArchitecture, type GGUFDtype } from '../io/gguf.ts';
import { mergeLora } from '../model/lora.ts';
import * as T from '../tensor/index.ts';
import { encodeCheckpointFile, loadCheckpoint, readCheckpoint } from '../io/checkpoint.ts';
import { UserError } from '../util/errors.ts';
import { claimOutFile, claimRunDir, isWithin, writeMadeBy } from '../io/run-dir.ts';
import { InvalidArgumentError } from 'commander';
import { nonNeg, nonNegInt, num, oneOf, posInt, selectBackend, THREADS_HELP } from './common.ts';

/** A number in (0, 1], for --top-p. */
function unitInterval(v: string): number {
  const n = num(v);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError(`expected a number in (0, 1], got "${v}"`);
  return n;
}

/**
 * export --out: never the checkpoint being exported (nor a directory holding it); for hf a new
 * or empty directory or a previous export's, for file a new path or a previous export's file
 * (src/io/run-dir.ts). Flags that do not apply to the format are refused, not ignored.
 * Returns the metadata the one file carries.
 */
async function claimExportOut(o: { ckpt: string; out: string; format: string; mergeLora: boolean }, source: string): Promise<Record<string, string>> {
  if (o.format === 'file' && o.mergeLora) {
    throw new UserError('--merge-lora applies to --format hf only: the one-file checkpoint keeps the adapters as they are (minichat and the page load them)');
  }
  if (isWithin(source, o.out) || isWithin(o.out, source)) throw new UserError(`--out ${o.out} is (or holds, or is inside) the checkpoint being exported, ${source}: choose another --out`);
  if (o.format === 'file') return claimOutFile(o.out, 'export');
  await claimRunDir(o.out, 'export', { mode: 'replace', options: { ckpt: o.ckpt, format: o.format, mergeLora: o.mergeLora } });
  return {};
}

async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await writeFile(path + '.tmp', bytes);
  await rename(path + '.tmp', path);
}

export function registerInfer(program: Command): void {
  program
    .command('generate')
    .description('sample text from a checkpoint (the prompt follows a BOS token, as documents did in training)')
    .requiredOption('--ckpt <path>', 'checkpoint: a run directory holding checkpoint/, a checkpoint directory, or one .safetensors checkpoint file')
    .option('--prompt <text>', 'text to continue', '')
    .option('--max-tokens <n>', 'tokens to generate', posInt, 100)
    .option('--samples <n>', 'independent samples of the prompt, generated together as one batch', posInt, 1)
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', nonNeg, 0.8)
    .option('--top-k <k>', 'sample among the K most likely tokens (0 = all)', nonNegInt, 40)
    .option('--top-p <p>', 'sample among the most likely tokens holding probability P (1 = all)', unitInterval, 1)
    .option('--seed <n>', 'sampling seed', nonNegInt, 0)
    .option('--tokenizer <dir>', "use this tokenizer instead of the checkpoint's")
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
    .option('--json', 'print {"prompt", "completion", "tokens"} as JSON instead of streaming (with --samples > 1, also "samples": [...])', false)
    .action(async (o) => {
      const backend = await selectBackend(o.backend, o.threads);
      const { model, tokenizer: tok } = await loadCheckpoint(o.ckpt, { backend, tokenizerDir: o.tokenizer });
      const prompt = [tok.bosId, ...tok.encode(o.prompt)];
      // one sample streams as it is generated; several are printed one after another at the end
      const streaming = !o.json && o.samples === 1;
      if (streaming) process.stdout.write(o.prompt);
      const rows = await new Engine(model).generate([prompt], {
        maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, seed: o.seed,
        stop: [tok.bosId], samplesPerPrompt: o.samples,
        suppress: Object.values(tok.specials).filter((id) => id !== tok.bosId), // a base model has no use for chat tokens
        decodeBytes: (ids) => tok.decodeBytes(ids),
        onText: streaming ? (_, text) => process.stdout.write(text) : undefined,
      });
      const completions = rows.map((r) => {
        const ids = r.finish === 'stop' ? r.tokens.slice(0, -1) : r.tokens; // the stop token (BOS) is not text
        return { completion: tok.decode(ids), tokens: ids.length, finish: r.finish };
      });
      if (o.json) {
        const first = { prompt: o.prompt, completion: completions[0].completion, tokens: completions[0].tokens };
        console.log(JSON.stringify(o.samples === 1 ? first : { ...first, samples: completions }));
      } else if (streaming) {
        process.stdout.write('\n');
      } else {
        completions.forEach((c, i) => console.log(`--- sample ${i + 1} of ${o.samples} (${c.tokens} tokens, ${c.finish})\n${o.prompt}${c.completion}`));
      }
      model.dispose();
    });

  const evalCmd = program
    .command('eval')
    .description(`evaluate a checkpoint on tasks: ${EVAL_TASKS.join(', ')} (or the subcommand: eval loss)`)
    // `eval loss --ckpt X`: the flags after `loss` are the subcommand's, not eval's own --ckpt
    .enablePositionalOptions()
    .option('--ckpt <dir>', 'checkpoint directory, or a run directory holding checkpoint/')
    .option('--task <names>', 'comma-separated tasks', 'story-qa,arithmetic')
    .option('--n <n>', 'problems per task (held-out split); validation batches for bpb', posInt, EVAL_DEFAULTS.n)
    .option('--k <k>', 'also report pass@k with k samples at temperature 1 (0 = off)', nonNegInt, EVAL_DEFAULTS.k)
    .option('--no-tool', 'run without the calculator (a tool call gets no result)')
    .option('--digits <n>', 'arithmetic: digits per operand', posInt)
    .option('--data <file>', 'gsm8k: the JSONL file; bpb: a text file (default: the built-in corpus)')
    .option('--max-tokens <n>', 'reply length limit', posInt, EVAL_DEFAULTS.maxTokens)
    .option('--seed <n>', 'which held-out problems are drawn', nonNegInt, EVAL_DEFAULTS.seed)
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
    .option('--json', 'print one JSON object per task', false)
    .action(async (o) => {
      if (!o.ckpt) throw new UserError('eval: --ckpt DIR is required (or use the subcommand: minichat eval loss)');
      const backend = await selectBackend(o.backend, o.threads);
      const { model, tokenizer } = await loadCheckpoint(o.ckpt, { backend });
      const rows = [];
      for (const task of String(o.task).split(',').map((t: string) => t.trim()).filter(Boolean)) {
        const r = await runEval(model, tokenizer, { task, n: o.n, seed: o.seed, tool: o.tool, k: o.k, maxTokens: o.maxTokens, data: o.data, digits: o.digits });
        rows.push(r);
        if (o.json) console.log(JSON.stringify(r));
        else {
          const acc = r.value !== undefined ? `${r.value.toFixed(4)} bits/byte` : `pass@1 ${(100 * r.accuracy).toFixed(1)}% (chance ${(100 * r.baseline).toFixed(1)}%)`;
          const k = r.passAtK !== undefined ? `, pass@${r.k} ${(100 * r.passAtK).toFixed(1)}%` : '';
          console.log(`${r.task}: ${acc}${k}, n=${r.n}${r.skipped ? ` (${r.skipped} skipped: prompt longer than the context)` : ''}, ${r.seconds.toFixed(1)}s`);
        }
      }
      const scored = rows.filter((r) => Number.isFinite(r.accuracy));
      if (!o.json && scored.length > 1) console.log(`centered score (mean of (acc - chance)/(1 - chance)): ${chatCore(scored).toFixed(3)}`);
      model.dispose();
    });
  evalCmd
    .command('loss')
    .description('mean next-token loss (nats) of one sequence of token ids, evaluated exactly as given (no BOS added)')
    .requiredOption('--ckpt <path>', 'checkpoint: a run directory holding checkpoint/, a checkpoint directory, or one .safetensors checkpoint file')
    .requiredOption('--tokens <file>', 'a JSON file holding one array of token ids')
    .option('--backend <name>', 'wasm (the fast CPU path), cpu (the plain-TypeScript reference) or webgpu', 'wasm')
    .option('--threads <n>', THREADS_HELP, posInt)
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
    .description('export a checkpoint in another format (hf: a Hugging Face Qwen3ForCausalLM directory; gguf: one file for llama.cpp / Ollama / LM Studio; file: the one-file minichat checkpoint the page loads). See docs/export.md')
    .requiredOption('--ckpt <path>', 'checkpoint: a run directory holding checkpoint/, a checkpoint directory, or one .safetensors checkpoint file')
    .option('--format <name>', 'output format: hf, gguf or file', oneOf('hf', 'gguf', 'file'), 'hf')
    .requiredOption('--out <path>', "output: for hf a new or empty directory, or a previous export's (replaced); for gguf and file the one file (new, or a previous export's)")
    .option('--dtype <type>', `gguf only: weight type of the matrices, ${GGUF_DTYPES.join(', ')} (norms stay f32)`, oneOf(...GGUF_DTYPES), 'f32')
    .option('--merge-lora', 'fold LoRA adapters into the base weights, W + (alpha/r) B A (needed for a checkpoint with adapters)', false)
    .action(async (o) => {
      if (o.format !== 'gguf' && o.dtype !== 'f32') throw new UserError(`--dtype applies to --format gguf only (${o.format} is written in f32)`);
      if (o.format === 'file') {
        // the same parts in the other container: weights, optimizer, tokenizer, state (src/io/checkpoint.ts)
        const { parts, where } = await readCheckpoint(o.ckpt);
        const mark = await claimExportOut(o, where);
        await writeFileAtomic(o.out, encodeCheckpointFile(parts, mark));
        console.log(`packed ${where} (step ${parts.state?.step ?? '?'}) into one file -> ${o.out}`);
        return;
      }
      const { model, tokenizer, dir } = await loadCheckpoint(o.ckpt);
      if (model.adapter && !o.mergeLora) throw new UserError(`${o.ckpt} has LoRA adapters: pass --merge-lora to fold them into the exported weights`);
      if (o.format === 'gguf') {
        if (isWithin(dir, o.out) || isWithin(o.out, dir)) throw new UserError(`--out ${o.out} is (or holds, or is inside) the checkpoint being exported, ${dir}: choose another --out`);
        await claimGGUFOut(o.out);
        if (model.adapter) mergeLora(model);
        const bytes = await exportGGUF(model, tokenizer, o.out, { dtype: o.dtype as GGUFDtype });
        console.log(`exported ${(model.numParams() / 1e6).toFixed(2)}M parameters as GGUF (${ggufArchitecture(model.config)}, ${o.dtype}, ${(bytes / 1e6).toFixed(1)} MB) -> ${o.out}`);
        model.dispose();
        return;
      }
      await claimExportOut(o, dir);
      if (model.adapter) mergeLora(model);
      await exportHF(model, tokenizer, o.out);
      writeMadeBy(o.out, 'export', { ckpt: o.ckpt, format: o.format, mergeLora: o.mergeLora });
      console.log(`exported ${(model.numParams() / 1e6).toFixed(2)}M parameters as Qwen3ForCausalLM -> ${o.out}`);
      model.dispose();
    });
}
