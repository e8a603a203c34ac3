/**
 * Prints one closing line, "tests: N passed, N failed, N skipped", that CI log readers
 * (and the workplace's CI) recognise regardless of the test runner.
 *
 * A failed hook fails the run, so it counts as failed too. vitest marks the tests that a
 * failed `beforeAll` kept from running as skipped (the error sits on their suite or file),
 * so such a test counts as failed, not skipped, unless it was skipped on purpose (`it.skip`,
 * `todo`, `-t`); a suite or file whose error no such test accounts for (an `afterAll` that
 * failed, a file that failed to load) counts as one failure. A parenthesis after the line
 * (so the line's start keeps its shape) says which:
 * "tests: 2 passed, 4 failed, 1 skipped (3 not run: a hook failed; 1 outside any test)".
 */
import type { Reporter, TestCase, TestModule, TestSuite } from 'vitest/node';

/** The nearest suite or file of `test` that failed outside its tests (a hook), if any. */
function failedAncestor(test: TestCase): TestSuite | TestModule | undefined {
  for (let at: TestSuite | TestModule = test.parent; ; at = at.parent) {
    if (at.errors().length > 0) return at;
    if (at.type === 'module') return undefined;
  }
}

/** The counts of {@link summaryLine}. */
export interface SummaryCounts {
  passed: number;
  /** Tests that ran and failed. */
  failed: number;
  /** Tests that did not run because a hook of their suite or file failed. */
  notRun: number;
  /** Suites and files that failed outside any test, with no test counted for it. */
  outside: number;
  skipped: number;
}

/** Counts the tests of a finished run. */
export function summaryCounts(modules: ReadonlyArray<TestModule>): SummaryCounts {
  const counts: SummaryCounts = { passed: 0, failed: 0, notRun: 0, outside: 0, skipped: 0 };
  for (const mod of modules) {
    const accounted = new Set<TestSuite | TestModule>();
    for (const test of mod.children.allTests()) {
      const state = test.result().state;
      if (state === 'passed') counts.passed++;
      else if (state === 'failed') counts.failed++;
      else {
        const blocked = test.options.mode === 'run' || test.options.mode === 'only' ? failedAncestor(test) : undefined;
        if (blocked === undefined) counts.skipped++;
        else {
          counts.notRun++;
          accounted.add(blocked);
        }
      }
    }
    for (const unit of [mod, ...mod.children.allSuites()]) {
      const failedAlone = unit.errors().length > 0 || (unit === mod && mod.state() === 'failed' && mod.children.size === 0);
      if (failedAlone && !accounted.has(unit)) counts.outside++;
    }
  }
  return counts;
}

/** The closing line, e.g. "tests: 5 passed, 7 failed, 0 skipped (7 not run: a hook failed)". */
export function summaryLine(c: SummaryCounts): string {
  const why: string[] = [];
  if (c.notRun > 0) why.push(`${c.notRun} not run: a hook failed`);
  if (c.outside > 0) why.push(`${c.outside} outside any test`);
  const failed = c.failed + c.notRun + c.outside;
  return `tests: ${c.passed} passed, ${failed} failed, ${c.skipped} skipped${why.length > 0 ? ` (${why.join('; ')})` : ''}`;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    process.stdout.write(`\n${summaryLine(summaryCounts(modules))}\n`);
  }
}
