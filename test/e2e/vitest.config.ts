import { basename } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files in a fixed order: node-agent.test.ts deploys the product first (and records the
 * time to the first SVID of a fresh deploy); the others reuse it (support/deploy.ts).
 */
const ORDER = ['image-layout.test.ts', 'node-agent.test.ts', 'csi.test.ts', 'spire-k8s-psat.test.ts'];

class FixedOrder extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification): number => {
      const i = ORDER.indexOf(basename(f.moduleId));
      return i < 0 ? ORDER.length : i;
    };
    return [...files].sort((a, b) => rank(a) - rank(b));
  }
}

// The real-node suite: run by test/e2e/run.ts (`npm run test:e2e`), which starts the cluster
// and passes its coordinates in E2E_* variables. One file at a time: they share the cluster.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
    sequence: { concurrent: false, sequencer: FixedOrder },
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
