import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';
import { NOT_RUN_NOTE, type NotRun } from './conditional.js';

/**
 * Ends every run with one plain line, `N passed, N failed, N skipped, N not run`, that CI and
 * people can read without parsing Vitest's coloured summary. A module that failed to load, or
 * whose hook failed, counts as one failure. Then one `not run:` line for each spec file left out and each spec stopped for
 * want of a service or tool (test/support/conditional.ts), with the reason and how to enable
 * it: a spec that did not run is never counted as passed or as skipped.
 */
export default class SummaryReporter implements Reporter {
  private readonly filesNotRun: NotRun[];

  constructor(options: { notRun?: NotRun[] } = {}) {
    this.filesNotRun = options.notRun ?? [];
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>) {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    const notRun: NotRun[] = [...this.filesNotRun];
    for (const mod of modules) {
      let failedHere = 0;
      for (const test of mod.children.allTests()) {
        const result = test.result();
        if (result.state === 'passed') passed++;
        else if (result.state === 'failed') failedHere++;
        else if (result.state === 'skipped' && result.note?.startsWith(NOT_RUN_NOTE)) {
          notRun.push({ what: test.fullName, file: relative(process.cwd(), mod.moduleId), why: result.note.slice(NOT_RUN_NOTE.length) });
        } else skipped++;
      }
      // A module that failed with no failed test: it did not load, or a hook failed (its tests
      // then show as skipped); it counts as one failure.
      failed += failedHere + (mod.state() === 'failed' && failedHere === 0 ? 1 : 0);
    }
    const specs = notRun.length - this.filesNotRun.length;
    const files = this.filesNotRun.length;
    const filesLine = files === 0 ? '' : `, ${files} spec file${files === 1 ? '' : 's'} not run`;
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped, ${specs} not run${filesLine}\n`);
    for (const n of notRun) process.stdout.write(`not run: ${n.what} (${n.file}): ${n.why}\n`);
  }
}
