// `minichat speedrun`: the whole pipeline, offline, in minutes on a laptop CPU — like
// nanochat's speedrun.sh, as one command.
//
//   1. tokenizer  trained on the built-in synthetic stories (inside pretraining)
//   2. pretrain   the tiny GPT on those stories                  → runs/speedrun/base
//   3. sft        the built-in chat data: story questions, calculator arithmetic, identity
//                 (checkpoints every --ckpt-every steps, as pretraining)  → runs/speedrun/sft
//   4. eval       base vs SFT on held-out story-QA, arithmetic with and without the
//                 calculator, identity                           → runs/speedrun/eval.json
//   5. report     → runs/speedrun/report.md (machine, stages, curves, eval table, samples)
// and it ends by printing how to chat with the model.
//
// Running it again replaces its own previous run (a directory whose made-by.json says speedrun,
// or an older one holding pipeline.json), never anything else: claimSpeedrunDir. `speedrun --resume` continues a killed speedrun where it stopped: the flags
// it was started with (kept in pipeline.json) stand unless typed again, a stage with a
// checkpoint is resumed exactly, a stage without one starts afresh, a finished one is kept.
import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeReport, type EvalRow } from '../eval/report.ts';
import { runEval } from '../eval/suite.ts';
import { chatCore } from '../eval/tasks.ts';
import { findCheckpoint, loadCheckpoint } from '../io/checkpoint.ts';
import { claimRunDir, writeMadeBy } from '../io/run-dir.ts';
import { SFT_DEFAULTS } from '../train/sft.ts';
import { nonNegInt, posInt, progressPrinter, withSavedOptions } from './common.ts';
import { pretrainFlags, runPretrainCommand, type PretrainFlags } from './pretrain.ts';
import { sft } from '../train/sft.ts';
import { selectBackend } from './common.ts';

/**
 * What the speedrun changes from the stages' own defaults, sized to finish in ≤ 10 minutes on 2
 * CPU cores. Pretraining is as long as it is for one reason: the tiny model learns to copy
 * (to carry a name from one sentence to the next) only after ~300 steps of 16 × 128 tokens,
 * when its validation loss drops from ~0.55 to below 0.4 within a few dozen steps. Story-QA
 * answers are copies of words in the story, so SFT on a base from before that point teaches
 * the reply form and little more (held-out story-QA 6% after 120 pretraining steps, 24% after
 * 240, 38-40% after 360; docs/sft-data.md, "What SFT needs from the base"). SFT sees 8,000
 * built-in conversations: with 6,000 (1,800 of them calculator arithmetic) the 360-step base
 * learned no arithmetic at all (held-out 3-digit problems 0%), with 8,000 (3,600) 56% of
 * those and 100% of 2-digit ones.
 */
export const SPEEDRUN = {
  pretrain: { steps: 360, batchSize: 16, evalEvery: 40, sampleEvery: 120, sampleTokens: 80 },
  sft: { steps: 300, batchSize: 8, builtinExamples: 8000, lr: 3e-3 },
  evalProblems: 50,
};

interface Flags extends PretrainFlags {
  sftSteps: number;
  sftBatchSize: number;
  evalProblems: number;
}

/**
 * --out: a new or empty directory, or a previous speedrun (its made-by.json, or pipeline.json
 * from before markers), which is replaced unless --resume; anything else is refused with one
 * line and left as it is (src/io/run-dir.ts).
 */
async function claimSpeedrunDir(root: string, f: Flags): Promise<void> {
  const options = { steps: f.steps, sftSteps: f.sftSteps, evalProblems: f.evalProblems, seed: f.seed, backend: f.backend };
  const { own } = await claimRunDir(root, 'speedrun', { mode: 'replace', options });
  if (!own || f.resume) return;
  process.stderr.write(`replacing the previous run in ${root}\n`);
  await rm(root, { recursive: true, force: true });
  writeMadeBy(root, 'speedrun', options);
}

