import { type ViteUserConfig, defineConfig } from 'vitest/config';

// `npm run faults`: the fault scenarios (test/faults), one file at a time, each printing one
// line of figures. Not part of `npm test`: they restart and stop servers for tens of seconds.
export default defineConfig(
  (): ViteUserConfig => ({
    test: {
      include: ['test/faults/**/*.fault.ts'],
      pool: 'forks',
      fileParallelism: false,
      testTimeout: 120_000,
      hookTimeout: 60_000,
      reporters: ['default', ['./test/support/summary-reporter.ts', { notRun: [] }]],
    },
  }),
);
