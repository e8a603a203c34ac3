/**
 * The closing "tests: …" line of test/support/summary-reporter.ts, from real vitest runs (a
 * child process) over the fixtures in test/fixtures/summary-reporter/: tests that a failed
 * hook kept from running count as failed, not skipped.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { summaryLine } from '../support/summary-reporter.ts';

const REPO = join(import.meta.dirname, '..', '..');
const FIXTURES = 'test/fixtures/summary-reporter';

/** Runs vitest on `files` of the fixtures; resolves its exit code and the lines it printed. */
function runVitest(files: string[]): Promise<{ code: number | null; lines: string[] }> {
  // Without the parent run's VITEST_* variables, which would make the child think it is a worker.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('VITEST') && name !== 'NODE_OPTIONS'));
  const args = [join(REPO, 'node_modules/vitest/vitest.mjs'), 'run', '--config', `${FIXTURES}/vitest.config.ts`, ...files.map((f) => `${FIXTURES}/${f}`)];
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: REPO, env: { ...env, NO_COLOR: '1', CI: '1' }, timeout: 60_000 }, (err, stdout) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, lines: stdout.split('\n').filter((l) => l.startsWith('tests: ')) });
    });
  });
}

describe('summary reporter', () => {
  it('counts the tests a failed beforeAll kept from running as failed, not skipped (it.skip stays skipped)', async () => {
    expect(await runVitest(['suite-hooks.fixture.ts'])).toEqual({ code: 1, lines: ['tests: 2 passed, 3 failed, 2 skipped (3 not run: a hook failed)'] });
  }, 60_000);

  it('counts a file-level beforeAll, a failed afterAll and a file that fails to load', async () => {
    expect(await runVitest(['suite-hooks.fixture.ts', 'file-hook.fixture.ts', 'after-all.fixture.ts', 'load-error.fixture.ts'])).toEqual({
      code: 1,
      lines: ['tests: 3 passed, 7 failed, 2 skipped (5 not run: a hook failed; 2 outside any test)'],
    });
  }, 60_000);

  it('prints the plain line when nothing failed outside the tests', () => {
    expect(summaryLine({ passed: 5, failed: 0, notRun: 0, outside: 0, skipped: 7 })).toBe('tests: 5 passed, 0 failed, 7 skipped');
    expect(summaryLine({ passed: 5, failed: 2, notRun: 0, outside: 0, skipped: 0 })).toBe('tests: 5 passed, 2 failed, 0 skipped');
  });
});
