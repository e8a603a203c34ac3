/**
 * The workload cache across a restart, in-process: a synced cache manager is written
 * through the file format, checked against the agent's stored identity, restored into a new
 * manager that serves before its first sync, and replaced by that sync. Also the writer's
 * coalescing, file mode and the loader's handling of unusable files.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ManualClock } from '../../src/common/clock.ts';
import type { Logger } from '../../src/common/logger.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { openCertificateAuthority, type CertificateAuthority } from '../../src/server/ca/index.ts';
import { CacheManager, type WorkloadSvidMinter } from '../../src/agent/manager/cache-manager.ts';
import type { CachedEntry } from '../../src/agent/manager/entries.ts';
import type { TrustDomainBundle } from '../../src/agent/manager/bundles.ts';
import { decodeCacheFile, encodeCacheFile } from '../../src/agent/manager/cache-file.ts';
import { fileContentOf, restoreContent } from '../../src/agent/manager/cache-restore.ts';
import { WorkloadCacheWriter, discardWorkloadCache, loadWorkloadCache, workloadCacheFile } from '../../src/agent/workload-cache.ts';
import type { WorkloadState } from '../../src/agent/manager/workload-state.ts';
import { eventually } from '../support/eventually.ts';
import { bundleOf, cachedEntry as entry, sel } from '../support/cache-manager-fixtures.ts';

const TD = 'example.org';
const AGENT = `spiffe://${TD}/spire/agent/join_token/t1`;
const MINUTE = 60_000;

let dir: string;
let clock: ManualClock;
let ca: CertificateAuthority;
let minted: number;
const byId = new Map<string, CachedEntry>();

const flush = () => new Promise((r) => setTimeout(r, 0));

function minterFor(authority: () => CertificateAuthority): WorkloadSvidMinter {
  return {
    async batchNewX509Svid(params) {
      minted += params.length;
      return params.map((p) => ({ code: 0, message: 'OK', certChain: authority().signX509SvidFromCsr({ csrDer: p.csr, spiffeId: (byId.get(p.entryId) as CachedEntry).spiffeId }).certChain }));
    },
    async newJwtSvid() {
      throw new ApiError(Code.UNAVAILABLE, 'server down');
    },
  };
}

function manager(opts: { onChange?: () => void; authority?: () => CertificateAuthority } = {}): CacheManager {
  return new CacheManager({
    trustDomain: TD,
    minter: minterFor(opts.authority ?? (() => ca)),
    logger: pino({ level: 'silent' }),
    clock,
    x509SvidCacheMaxSize: 1000,
    jwtSvidCacheMaxSize: 10,
    random: () => 0.5,
    onPersistentChange: opts.onChange,
  });
}

function sync(m: CacheManager, entries: CachedEntry[], own = bundleOf(ca), federated = new Map<string, TrustDomainBundle>()): void {
  byId.clear();
  for (const e of entries) byId.set(e.id, e);
  m.applySync(entries, own, federated);
}

function firstState(m: CacheManager, selectors: ReturnType<typeof sel>): Promise<WorkloadState> {
  return new Promise((resolve) => {
    const stop = m.subscribe(selectors, (s) => {
      stop();
      resolve(s);
    });
  });
}

function captureLogs(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const ENTRIES = () => [entry('a', '/a', ['unix:uid:1']), entry('b', '/b', ['unix:uid:1'], { hint: 'bee', revision_number: 3 }), entry('c', '/c', ['unix:uid:2'])];

/** A synced manager's state, as the file would hold it. */
async function writtenCache(): Promise<{ file: Buffer; source: CacheManager }> {
  const source = manager();
  sync(source, ENTRIES());
  await source.mintDue();
  const cache = source.persistable();
  if (cache === undefined) throw new Error('nothing to persist');
  return { file: encodeCacheFile(fileContentOf(cache, { trustDomain: TD, agentId: AGENT, now: clock.now() })), source };
}

