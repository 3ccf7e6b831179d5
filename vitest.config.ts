import { type ViteUserConfig, configDefaults, defineConfig } from 'vitest/config';
import { specsNotRun, strictlyMissing } from './test/support/conditional.js';

// Spec files whose service this machine lacks are left out, and named at the end of the run
// (test/support/conditional.ts).
export default defineConfig(async (): Promise<ViteUserConfig> => {
  const lacking = await strictlyMissing();
  if (lacking.length > 0) throw new Error(`TEST_STRICT=1: every spec but MongoDB's must run, and this machine lacks:\n${lacking.join('\n')}`);
  const notRun = await specsNotRun();
  return {
    test: {
      include: ['test/**/*.test.ts'],
      exclude: [...configDefaults.exclude, ...notRun.map((s) => s.file)],
      // Servers under test bind ephemeral loopback ports; files run in parallel processes.
      pool: 'forks' as const,
      testTimeout: 30_000,
      hookTimeout: 60_000,
      reporters: ['default', ['./test/support/summary-reporter.ts', { notRun }]],
    },
  };
});
