// `minichat report --run DIR`: the report card of a run (src/eval/report.ts).
import type { Command } from 'commander';
import { writeReport } from '../eval/report.ts';

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('write DIR/report.md: machine, each stage\'s settings, wall time and metrics, loss curves (SVG), the eval table, samples')
    .requiredOption('--run <dir>', 'a run directory (a stage, or a pipeline such as runs/speedrun)')
    .option('--title <text>', 'the report\'s title (default: the run directory\'s name)')
    .action(async (o: { run: string; title?: string }) => {
      const path = await writeReport(o.run, { title: o.title });
      process.stdout.write(`wrote ${path}\n`);
    });
}