function restoredInto(file: Buffer, stillOwned = () => true): CacheManager {
  const decoded = decodeCacheFile(file);
  if (!decoded.ok) throw new Error(decoded.error);
  const restored = restoreContent(decoded.value, { trustDomain: TD, agentId: AGENT, roots: ca.bundle().x509Authorities, now: clock.now() });
  if (!restored.ok) throw new Error(restored.error);
  const m = manager();
  m.restore({ ...restored.value, stillOwned });
  return m;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sna-wc-'));
  clock = new ManualClock(Date.UTC(2026, 5, 1));
  ca = await openCertificateAuthority({ dataDir: join(dir, 'ca'), trustDomain: TD, clock, defaultX509SvidTtlMs: 10 * MINUTE, defaultJwtSvidTtlMs: 10 * MINUTE });
  minted = 0;
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('restoring the workload cache', () => {
  it('serves the same identities and bundles before the first sync, while not reporting itself synced', async () => {
    const { file, source } = await writtenCache();
    const before = await firstState(source, sel('unix:uid:1'));
    const m = restoredInto(file);
    expect(m.synced).toBe(false);
    expect(m.entries.size).toBe(0); // the first sync fetches every entry in full
    const after = await firstState(m, sel('unix:uid:1'));
    expect(after.identities.map((i) => [i.entryId, i.spiffeId, i.hint])).toEqual([
      ['a', `spiffe://${TD}/a`, ''],
      ['b', `spiffe://${TD}/b`, 'bee'],
    ]);
    expect(after.identities.map((i) => i.certChain)).toEqual(before.identities.map((i) => i.certChain));
    expect(after.identities.map((i) => i.privateKey)).toEqual(before.identities.map((i) => i.privateKey));
    expect(after.bundles.x509.get(TD)).toEqual(before.bundles.x509.get(TD));
    expect(after.bundles.jwks.get(TD)?.toString()).toBe(before.bundles.jwks.get(TD)?.toString());
    expect(m.bundles().trustDomain).toBe(TD);
  });

  it('lets the first sync replace the restored entries, keeping unchanged SVIDs without minting', async () => {
    const { file } = await writtenCache();
    const m = restoredInto(file);
    const states: WorkloadState[] = [];
    m.subscribe(sel('unix:uid:1'), (s) => states.push(s));
    await flush();
    minted = 0;
    sync(m, [entry('a', '/a', ['unix:uid:1'])]); // b and c were deleted on the server
    await m.mintDue();
    expect(m.synced).toBe(true);
    expect(minted).toBe(0);
    expect(states.map((s) => s.identities.map((i) => i.entryId))).toEqual([['a', 'b'], ['a']]);
    expect(m.stats().svids).toBe(1);
  });

  it('re-mints restored SVIDs whose entry changed on the server', async () => {
    const { file } = await writtenCache();
    const m = restoredInto(file);
    minted = 0;
    sync(m, [entry('a', '/a', ['unix:uid:1'], { revision_number: 1 }), ...ENTRIES().slice(1)]);
    await m.mintDue();
    expect(minted).toBe(1);
  });

  it('drops restored SVIDs the server bundle no longer verifies (a new CA), and mints new ones', async () => {
    const { file } = await writtenCache();
    const m = restoredInto(file);
    const other = await openCertificateAuthority({ dataDir: join(dir, 'ca2'), trustDomain: TD, clock, defaultX509SvidTtlMs: 10 * MINUTE, defaultJwtSvidTtlMs: 10 * MINUTE });
    ca = other;
    minted = 0;
    sync(m, ENTRIES(), bundleOf(other));
    expect(m.stats().svids).toBe(0);
    await m.mintDue();
    expect(minted).toBe(3);
  });

  it('stops serving the restored cache once the agent has another identity', async () => {
    const { file } = await writtenCache();
    let owned = true;
    const m = restoredInto(file, () => owned);
    await firstState(m, sel('unix:uid:1'));
    owned = false;
    expect(() => m.subscribe(sel('unix:uid:1'), () => undefined)).toThrow(/agent is not ready: it has not synchronized with the server yet/);
    expect(() => m.bundles()).toThrow(ApiError);
    expect(m.stats().svids).toBe(0);
  });

  it('drops the restored SVIDs at the first sync when the agent attested as another identity', async () => {
    const { file } = await writtenCache();
    let owned = true;
    const m = restoredInto(file, () => owned);
    owned = false;
    sync(m, ENTRIES());
    expect(m.stats().svids).toBe(0);
  });

  describe('checks against the stored agent identity', () => {
    async function decoded() {
      const d = decodeCacheFile((await writtenCache()).file);
      if (!d.ok) throw new Error(d.error);
      return d.value;
    }
    const expectOk = { trustDomain: TD, agentId: AGENT, now: 0 };

    it('refuses another trust domain, another agent, no roots, no own bundle', async () => {
      const file = await decoded();
      const roots = ca.bundle().x509Authorities;
      const now = clock.now();
      expect(restoreContent(file, { ...expectOk, roots, now, trustDomain: 'other.org' })).toMatchObject({ ok: false, error: expect.stringMatching(/trust domain "example.org", not "other.org"/) as unknown });
      expect(restoreContent(file, { ...expectOk, roots, now, agentId: `spiffe://${TD}/spire/agent/join_token/t2` })).toMatchObject({ ok: false, error: expect.stringMatching(/written for agent .*t1, not the stored agent identity .*t2/) as unknown });
      expect(restoreContent(file, { ...expectOk, roots: [], now })).toMatchObject({ ok: false });
      expect(restoreContent({ ...file, bundles: [] }, { ...expectOk, roots, now })).toMatchObject({ ok: false, error: 'it holds no bundle for the own trust domain' });
    });

    it('leaves out expired SVIDs, SVIDs of another CA and SVIDs not naming their entry', async () => {
      const file = await decoded();
      const roots = ca.bundle().x509Authorities;
      const later = restoreContent(file, { ...expectOk, roots, now: clock.now() + 11 * MINUTE });
      expect(later.ok && later.value.skipped).toEqual({ expired: 3, unverified: 0, malformed: 0 });
      const other = await openCertificateAuthority({ dataDir: join(dir, 'ca2'), trustDomain: TD, clock, defaultX509SvidTtlMs: 10 * MINUTE, defaultJwtSvidTtlMs: 10 * MINUTE });
      const foreign = restoreContent(file, { ...expectOk, roots: other.bundle().x509Authorities, now: clock.now() });
      expect(foreign.ok && foreign.value.skipped).toEqual({ expired: 0, unverified: 3, malformed: 0 });
      const swapped = { ...file, svids: file.svids.map((s, i) => (i === 0 ? { ...s, spiffeId: `spiffe://${TD}/not-a` } : s)) };
      const mismatch = restoreContent(swapped, { ...expectOk, roots, now: clock.now() });
      expect(mismatch.ok && [mismatch.value.svids.length, mismatch.value.skipped.malformed]).toEqual([2, 1]);
    });
  });
});

describe('the workload cache file on disk', () => {
  it('coalesces a burst of changes into one write, writes 0600, and spaces writes apart', async () => {
    const { logger, lines } = captureLogs();
    let writer: WorkloadCacheWriter | undefined;
    const m = manager({ onChange: () => writer?.changed() });
    writer = new WorkloadCacheWriter({ dataDir: dir, trustDomain: TD, agentId: () => AGENT, source: () => m.persistable(), logger, clock, delayMs: 30, minIntervalMs: 300 });
    sync(m, ENTRIES());
    await m.mintDue();
    for (let i = 0; i < 50; i++) writer.changed();
    const saves = () => lines().filter((l) => l['msg'] === 'workload cache saved');
    await eventually(async () => expect(saves()).toHaveLength(1), 5_000, 10);
    expect(saves()[0]).toMatchObject({ svids: 3 });
    expect((await stat(workloadCacheFile(dir))).mode & 0o777).toBe(0o600);
    sync(m, ENTRIES().slice(0, 1));
    await new Promise((r) => setTimeout(r, 100));
    expect(saves()).toHaveLength(1); // within minIntervalMs of the last write
    await eventually(async () => expect(saves()).toHaveLength(2), 5_000, 10);
    expect(Number(saves()[1]?.['time']) - Number(saves()[0]?.['time'])).toBeGreaterThanOrEqual(290);
    expect(saves()[1]).toMatchObject({ svids: 1 });
    expect(JSON.stringify(lines())).not.toMatch(/PRIVATE KEY|privateKey/);
    await writer.close();
  });

  it('flushes a pending change at once, and writes nothing after close', async () => {
    const { logger, lines } = captureLogs();
    const m = manager();
    const writer = new WorkloadCacheWriter({ dataDir: dir, trustDomain: TD, agentId: () => AGENT, source: () => m.persistable(), logger, clock, delayMs: 10_000 });
    sync(m, ENTRIES());
    await m.mintDue();
    writer.changed();
    await writer.flush();
    expect(existsSync(workloadCacheFile(dir))).toBe(true);
    writer.changed(); // dirty when closed (a banned agent): close() must not write it later
    await writer.close();
    await rm(workloadCacheFile(dir));
    writer.changed();
    await writer.flush();
    expect(existsSync(workloadCacheFile(dir))).toBe(false);
    expect(lines().filter((l) => l['msg'] === 'workload cache saved')).toHaveLength(1);
  });

  it('loads what the writer wrote for the stored agent', async () => {
    const { file } = await writtenCache();
    await writeFile(workloadCacheFile(dir), file, { mode: 0o600 });
    const { logger, lines } = captureLogs();
    const restored = await loadWorkloadCache({ dataDir: dir, trustDomain: TD, agent: { spiffeId: AGENT, roots: ca.bundle().x509Authorities }, now: clock.now(), logger });
    expect(restored?.svids.map((s) => s.entry.id)).toEqual(['a', 'b', 'c']);
    expect(lines().at(-1)).toMatchObject({ msg: 'serving the restored workload cache until the first sync', svids: 3 });
  });

  const unusable: Array<[string, (file: Buffer) => Buffer, { spiffeId: string } | undefined, RegExp]> = [
    ['a truncated file', (f) => f.subarray(0, Math.floor(f.length / 2)), { spiffeId: AGENT }, /truncated/],
    ['a corrupt file', (f) => Buffer.concat([f.subarray(0, 100), Buffer.alloc(f.length - 100, 0x41)]), { spiffeId: AGENT }, /checksum mismatch/],
    ['a file of another agent', (f) => f, { spiffeId: `spiffe://${TD}/spire/agent/join_token/other` }, /not the stored agent identity/],
    ['a file without a stored agent identity', (f) => f, undefined, /no stored agent identity/],
  ];
  for (const [name, damage, agent, reason] of unusable) {
    it(`ignores and removes ${name}, with a log line`, async () => {
      const { file } = await writtenCache();
      await writeFile(workloadCacheFile(dir), damage(file), { mode: 0o600 });
      const { logger, lines } = captureLogs();
      const restored = await loadWorkloadCache({
        dataDir: dir,
        trustDomain: TD,
        agent: agent === undefined ? undefined : { ...agent, roots: ca.bundle().x509Authorities },
        now: clock.now(),
        logger,
      });
      expect(restored).toBeUndefined();
      expect(lines().at(-1)).toMatchObject({ level: 40, msg: 'ignoring the workload cache file; it will be rewritten after the first sync' });
      expect(String(lines().at(-1)?.['reason'])).toMatch(reason);
      expect(existsSync(workloadCacheFile(dir))).toBe(false);
    });
  }

  it('removes the file and stray temporary files when discarded', async () => {
    await writeFile(workloadCacheFile(dir), 'x');
    await writeFile(join(dir, '.workload-cache.bin.tmp-1-abc'), 'x');
    const { logger } = captureLogs();
    await discardWorkloadCache(dir, logger);
    expect(existsSync(workloadCacheFile(dir))).toBe(false);
    expect(existsSync(join(dir, '.workload-cache.bin.tmp-1-abc'))).toBe(false);
  });
});
