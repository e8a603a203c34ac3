import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { openDatastore, type Datastore } from '../../src/server/datastore/datastore.ts';
import type { EntryFilter, EntryInput } from '../../src/server/datastore/types.ts';

const TD = 'example.org';
const AGENT = 'spiffe://example.org/spire/agent/join_token/abc';

let dir: string;
let path: string;
let clock: ManualClock;
let ds: Datastore;
const opened: Datastore[] = [];

function open(): Datastore {
  const store = openDatastore({ path, trustDomain: TD, clock });
  opened.push(store);
  return store;
}

/** Row counts of the raw tables, read through a separate connection. */
function rawCounts(): Record<string, number> {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const out: Record<string, number> = {};
    for (const table of ['entries', 'entry_selectors', 'entry_dns_names', 'entry_federates_with']) {
      out[table] = Number(db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get()?.n);
    }
    return out;
  } finally {
    db.close();
  }
}

function entry(overrides: Partial<EntryInput> = {}): EntryInput {
  return {
    spiffeId: 'spiffe://example.org/workload',
    parentId: AGENT,
    selectors: [{ type: 'unix', value: 'uid:1000' }],
    ...overrides,
  };
}

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected an ApiError');
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'datastore-test-'));
  path = join(dir, 'datastore.sqlite3');
  clock = new ManualClock(Date.UTC(2026, 0, 1));
  ds = open();
});

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('entries', () => {
  const full: EntryInput = {
    id: 'entry-1',
    spiffeId: 'spiffe://example.org/ns/prod/sa/web',
    parentId: AGENT,
    selectors: [
      { type: 'k8s', value: 'sa:web' },
      { type: 'k8s', value: 'ns:prod' },
      { type: 'k8s', value: 'sa:web' },
    ],
    x509SvidTtl: 3600,
    jwtSvidTtl: 300,
    federatesWith: ['spiffe://zeta.org', 'alpha.org'],
    dnsNames: ['web.prod.svc', 'web'],
    hint: 'external',
    admin: true,
    downstream: true,
    storeSvid: true,
    expiresAt: 1_900_000_000,
  };
  const expected = {
    id: 'entry-1',
    spiffeId: 'spiffe://example.org/ns/prod/sa/web',
    parentId: AGENT,
    selectors: [
      { type: 'k8s', value: 'ns:prod' },
      { type: 'k8s', value: 'sa:web' },
    ],
    x509SvidTtl: 3600,
    jwtSvidTtl: 300,
    federatesWith: ['alpha.org', 'zeta.org'],
    dnsNames: ['web.prod.svc', 'web'],
    hint: 'external',
    admin: true,
    downstream: true,
    storeSvid: true,
    expiresAt: 1_900_000_000,
    revisionNumber: 0,
    createdAt: Date.UTC(2026, 0, 1) / 1000,
  };

  function withBundles(store: Datastore): void {
    for (const td of ['alpha.org', 'zeta.org']) {
      store.setFederatedBundle({ trustDomain: td, x509Authorities: [Buffer.from([1])], jwtAuthorities: [], refreshHint: 0 });
    }
  }

  it('round-trips every field, normalised, and reads the same after reopening', () => {
    withBundles(ds);
    const created = ds.createEntry(full);
    expect(created).toEqual(expected);
    expect(ds.getEntry('entry-1')).toEqual(expected);
    expect(ds.listEntries()).toEqual([expected]);
    ds.close();
    const reopened = open();
    expect(reopened.getEntry('entry-1')).toEqual(expected);
    expect(reopened.countEntries()).toBe(1);
  });

  it('generates a UUID when no ID is given, and defaults every optional field', () => {
    const created = ds.createEntry(entry());
    expect(created.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(created).toMatchObject({
      x509SvidTtl: 0,
      jwtSvidTtl: 0,
      federatesWith: [],
      dnsNames: [],
      hint: '',
      admin: false,
      downstream: false,
      storeSvid: false,
      expiresAt: 0,
      revisionNumber: 0,
    });
  });

  it('rejects a similar entry (same SPIFFE ID, parent and selector set) and leaves the tables unchanged', () => {
    const first = ds.createEntry(entry({ selectors: [{ type: 'a', value: '1' }, { type: 'b', value: '2' }] }));
    const before = rawCounts();
    const err = apiError(() =>
      ds.createEntry(entry({ selectors: [{ type: 'b', value: '2' }, { type: 'a', value: '1' }], hint: 'different' })),
    );
    expect(err.code).toBe(Code.ALREADY_EXISTS);
    expect(err.message).toBe(`similar entry already exists: entry ID "${first.id}"`);
    expect(err.details).toEqual({ entryId: first.id });
    expect(ds.countEntries()).toBe(1);
    expect(rawCounts()).toEqual(before);
    // A different selector set, parent or SPIFFE ID is not similar.
    ds.createEntry(entry({ selectors: [{ type: 'a', value: '1' }] }));
    ds.createEntry(entry({ selectors: [{ type: 'a', value: '1' }], parentId: 'spiffe://example.org/other-parent' }));
    ds.createEntry(entry({ selectors: [{ type: 'a', value: '1' }], spiffeId: 'spiffe://example.org/other' }));
    expect(ds.countEntries()).toBe(4);
  });

  it('rejects a caller-chosen ID already in use', () => {
    ds.createEntry(entry({ id: 'fixed' }));
    const err = apiError(() => ds.createEntry(entry({ id: 'fixed', spiffeId: 'spiffe://example.org/other' })));
    expect(err.code).toBe(Code.ALREADY_EXISTS);
    expect(err.message).toBe('datastore: entry ID "fixed" is already in use');
    expect(ds.countEntries()).toBe(1);
  });

  const invalid: { name: string; input: Partial<EntryInput>; message: string }[] = [
    { name: 'reserved path', input: { spiffeId: 'spiffe://example.org/spire/x' }, message: 'failed to convert entry: invalid spiffe ID: "spiffe://example.org/spire/x" is not a workload in trust domain "example.org"; path is in the reserved namespace' },
    { name: 'foreign trust domain', input: { spiffeId: 'spiffe://other.org/x' }, message: 'failed to convert entry: invalid spiffe ID: "spiffe://other.org/x" is not a member of trust domain "example.org"' },
    { name: 'no selectors', input: { selectors: [] }, message: 'failed to convert entry: selector list is empty' },
    { name: 'negative TTL', input: { x509SvidTtl: -1 }, message: 'failed to create entry: datastore-validation: invalid registration entry: X509SvidTtl is not set' },
  ];
  for (const tc of invalid) {
    it(`rejects an invalid entry (${tc.name}) with INVALID_ARGUMENT and writes nothing`, () => {
      const generation = ds.entriesGeneration();
      const err = apiError(() => ds.createEntry(entry(tc.input)));
      expect(err.code).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toBe(tc.message);
      expect(rawCounts()).toEqual({ entries: 0, entry_selectors: 0, entry_dns_names: 0, entry_federates_with: 0 });
      expect(ds.entriesGeneration()).toBe(generation);
    });
  }

  it('rolls back a failure in the middle of a multi-row write: no partial rows', () => {
    ds.setFederatedBundle({ trustDomain: 'alpha.org', x509Authorities: [], jwtAuthorities: [], refreshHint: 0 });
    const generation = ds.entriesGeneration();
    // The entry row, its selectors and DNS names are written before the federated trust
    // domains; the unknown bundle fails the write after them.
    const err = apiError(() =>
      ds.createEntry(
        entry({
          selectors: [{ type: 'a', value: '1' }, { type: 'b', value: '2' }],
          dnsNames: ['x.example'],
          federatesWith: ['alpha.org', 'missing.org'],
        }),
      ),
    );
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toBe('failed to create entry: unable to find federated bundle "spiffe://missing.org"');
    expect(rawCounts()).toEqual({ entries: 0, entry_selectors: 0, entry_dns_names: 0, entry_federates_with: 0 });
    expect(ds.entriesGeneration()).toBe(generation);
  });

  it('allows federating with the server trust domain without a federated bundle, as SPIRE', () => {
    expect(ds.createEntry(entry({ federatesWith: ['example.org'] })).federatesWith).toEqual(['example.org']);
  });

  it('batch-creates items independently, index-aligned, without partial rows for failures', () => {
    const existing = ds.createEntry(entry({ spiffeId: 'spiffe://example.org/existing' }));
    const results = ds.batchCreateEntries([
      entry({ spiffeId: 'spiffe://example.org/a', dnsNames: ['a.example'] }),
      entry({ spiffeId: 'spiffe://example.org/existing' }),
      entry({ spiffeId: 'spiffe://example.org/spire/bad' }),
      entry({ spiffeId: 'spiffe://example.org/c', dnsNames: ['c.example'], federatesWith: ['missing.org'] }),
      entry({ spiffeId: 'spiffe://example.org/d', selectors: [{ type: 'x', value: '1' }, { type: 'y', value: '2' }] }),
    ]);
    expect(results.map((r) => r.status.code)).toEqual([
      Code.OK,
      Code.ALREADY_EXISTS,
      Code.INVALID_ARGUMENT,
      Code.FAILED_PRECONDITION,
      Code.OK,
    ]);
    expect(results[0]?.entry?.spiffeId).toBe('spiffe://example.org/a');
    expect(results[1]).toEqual({ status: { code: Code.ALREADY_EXISTS, message: 'similar entry already exists' }, entry: existing });
    expect(results[2]?.status.message).toMatch(/^failed to convert entry: invalid spiffe ID: .*reserved namespace$/);
    expect(results[2]?.entry).toBeUndefined();
    expect(results[3]?.status.message).toBe('failed to create entry: unable to find federated bundle "spiffe://missing.org"');
    expect(ds.listEntries().map((e) => e.spiffeId).sort()).toEqual([
      'spiffe://example.org/a',
      'spiffe://example.org/d',
      'spiffe://example.org/existing',
    ]);
    // 1 + 1 + 2 selectors, one DNS name (entry "c" was rolled back with its DNS name).
    expect(rawCounts()).toEqual({ entries: 3, entry_selectors: 4, entry_dns_names: 1, entry_federates_with: 0 });
  });

  it('updates an entry, bumping the revision and replacing child rows', () => {
    const created = ds.createEntry(entry({ dnsNames: ['a.example'] }));
    const updated = ds.updateEntry(created.id, {
      selectors: [{ type: 'k8s', value: 'ns:b' }, { type: 'k8s', value: 'ns:a' }],
      dnsNames: ['b.example'],
      hint: 'h',
    });
    expect(updated).toEqual({
      ...created,
      selectors: [{ type: 'k8s', value: 'ns:a' }, { type: 'k8s', value: 'ns:b' }],
      dnsNames: ['b.example'],
      hint: 'h',
      revisionNumber: 1,
    });
    expect(ds.updateEntry(created.id, {}).revisionNumber).toBe(2);
    expect(rawCounts()).toMatchObject({ entry_selectors: 2, entry_dns_names: 1 });
  });

  it('rejects bad updates and leaves the entry unchanged', () => {
    const a = ds.createEntry(entry({ spiffeId: 'spiffe://example.org/a' }));
    const b = ds.createEntry(entry({ spiffeId: 'spiffe://example.org/b' }));
    const notFound = apiError(() => ds.updateEntry('nope', { hint: 'x' }));
    expect([notFound.code, notFound.message]).toEqual([Code.NOT_FOUND, 'entry not found']);
    const invalidPatch = apiError(() => ds.updateEntry(a.id, { selectors: [] }));
    expect([invalidPatch.code, invalidPatch.message]).toEqual([Code.INVALID_ARGUMENT, 'failed to convert entry: selector list is empty']);
    const badTtl = apiError(() => ds.updateEntry(a.id, { jwtSvidTtl: -3 }));
    expect(badTtl.message).toBe('failed to update entry: datastore-validation: invalid registration entry: JwtSvidTtl is not set');
    const similar = apiError(() => ds.updateEntry(b.id, { spiffeId: 'spiffe://example.org/a' }));
    expect([similar.code, similar.message]).toEqual([Code.ALREADY_EXISTS, `similar entry already exists: entry ID "${a.id}"`]);
    const missingBundle = apiError(() => ds.updateEntry(a.id, { federatesWith: ['missing.org'], hint: 'changed' }));
    expect(missingBundle.message).toBe('failed to update entry: unable to find federated bundle "spiffe://missing.org"');
    expect(ds.getEntry(a.id)).toEqual(a);
    expect(ds.getEntry(b.id)).toEqual(b);
  });

  it('batch-updates items independently, index-aligned, with SPIRE statuses', () => {
    const a = ds.createEntry(entry({ spiffeId: 'spiffe://example.org/a', dnsNames: ['a.example'] }));
    const b = ds.createEntry(entry({ spiffeId: 'spiffe://example.org/b' }));
    const results = ds.batchUpdateEntries([
      { id: a.id, fields: { hint: 'new', dnsNames: [] } },
      { id: 'missing', fields: { hint: 'x' } },
      { id: b.id, fields: { selectors: [] } },
      { id: b.id, fields: { federatesWith: ['missing.org'], dnsNames: ['b.example'] } },
    ]);
    expect(results.map((r) => [r.status.code, r.status.message])).toEqual([
      [Code.OK, 'OK'],
      [Code.NOT_FOUND, 'failed to update entry'],
      [Code.INVALID_ARGUMENT, 'failed to convert entry: selector list is empty'],
      [Code.FAILED_PRECONDITION, 'failed to update entry: unable to find federated bundle "spiffe://missing.org"'],
    ]);
    expect(results[0]?.entry).toEqual({ ...a, hint: 'new', dnsNames: [], revisionNumber: 1 });
    expect(ds.getEntry(a.id)).toEqual(results[0]?.entry);
    expect(ds.getEntry(b.id)).toEqual(b);
    expect(rawCounts()).toEqual({ entries: 2, entry_selectors: 2, entry_dns_names: 0, entry_federates_with: 0 });
  });

  it('deletes an entry with its child rows; a second delete is NOT_FOUND', () => {
    const created = ds.createEntry(entry({ dnsNames: ['a.example'] }));
    expect(ds.deleteEntry(created.id)).toEqual(created);
    expect(ds.getEntry(created.id)).toBeUndefined();
    expect(rawCounts()).toEqual({ entries: 0, entry_selectors: 0, entry_dns_names: 0, entry_federates_with: 0 });
    const err = apiError(() => ds.deleteEntry(created.id));
    expect([err.code, err.message]).toEqual([Code.NOT_FOUND, 'entry not found']);
  });

  it('bumps the entries generation on every committed change only', () => {
    const g0 = ds.entriesGeneration();
    const e = ds.createEntry(entry());
    ds.updateEntry(e.id, { hint: 'x' });
    ds.deleteEntry(e.id);
    expect(ds.entriesGeneration()).toBe(g0 + 3);
    apiError(() => ds.deleteEntry(e.id));
    expect(ds.entriesGeneration()).toBe(g0 + 3);
  });

  describe('listEntries filters', () => {
    const sel = (...pairs: string[]): { type: string; value: string }[] =>
      pairs.map((p) => ({ type: p.split(':')[0] ?? '', value: p.split(':').slice(1).join(':') }));
    beforeEach(() => {
      for (const td of ['alpha.org', 'beta.org']) {
        ds.setFederatedBundle({ trustDomain: td, x509Authorities: [], jwtAuthorities: [], refreshHint: 0 });
      }
      ds.createEntry(entry({ id: 'e1', spiffeId: 'spiffe://example.org/one', selectors: sel('a:1'), hint: 'h1' }));
      ds.createEntry(entry({ id: 'e2', spiffeId: 'spiffe://example.org/two', selectors: sel('a:1', 'b:2'), federatesWith: ['alpha.org'] }));
      ds.createEntry(
        entry({ id: 'e3', spiffeId: 'spiffe://example.org/three', selectors: sel('a:1', 'b:2', 'c:3'), federatesWith: ['alpha.org', 'beta.org'], downstream: true }),
      );
      ds.createEntry(entry({ id: 'e4', spiffeId: 'spiffe://example.org/four', parentId: 'spiffe://example.org/other', selectors: sel('d:4') }));
    });
    const cases: { name: string; filter: EntryFilter; ids: string[] }[] = [
      { name: 'none', filter: {}, ids: ['e1', 'e2', 'e3', 'e4'] },
      { name: 'by SPIFFE ID', filter: { bySpiffeId: 'spiffe://example.org/two' }, ids: ['e2'] },
      { name: 'by parent ID', filter: { byParentId: 'spiffe://example.org/other' }, ids: ['e4'] },
      { name: 'by hint', filter: { byHint: 'h1' }, ids: ['e1'] },
      { name: 'by downstream', filter: { byDownstream: true }, ids: ['e3'] },
      { name: 'selectors exact', filter: { bySelectors: { selectors: sel('b:2', 'a:1'), match: 'exact' } }, ids: ['e2'] },
      { name: 'selectors subset', filter: { bySelectors: { selectors: sel('a:1', 'b:2'), match: 'subset' } }, ids: ['e1', 'e2'] },
      { name: 'selectors superset', filter: { bySelectors: { selectors: sel('a:1', 'b:2'), match: 'superset' } }, ids: ['e2', 'e3'] },
      { name: 'selectors any', filter: { bySelectors: { selectors: sel('c:3', 'd:4'), match: 'any' } }, ids: ['e3', 'e4'] },
      { name: 'selectors and parent', filter: { byParentId: AGENT, bySelectors: { selectors: sel('a:1'), match: 'superset' } }, ids: ['e1', 'e2', 'e3'] },
      { name: 'federates exact', filter: { byFederatesWith: { trustDomains: ['alpha.org'], match: 'exact' } }, ids: ['e2'] },
      { name: 'federates subset', filter: { byFederatesWith: { trustDomains: ['spiffe://alpha.org'], match: 'subset' } }, ids: ['e2'] },
      { name: 'federates superset', filter: { byFederatesWith: { trustDomains: ['alpha.org'], match: 'superset' } }, ids: ['e2', 'e3'] },
      { name: 'federates any', filter: { byFederatesWith: { trustDomains: ['beta.org', 'gamma.org'], match: 'any' } }, ids: ['e3'] },
    ];
    for (const tc of cases) {
      it(tc.name, () => {
        expect(ds.listEntries(tc.filter).map((e) => e.id)).toEqual(tc.ids);
        expect(ds.countEntries(tc.filter)).toBe(tc.ids.length);
      });
    }

    it('rejects malformed filters', () => {
      const empty = apiError(() => ds.listEntries({ bySelectors: { selectors: [], match: 'any' } }));
      expect([empty.code, empty.message]).toEqual([Code.INVALID_ARGUMENT, 'malformed selectors filter: empty selector set']);
      const badTd = apiError(() => ds.listEntries({ byFederatesWith: { trustDomains: ['Bad'], match: 'any' } }));
      expect(badTd.code).toBe(Code.INVALID_ARGUMENT);
    });

    it('pages in ID order', () => {
      const p1 = ds.listEntriesPage(undefined, { pageSize: 3 });
      expect(p1.entries.map((e) => e.id)).toEqual(['e1', 'e2', 'e3']);
      const p2 = ds.listEntriesPage(undefined, { pageSize: 3, pageToken: p1.nextPageToken });
      expect(p2).toMatchObject({ nextPageToken: '' });
      expect(p2.entries.map((e) => e.id)).toEqual(['e4']);
      const filtered = ds.listEntriesPage({ byParentId: AGENT }, { pageSize: 2, pageToken: 'e1' });
      expect(filtered.entries.map((e) => e.id)).toEqual(['e2', 'e3']);
    });
  });
});

describe('opening', () => {
  it('fails clearly, naming the path, for a file that is not a SQLite database', () => {
    const bad = join(dir, 'not-a-db.sqlite3');
    writeFileSync(bad, 'this is plain text, not a database '.repeat(50));
    const err = apiError(() => openDatastore({ path: bad, trustDomain: TD }));
    expect(err.message).toContain(JSON.stringify(bad));
    expect(err.message).toMatch(/^datastore: cannot use ".*" as a SQLite database: file is not a database$/);
  });

  it('refuses a database with a newer schema than this program', () => {
    ds.close();
    const raw = new DatabaseSync(path);
    raw.exec('UPDATE schema_version SET version = 999');
    raw.close();
    const err = apiError(() => open());
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain('has schema version 999, newer than this program supports');
  });

  it('migrates agent serials stored in hex (schema 1) to decimal, as SPIRE stores them', () => {
    ds.createAttestedAgent({ spiffeId: AGENT, attestationType: 'join_token', serialNumber: 'x', newSerialNumber: '', expiresAt: 1, banned: false, canReattest: false, selectors: [] });
    ds.close();
    const raw = new DatabaseSync(path);
    // What schema 1 wrote: lowercase hex, '' for no pending serial.
    raw.prepare('UPDATE agents SET serial_number = ?, new_serial_number = ? WHERE spiffe_id = ?').run('e3b0c44298fc1c149afbf4c8996fb924', '', AGENT);
    raw.exec('UPDATE schema_version SET version = 1');
    raw.close();
    const again = open();
    expect(again.getAttestedAgent(AGENT)).toMatchObject({ serialNumber: '302652579918965577886386472538583578916', newSerialNumber: '' });
  });

  it('uses WAL and creates the file owner-only', async () => {
    const { statSync } = await import('node:fs');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const raw = new DatabaseSync(path, { readOnly: true });
    expect(raw.prepare('PRAGMA journal_mode').get()?.journal_mode).toBe('wal');
    raw.close();
  });

  it('creates missing parent directories and reopens an existing file without migrating again', () => {
    const nested = join(dir, 'a', 'b', 'ds.sqlite3');
    const first = openDatastore({ path: nested, trustDomain: 'spiffe://example.org', clock });
    opened.push(first);
    expect(first.trustDomain).toBe('example.org');
    first.createEntry(entry());
    first.close();
    const second = openDatastore({ path: nested, trustDomain: TD, clock });
    opened.push(second);
    expect(second.countEntries()).toBe(1);
  });

  it('turns calls after close into INTERNAL ApiErrors', () => {
    ds.close();
    ds.close();
    expect(apiError(() => ds.countEntries()).code).toBe(Code.INTERNAL);
  });
});
