/**
 * The agent's glibc malloc settings (src/agent/malloc-settings.ts): with them, a large block
 * allocated after a larger one was freed still gets its own mapping (returned to the kernel
 * on free) instead of arena space. Asserted on glibc's own counters (mallinfo2's bytes in
 * mmapped regions) in a fresh process, not on RSS or timings.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const MODULE = join(import.meta.dirname, '../../src/agent/malloc-settings.ts');

/** In a fresh Node: free a 24 MiB block, then hold a 16 MiB one; how many bytes of it are mmapped? */
function mmappedAfterThresholdBump(tuned: boolean): { applied: boolean | null; mmappedGrowth: number } {
  const script = `
    import koffi from 'koffi';
    let applied = null;
    if (${tuned}) applied = (await import(${JSON.stringify(MODULE)})).applyMallocSettings();
    const Info = koffi.struct('mallinfo2_t', { arena: 'size_t', ordblks: 'size_t', smblks: 'size_t', hblks: 'size_t', hblkhd: 'size_t', usmblks: 'size_t', fsmblks: 'size_t', uordblks: 'size_t', fordblks: 'size_t', keepcost: 'size_t' });
    const mallinfo2 = koffi.load(null).func('mallinfo2_t mallinfo2()');
    let big = Buffer.allocUnsafeSlow(24 * 1024 * 1024);
    big.fill(1);
    big = undefined;
    for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setTimeout(r, 10)); }
    const before = Number(mallinfo2().hblkhd);
    const held = Buffer.allocUnsafeSlow(16 * 1024 * 1024);
    held.fill(2);
    const after = Number(mallinfo2().hblkhd);
    console.log(JSON.stringify({ applied, mmappedGrowth: after - before }));
  `;
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: join(import.meta.dirname, '../..') });
  return JSON.parse(out) as { applied: boolean | null; mmappedGrowth: number };
}

describe('applyMallocSettings', () => {
  it('keeps large blocks in their own mappings after a larger block was freed (glibc)', () => {
    const untuned = mmappedAfterThresholdBump(false);
    const tuned = mmappedAfterThresholdBump(true);
    // glibc raised its dynamic threshold to 24 MiB: the 16 MiB block came from the arena.
    expect(untuned.mmappedGrowth).toBe(0);
    expect(tuned).toEqual({ applied: true, mmappedGrowth: expect.any(Number) });
    expect(tuned.mmappedGrowth).toBeGreaterThanOrEqual(16 * 1024 * 1024);
  });
});
