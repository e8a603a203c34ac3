import { defineConfig } from 'vitest/config';

// The real-node suite: run by test/e2e/run.ts (`npm run test:e2e`), which starts the cluster
// and passes its coordinates in E2E_* variables. One file at a time: they share the cluster.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
    sequence: { concurrent: false },
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
