import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Files that take minutes: started first, so the other fork works through the rest meanwhile. */
const SLOW_FIRST = ['test/sft-story-qa.test.ts'];

class SlowFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const slow = (f: TestSpecification) => SLOW_FIRST.some((s) => f.moduleId.endsWith(s));
    return [...sorted.filter(slow), ...sorted.filter((f) => !slow(f))];
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores on CI: forks keep heavy suites from starving each other. Vitest's default is
    // one fork per core minus one, i.e. ONE fork on two cores: every file in turn. Two forks
    // let the single-threaded story-QA test (~5 min) run beside everything else.
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    sequence: { sequencer: SlowFirst },
  },
});
