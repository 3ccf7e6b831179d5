/**
 * Spec files that need a service this machine may not have. Without the variable, vitest.config.ts
 * leaves the file out and the summary reporter names it as not run, so a missing service is
 * never mistaken for a pass, nor counted as skipped coverage.
 */
export const CONDITIONAL_SPECS = [
  { file: 'test/store.mongo.test.ts', needs: 'MONGO_URL', what: 'MongoDB store contract' },
] as const;

export const specsNotRun = () => CONDITIONAL_SPECS.filter((s) => !process.env[s.needs]);
