/**
 * The agent's heap settings take effect at run time: under an allocation churn like a
 * connection flood's, the young generation keeps its initial size instead of growing to
 * tens of MiB (asserted on V8's own space sizes in a fresh process, not on timings).
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const NODE = process.execPath;
const MODULE = join(import.meta.dirname, '../../src/agent/memory-tuning.ts');

/** Runs a fresh Node that optionally tunes itself, churns short-lived objects, and reports its new-space size. */
function newSpaceAfterChurn(tuned: boolean): { newSpaceMiB: number; trimming: boolean | null } {
  const script = `
    import { getHeapSpaceStatistics } from 'node:v8';
    const tuned = ${tuned};
    let trimming = null;
    if (tuned) {
      const { tuneProcessMemory } = await import(${JSON.stringify(MODULE)});
      const logger = { debug() {}, info() {}, warn() {}, error() {} };
      const tuning = tuneProcessMemory(logger);
      trimming = tuning.trimming;
      tuning.stop();
    }
    let live = [];
    for (let i = 0; i < 3e6; i++) { live.push({ i, s: 'x' + i }); if (live.length > 20000) live = []; }
    const space = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    console.log(JSON.stringify({ newSpaceMiB: space.space_size / 1048576, trimming }));
  `;
  return JSON.parse(execFileSync(NODE, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { newSpaceMiB: number; trimming: boolean | null };
}

describe('tuneProcessMemory', () => {
  it('keeps the young generation at its initial size under churn, and trims native memory on glibc', () => {
    const untuned = newSpaceAfterChurn(false);
    const tuned = newSpaceAfterChurn(true);
    expect(untuned.newSpaceMiB).toBeGreaterThanOrEqual(16);
    // Initial size 1–2 MiB; a loaded machine may see one step of growth, never the untuned 16–64 MiB.
    expect(tuned.newSpaceMiB).toBeLessThanOrEqual(8);
    expect(tuned.trimming).toBe(true);
  });
});
