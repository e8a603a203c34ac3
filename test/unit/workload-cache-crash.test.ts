/**
 * A kill -9 at any moment of writing the workload cache leaves a file that decodes whole
 * (the previous or the new one), plus at most stray temporary files, which the loader
 * removes.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeCacheFile } from '../../src/agent/manager/cache-file.ts';
import { loadWorkloadCache, workloadCacheFile } from '../../src/agent/workload-cache.ts';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'workload-cache-crash-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('workload cache crash safety', () => {
  it('leaves a whole file after kill -9 at random moments of back-to-back writes', async () => {
    const script = join(dir, 'writer.ts');
    writeFileSync(
      script,
      `import { randomBytes } from 'node:crypto';
import { encodeCacheFile } from ${JSON.stringify(resolve('src/agent/manager/cache-file.ts'))};
import { writeFileAtomic } from ${JSON.stringify(resolve('src/common/atomic-file.ts'))};
const svids = [];
for (let i = 0; i < 2000; i++) {
  svids.push({ entryId: 'e' + i, spiffeId: 'spiffe://example.org/w/' + i, hint: '', createdAt: 1, revisionNumber: 1,
    selectors: [{ type: 'unix', value: 'uid:' + i }], federatesWith: [], certChain: randomBytes(600), privateKey: randomBytes(138) });
}
process.stdout.write('ready\\n');
for (let n = 1; ; n++) {
  const file = encodeCacheFile({ writtenAt: n, trustDomain: 'example.org', agentId: 'spiffe://example.org/a', bundles: [], svids });
  await writeFileAtomic(${JSON.stringify(workloadCacheFile(dir))}, file, { mode: 0o600 });
}
`,
    );
    let lastWrittenAt = 0;
    for (let round = 0; round < 6; round++) {
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((done, fail) => {
        child.stdout.once('data', () => done());
        child.once('exit', (code) => fail(new Error(`writer exited early with ${String(code)}`)));
      });
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 250));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      if (!existsSync(workloadCacheFile(dir))) continue; // killed before its first write
      const decoded = decodeCacheFile(readFileSync(workloadCacheFile(dir)));
      expect(decoded.ok).toBe(true);
      if (decoded.ok) {
        expect(decoded.value.svids).toHaveLength(2000);
        lastWrittenAt = decoded.value.writtenAt;
      }
    }
    expect(lastWrittenAt).toBeGreaterThan(0);
    // The loader clears what a killed writer left behind (the file itself is another agent's here).
    await loadWorkloadCache({ dataDir: dir, trustDomain: 'example.org', agent: undefined, now: 0, logger: pino({ level: 'silent' }) });
    expect(readdirSync(dir).filter((n) => n.startsWith('.workload-cache.bin.tmp-'))).toEqual([]);
  }, 60_000);
});