export function registerSpeedrun(program: Command): void {
  const cmd = pretrainFlags(
    program
      .command('speedrun')
      .description('the whole pipeline offline in minutes: tokenizer, tiny GPT pretraining, SFT for chat, eval of both, a report card'),
    'runs/speedrun',
    SPEEDRUN.pretrain,
  )
    .option('--sft-steps <n>', 'SFT steps (0 = stop after pretraining)', nonNegInt, SPEEDRUN.sft.steps)
    .option('--sft-batch-size <n>', 'SFT rows per step', posInt, SPEEDRUN.sft.batchSize)
    .option('--eval-problems <n>', 'held-out problems per eval task', nonNegInt, SPEEDRUN.evalProblems);
  cmd.action(async (f: Flags) => {
    const t0 = performance.now();
    const root = f.out;
    const pipelineFile = join(root, 'pipeline.json');
    if (f.resume && existsSync(pipelineFile)) {
      const { resume: _r, out: _o, json: _j, ...flags } = f;
      f = withSavedOptions(f, cmd, JSON.parse(readFileSync(pipelineFile, 'utf8')).flags ?? {}, Object.keys(flags));
    }
    await claimSpeedrunDir(root, f);
    const stages = f.sftSteps > 0 ? ['base', 'sft'] : ['base'];
    await import('node:fs/promises').then((fs) => fs.mkdir(root, { recursive: true }));
    const { resume: _r, out: _o, json: _j, ...flags } = f; // the flags, for --resume
    await writeFile(pipelineFile, JSON.stringify({ stages, flags }, null, 2) + '\n');
    // --resume: a stage with a checkpoint continues it; one without starts afresh in a clean directory
    const resumes = async (stage: string) => {
      if (!f.resume) return false;
      if (await findCheckpoint(join(root, stage, 'checkpoint'))) return true;
      await rm(join(root, stage), { recursive: true, force: true });
      return false;
    };
    const say = (s: string) => process.stderr.write(`\n== ${s}\n`);

    say('pretraining (tokenizer + tiny GPT on the built-in stories)');
    const base = await runPretrainCommand({ ...f, resume: await resumes('base'), out: join(root, 'base'), json: false }, cmd, { quietSummary: f.json });

    let sftResult = null;
    if (f.sftSteps > 0) {
      say('SFT (story questions, calculator arithmetic, identity)');
      const p = progressPrinter(false);
      sftResult = await sft(
        {
          ...SFT_DEFAULTS, builtinExamples: SPEEDRUN.sft.builtinExamples, lr: SPEEDRUN.sft.lr, init: join(root, 'base'), out: join(root, 'sft'), steps: f.sftSteps,
          batchSize: f.sftBatchSize, seed: f.seed, ckptEvery: f.ckptEvery, backend: await selectBackend(f.backend, f.threads), resume: await resumes('sft'),
        },
        { log: p.log, progress: p.progress },
      );
      p.done();
    }

    const rows: EvalRow[] = [];
    if (f.evalProblems > 0) {
      say('eval (held-out problems, greedy replies)');
      for (const stage of stages) {
        const { model, tokenizer } = await loadCheckpoint(join(root, stage));
        const tasks: { task: string; tool: boolean }[] = [
          { task: 'story-qa', tool: true }, { task: 'arithmetic', tool: true }, { task: 'arithmetic', tool: false }, { task: 'identity', tool: false },
        ];
        for (const t of tasks) {
          // arithmetic at 3 digits: the size the SFT data solves with the calculator
          const r = await runEval(model, tokenizer, { task: t.task, n: f.evalProblems, seed: 1, tool: t.tool, k: 0, maxTokens: 48, digits: 3 });
          rows.push({ model: stage, task: r.task, accuracy: r.accuracy, baseline: r.baseline, n: r.n });
          process.stderr.write(`${stage.padEnd(4)}  ${r.task.padEnd(22)} ${(100 * r.accuracy).toFixed(1).padStart(5)}%  (n=${r.n}, ${r.seconds.toFixed(1)}s)\n`);
        }
        model.dispose();
      }
    }
    // the centered score over the tasks that could be scored (a task with no problem that fits the context has no accuracy)
    const summary = Object.fromEntries(stages.map((s) => [s, rows.some((r) => r.model === s && r.n > 0) ? chatCore(rows.filter((r) => r.model === s && r.n > 0)) : NaN]));
    await writeFile(join(root, 'eval.json'), JSON.stringify({ rows, summary }, null, 2) + '\n');
    const report = await writeReport(root, { title: 'minichat speedrun' });
    const seconds = (performance.now() - t0) / 1000;
    const chatDir = join(root, stages.at(-1)!);
    if (f.json) {
      console.log(JSON.stringify({ pretrain: { ...base, samples: undefined, losses: undefined }, sft: sftResult ? { ...sftResult, losses: undefined } : null, eval: rows, summary, report, seconds, chat: chatDir }));
    } else {
      console.log(`\nsamples from the base model:`);
      base.samples.slice(-2).forEach((s) => console.log('  ' + JSON.stringify(s)));
      if (rows.length) {
        console.log('\neval (held-out, pass@1):');
        const tasks = [...new Set(rows.map((r) => r.task))];
        console.log(`  ${'task'.padEnd(22)} ${stages.map((s) => s.padStart(6)).join(' ')}`);
        for (const t of tasks) console.log(`  ${t.padEnd(22)} ${stages.map((s) => `${(100 * (rows.find((r) => r.task === t && r.model === s)?.accuracy ?? NaN)).toFixed(1)}%`.padStart(6)).join(' ')}`);
      }
      console.log(`\ndone in ${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s; report: ${report}`);
      console.log(`\nchat with your model:\n  npx minichat chat --ckpt ${chatDir}\n  npx minichat serve --ckpt ${chatDir}    # OpenAI-compatible API and a chat page on http://127.0.0.1:8000`);
    }
  });
}
