import { configDefaults, defineConfig } from 'vitest/config';
import { specsNotRun } from './test/support/conditional.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: [...configDefaults.exclude, ...specsNotRun().map((s) => s.file)],
    // Servers under test bind ephemeral loopback ports; files run in parallel processes.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
