// The task registry: one name per verifiable task, so the RL run spec can say `task: 'countdown'`.
import { check } from '../util/errors.ts';
import { arithmeticTask, type ArithmeticOptions } from './arithmetic.ts';
import { countdownTask, type CountdownOptions } from './countdown.ts';
import { gsm8kTask, loadGsm8kFile } from './gsm8k.ts';
import type { RLTask } from './common.ts';

export * from './common.ts';
export * from './arithmetic.ts';
export * from './countdown.ts';
export * from './gsm8k.ts';

export const TASK_NAMES = ['arithmetic', 'countdown', 'gsm8k'] as const;
export type TaskName = (typeof TASK_NAMES)[number];

export interface TaskOptions {
  arithmetic?: ArithmeticOptions;
  countdown?: CountdownOptions;
  /** GSM8K JSONL files: `path` (required for gsm8k) and an optional separate `testPath`. */
  gsm8k?: { path: string; testPath?: string };
}

/** Build a task by name. Async because GSM8K reads its file. */
export async function getTask(name: string, opts: TaskOptions = {}): Promise<RLTask> {
  switch (name) {
    case 'arithmetic':
      return arithmeticTask(opts.arithmetic) as RLTask;
    case 'countdown':
      return countdownTask(opts.countdown) as RLTask;
    case 'gsm8k': {
      check(opts.gsm8k?.path, 'gsm8k: give the path of a GSM8K JSONL file (lines of {"question","answer"})');
      const train = await loadGsm8kFile(opts.gsm8k.path);
      const test = opts.gsm8k.testPath ? await loadGsm8kFile(opts.gsm8k.testPath) : undefined;
      return gsm8kTask(train, test) as RLTask;
    }
    default:
      check(false, `unknown RL task '${name}'; choose one of: ${TASK_NAMES.join(', ')}`);
  }
}
