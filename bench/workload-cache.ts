/**
 * The persisted workload cache, in-process: file size per entry count, the cost of one write
 * (encode, then the atomic 0600 write with fsyncs), and of one restore at start (read,
 * decode, check every SVID's leaf and signature against the stored bundle).
 *
 * Usage: node bench/workload-cache.ts [entries ...]   (default 1000 5000)
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { systemClock } from '../src/common/clock.ts';
import { writeFileAtomic } from '../src/common/atomic-file.ts';
import { openCertificateAuthority } from '../src/server/ca/index.ts';
import { CacheManager } from '../src/agent/manager/cache-manager.ts';
import type { CachedEntry } from '../src/agent/manager/entries.ts';
import { decodeCacheFile, encodeCacheFile } from '../src/agent/manager/cache-file.ts';
import { fileContentOf, restoreContent } from '../src/agent/manager/cache-restore.ts';
import { bundleOf, cachedEntry } from '../test/support/cache-manager-fixtures.ts';

const TD = 'example.org';
const AGENT = `spiffe://${TD}/spire/agent/join_token/bench`;
const RUNS = 5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function timed(fn: () => unknown): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function run(n: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sna-bench-wc-'));
  try {
    const ca = await openCertificateAuthority({ dataDir: join(dir, 'ca'), trustDomain: TD, clock: systemClock, defaultX509SvidTtlMs: 3_600_000, defaultJwtSvidTtlMs: 300_000 });
    const entries: CachedEntry[] = [];
    for (let i = 0; i < n; i++) {
      const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
      entries.push(cachedEntry(id, `/ns/default/sa/workload-${i}`, ['k8s:ns:default', `k8s:sa:workload-${i}`], { revision_number: 1, created_at: 1_750_000_000 }));
    }
    const byId = new Map(entries.map((e) => [e.id, e]));
    const manager = new CacheManager({
      trustDomain: TD,
      minter: {
        async batchNewX509Svid(params) {
          return params.map((p) => ({ code: 0, message: 'OK', certChain: ca.signX509SvidFromCsr({ csrDer: p.csr, spiffeId: (byId.get(p.entryId) as CachedEntry).spiffeId }).certChain }));
        },
        async newJwtSvid() {
          throw new Error('unused');
        },
      },
      logger: pino({ level: 'silent' }),
      clock: systemClock,
      x509SvidCacheMaxSize: n,
      jwtSvidCacheMaxSize: 10,
    });
    const b = ca.bundle();
    manager.applySync(entries, bundleOf(ca, TD), new Map());
    await manager.mintDue();
    const path = join(dir, 'workload-cache.bin');
    const encode: number[] = [];
    const write: number[] = [];
    const load: number[] = [];
    let bytes: Buffer = Buffer.alloc(0);
    for (let r = 0; r < RUNS; r++) {
      encode.push(await timed(() => (bytes = encodeCacheFile(fileContentOf(manager.persistable()!, { trustDomain: TD, agentId: AGENT, now: Date.now() })))));
      write.push(await timed(() => writeFileAtomic(path, bytes, { mode: 0o600 })));
      load.push(
        await timed(async () => {
          const decoded = decodeCacheFile(await readFile(path));
          if (!decoded.ok) throw new Error(decoded.error);
          const restored = restoreContent(decoded.value, { trustDomain: TD, agentId: AGENT, roots: b.x509Authorities, now: Date.now() });
          if (!restored.ok || restored.value.svids.length !== n) throw new Error('restore failed');
        }),
      );
    }
    const size = (await stat(path)).size;
    console.log(
      `| ${n} | ${(size / 1024).toFixed(0)} KiB (${(size / n).toFixed(0)} B/entry) | ${median(encode).toFixed(1)} ms | ${median(write).toFixed(1)} ms | ${median(load).toFixed(1)} ms |`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const counts = process.argv.slice(2).map(Number).filter((n) => n > 0);
console.log(`workload cache, median of ${RUNS}; Node ${process.version}`);
console.log('| entries | file | encode (event loop) | atomic write (temp, fsync, rename, dir fsync) | restore (read, decode, verify) |');
console.log('|---|---|---|---|---|');
for (const n of counts.length > 0 ? counts : [1000, 5000]) await run(n);
