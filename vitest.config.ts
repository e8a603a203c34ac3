import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/e2e needs a real cluster: `npm run test:e2e` (test/e2e/run.ts) runs it.
    // test/spire needs SPIRE's binaries (a long cold build): `npm run test:spire` runs it.
    exclude: ['**/node_modules/**', 'test/e2e/**', 'test/spire/**'],
    // Integration suites start real processes; give them room on a shared 2-core machine.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
