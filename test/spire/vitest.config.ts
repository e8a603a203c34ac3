import { defineConfig } from 'vitest/config';

// The real-SPIRE suite (`npm run test:spire`): SPIRE v1.13.3's own binaries against ours.
// global-setup.ts builds them once (or reuses the cache) and prints how long that took.
// One file at a time: each starts several processes on a shared 2-core machine.
export default defineConfig({
  test: {
    include: ['test/spire/**/*.test.ts'],
    globalSetup: ['test/spire/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    sequence: { concurrent: false },
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
