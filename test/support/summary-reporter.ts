import type { Reporter, TestModule } from 'vitest/node';
import { specsNotRun } from './conditional.js';

/**
 * Ends every run with one plain line, `N passed, N failed, N skipped`, that CI and people can
 * read without parsing Vitest's coloured summary. Modules that failed to load count as failed.
 * Spec files left out for want of a service follow, one `not run:` line each.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>) {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const mod of modules) {
      if (mod.state() === 'failed' && [...mod.children.allTests()].length === 0) failed++;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    for (const spec of specsNotRun()) process.stdout.write(`not run: ${spec.what} (${spec.file}): ${spec.needs} is not set\n`);
  }
}
