/**
 * The cache manager with a real CA as the minter (in-process) and a manual clock.
 */
import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ManualClock } from '../../src/common/clock.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { openCertificateAuthority, type CertificateAuthority } from '../../src/server/ca/index.ts';
import { CacheManager, MINT_PUSH_INTERVAL_MS, type WorkloadSvidMinter } from '../../src/agent/manager/cache-manager.ts';
import type { CachedEntry } from '../../src/agent/manager/entries.ts';
import type { CacheManagerMetrics } from '../../src/agent/manager/metrics.ts';
import type { WorkloadState } from '../../src/agent/manager/workload-state.ts';
import type { IdentitySource } from '../../src/agent/workload-api/identity-source.ts';
import { toTrustDomainBundle, type TrustDomainBundle } from '../../src/agent/manager/bundles.ts';
import { bundleOf, cachedEntry as entry, sel } from '../support/cache-manager-fixtures.ts';

const TD = 'example.org';
const MINUTE = 60_000;

let dir: string;
let clock: ManualClock;
let ca: CertificateAuthority;
let calls: { batches: number[]; jwts: number; failJwt: boolean; failX509: boolean };
let minter: WorkloadSvidMinter;

function manager(opts: { max?: number; entries?: CachedEntry[]; metrics?: CacheManagerMetrics } = {}): CacheManager {
  const m = new CacheManager({
    trustDomain: TD,
    minter,
    logger: pino({ level: 'silent' }),
    clock,
    x509SvidCacheMaxSize: opts.max ?? 1000,
    jwtSvidCacheMaxSize: 100,
    batchSize: 2,
    random: () => 0.5,
    metrics: opts.metrics,
  });
  return m;
}

function collect(m: CacheManager, selectors: ReturnType<typeof sel>): { states: WorkloadState[]; stop: () => void } {
  const states: WorkloadState[] = [];
  const stop = m.subscribe(selectors, (s) => states.push(s));
  return { states, stop };
}

const flush = () => new Promise((r) => setTimeout(r, 0));

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sna-cm-'));
  clock = new ManualClock(Date.UTC(2026, 5, 1));
  ca = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, defaultX509SvidTtlMs: 10 * MINUTE, defaultJwtSvidTtlMs: 10 * MINUTE });
  calls = { batches: [], jwts: 0, failJwt: false, failX509: false };
  minter = {
    async batchNewX509Svid(params) {
      calls.batches.push(params.length);
      if (calls.failX509) throw new ApiError(Code.UNAVAILABLE, 'server down');
      return params.map((p) => {
        const e = entryIndex.get(p.entryId);
        if (e === undefined) return { code: Code.NOT_FOUND, message: 'entry not found or not authorized', certChain: [] };
        return { code: 0, message: 'OK', certChain: ca.signX509SvidFromCsr({ csrDer: p.csr, spiffeId: e.spiffeId }).certChain };
      });
    },
    async newJwtSvid(entryId, audience) {
      calls.jwts++;
      if (calls.failJwt) throw new ApiError(Code.UNAVAILABLE, 'server down');
      return ca.signJwtSvid({ spiffeId: (entryIndex.get(entryId) as CachedEntry).spiffeId, audience });
    },
  };
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const entryIndex = new Map<string, CachedEntry>();
function sync(m: CacheManager, entries: CachedEntry[]): void {
  entryIndex.clear();
  for (const e of entries) entryIndex.set(e.id, e);
  m.applySync(entries, bundleOf(ca), new Map());
}

describe('CacheManager', () => {
  it('satisfies the IdentitySource the Workload API declares, without importing it (checked by tsc)', () => {
    expectTypeOf<CacheManager>().toExtend<IdentitySource>();
  });

  it('answers Unavailable before the first sync', () => {
    const m = manager();
    expect(() => m.subscribe(sel('unix:uid:1'), () => undefined)).toThrow(ApiError);
    try {
      m.bundles();
    } catch (err) {
      expect((err as ApiError).code).toBe(Code.UNAVAILABLE);
    }
  });

  it('preloads an SVID for every entry, in batches', async () => {
    const m = manager();
    sync(m, [entry('a', '/a', ['unix:uid:1']), entry('b', '/b', ['unix:uid:2']), entry('c', '/c', ['unix:uid:3'])]);
    await m.mintDue();
    expect(m.stats().svids).toBe(3);
    expect(calls.batches).toEqual([2, 1]);
  });

  it('sends matching identities sorted by entry ID, with keys matching the certificates', async () => {
    const m = manager();
    sync(m, [entry('z', '/z', ['unix:uid:1']), entry('a', '/a', ['unix:uid:1', 'unix:gid:0']), entry('n', '/n', ['unix:uid:2'])]);
    await m.mintDue();
    const { states } = collect(m, sel('unix:uid:1', 'unix:gid:0'));
    await flush();
    expect(states).toHaveLength(1);
    const ids = states[0]?.identities ?? [];
    expect(ids.map((i) => i.entryId)).toEqual(['a', 'z']);
    for (const id of ids) {
      const cert = new X509Certificate(id.certChain);
      expect(cert.subjectAltName).toBe(`URI:${id.spiffeId}`);
      const pub = createPublicKey(createPrivateKey({ key: id.privateKey, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' });
      expect(pub.equals(cert.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
    }
  });

  it('answers at once with no identities when nothing matches', async () => {
    const m = manager();
    sync(m, [entry('a', '/a', ['unix:uid:1'])]);
    const { states } = collect(m, sel('unix:uid:9'));
    await flush();
    expect(states.map((s) => s.identities.length)).toEqual([0]);
  });

  it('waits for every matching SVID before the first message, minting beyond the preload cap', async () => {
    const m = manager({ max: 1 });
    sync(m, [entry('a', '/a', ['unix:uid:1']), entry('b', '/b', ['unix:uid:1'])]);
    await m.mintDue();
    expect(m.stats().svids).toBe(1);
    const { states } = collect(m, sel('unix:uid:1'));
    await flush();
    await m.mintDue();
    expect(states).toHaveLength(1);
    expect(states[0]?.identities.map((i) => i.entryId)).toEqual(['a', 'b']);
  });

  it('pushes a rotated SVID once past the rotation point, and nothing before', async () => {
    const m = manager();
    sync(m, [entry('a', '/a', ['unix:uid:1'])]);
    await m.mintDue();
    const { states } = collect(m, sel('unix:uid:1'));
    await flush();
    clock.advance(4 * MINUTE); // 40 % of a 10-minute SVID
    await m.mintDue();
    expect(states).toHaveLength(1);
    clock.advance(2 * MINUTE); // 60 %
    await m.mintDue();
    expect(states).toHaveLength(2);
    expect(states[1]?.identities[0]?.certChain.equals(states[0]?.identities[0]?.certChain as Buffer)).toBe(false);
  });

  it('pushes new and removed entries to open subscriptions, ending in no identities', async () => {
    const m = manager();
    sync(m, [entry('a', '/a', ['unix:uid:1'])]);
    await m.mintDue();
    const { states } = collect(m, sel('unix:uid:1'));
    await flush();
    sync(m, [entry('a', '/a', ['unix:uid:1']), entry('b', '/b', ['unix:uid:1'])]);
    await m.mintDue();
    sync(m, []);
    expect(states.map((s) => s.identities.map((i) => i.entryId))).toEqual([['a'], ['a', 'b'], []]);
  });

  it.each([
    { name: 'a quick run: one push at its end', msPerBatch: 0, pushes: [7] },
    { name: 'a slow run: every MINT_PUSH_INTERVAL_MS, then at its end', msPerBatch: MINT_PUSH_INTERVAL_MS / 2, pushes: [5, 7] },
    { name: 'batches slower than the interval: after each of them', msPerBatch: MINT_PUSH_INTERVAL_MS, pushes: [3, 5, 7] },
  ])('pushes what a multi-batch mint run stores for $name', async ({ msPerBatch, pushes }) => {
    const m = manager();
    sync(m, [entry('e0', '/e0', ['unix:uid:1'])]);
    await m.mintDue();
    const { states } = collect(m, sel('unix:uid:1'));
    await flush();
    const slow = minter.batchNewX509Svid.bind(minter);
    minter.batchNewX509Svid = async (params) => {
      clock.advance(msPerBatch);
      return slow(params);
    };
    // Six new entries for the same workload: three batches of two.
    sync(m, Array.from({ length: 7 }, (_, i) => entry(`e${i}`, `/e${i}`, ['unix:uid:1'])));
    await m.mintDue();
    expect(calls.batches).toEqual([1, 2, 2, 2]);
    // Identities in each push after the first state (the sync itself changes nothing served).
    expect(states.slice(1).map((s) => s.identities.length)).toEqual(pushes);
  });

  it('pushes what a failed mint run stored before the failure', async () => {
    const m = manager();
    sync(m, [entry('e0', '/e0', ['unix:uid:1'])]);
    await m.mintDue();
    const { states } = collect(m, sel('unix:uid:1'));
    await flush();
    const real = minter.batchNewX509Svid.bind(minter);
    let n = 0;
    minter.batchNewX509Svid = async (params) => {
      if (++n === 2) throw new ApiError(Code.UNAVAILABLE, 'server down');
      return real(params);
    };
    sync(m, Array.from({ length: 5 }, (_, i) => entry(`e${i}`, `/e${i}`, ['unix:uid:1'])));
    await m.mintDue();
    expect(states.map((s) => s.identities.length)).toEqual([1, 3]);
  });

  it('re-mints an entry whose revision changed', async () => {
    const m = manager();
    sync(m, [entry('a', '/a', ['unix:uid:1'])]);
    await m.mintDue();
    sync(m, [entry('a', '/a2', ['unix:uid:1'], { revision_number: 1 })]);
    await m.mintDue();
    const { states } = collect(m, sel('unix:uid:1'));
    await flush();
    expect(states[0]?.identities[0]?.spiffeId).toBe(`spiffe://${TD}/a2`);
  });

  it('keeps serving cached SVIDs while the server is down', async () => {
    const m = manager();
    sync(m, [entry('a', '/a', ['unix:uid:1'])]);
    await m.mintDue();
    calls.failX509 = true;
    clock.advance(7 * MINUTE);
    await m.mintDue();
    const { states } = collect(m, sel('unix:uid:1'));
    await flush();
    expect(states[0]?.identities.map((i) => i.entryId)).toEqual(['a']);
  });

  it('evicts unsubscribed SVIDs over the cap, never subscribed ones', async () => {
    const m = manager({ max: 2 });
    sync(m, [entry('a', '/a', ['unix:uid:1']), entry('b', '/b', ['unix:uid:2'])]);
    await m.mintDue();
    collect(m, sel('unix:uid:1'));
    await flush();
    sync(m, [entry('a', '/a', ['unix:uid:1']), entry('b', '/b', ['unix:uid:2']), entry('c', '/c', ['unix:uid:3'])]);
    collect(m, sel('unix:uid:3'));
    await m.mintDue();
    await flush();
    sync(m, [entry('a', '/a', ['unix:uid:1']), entry('b', '/b', ['unix:uid:2']), entry('c', '/c', ['unix:uid:3'])]);
    expect(m.stats().svids).toBe(2);
    const { states } = collect(m, sel('unix:uid:1'));
    await flush();
    expect(states[0]?.identities.map((i) => i.entryId)).toEqual(['a']);
  });

  it('shares one state object between subscribers with the same selectors', async () => {
    const m = manager();
    sync(m, [entry('a', '/a', ['unix:uid:1'])]);
    await m.mintDue();
    const one = collect(m, sel('unix:uid:1', 'unix:gid:0'));
    const two = collect(m, sel('unix:gid:0', 'unix:uid:1'));
    await flush();
    expect(one.states[0]).toBe(two.states[0]);
    expect(m.stats().groups).toBe(1);
    one.stop();
    two.stop();
    expect(m.stats()).toMatchObject({ groups: 0, subscriptions: 0 });
  });

  it('notifies bundle listeners only when the bundle content changes', async () => {
    const m = manager();
    sync(m, []);
    const seen: unknown[] = [];
    m.subscribeBundles((b) => seen.push(b));
    await flush();
    sync(m, []);
    expect(seen).toHaveLength(1);
    const jwks = JSON.parse((m.bundles().jwks.get(TD) as Buffer).toString()) as { keys: { kid: string; use?: string }[] };
    expect(jwks.keys.length).toBeGreaterThan(0);
    expect(jwks.keys.every((k) => k.kid !== '' && k.use === undefined)).toBe(true);
    // Members in go-jose's order, so the bytes equal spire-agent's FetchJWTBundles.
    expect(jwks.keys.map((k) => Object.keys(k).join(','))).toEqual(jwks.keys.map(() => 'kty,kid,crv,x,y'));
  });

  describe('JWT-SVIDs', () => {
    it('mints only for the entries the caller selects', async () => {
      const m = manager();
      sync(m, [entry('a', '/a', ['unix:uid:1']), entry('b', '/b', ['unix:uid:1']), entry('c', '/c', ['unix:uid:1'])]);
      const got = await m.fetchJwtSvids(sel('unix:uid:1'), ['x'], new AbortController().signal, (candidates) => candidates.filter((c) => c.entryId !== 'b'));
      expect(got.map((j) => j.entryId)).toEqual(['a', 'c']);
      expect(calls.jwts).toBe(2);
    });

    it('caches by SPIFFE ID and sorted audiences, renews past half-life, and serves the cached token while minting fails', async () => {
      const m = manager();
      sync(m, [entry('a', '/a', ['unix:uid:1'])]);
      const signal = new AbortController().signal;
      const first = await m.fetchJwtSvids(sel('unix:uid:1'), ['x', 'y'], signal);
      const again = await m.fetchJwtSvids(sel('unix:uid:1'), ['y', 'x'], signal);
      expect(again[0]?.token).toBe(first[0]?.token);
      expect(calls.jwts).toBe(1);
      clock.advance(6 * MINUTE);
      calls.failJwt = true;
      const fallback = await m.fetchJwtSvids(sel('unix:uid:1'), ['x', 'y'], signal);
      expect(fallback[0]?.token).toBe(first[0]?.token);
      calls.failJwt = false;
      const renewed = await m.fetchJwtSvids(sel('unix:uid:1'), ['x', 'y'], signal);
      expect(renewed[0]?.token).not.toBe(first[0]?.token);
      clock.advance(20 * MINUTE);
      calls.failJwt = true;
      await expect(m.fetchJwtSvids(sel('unix:uid:1'), ['x', 'y'], signal)).rejects.toThrow('server down');
    });
  });

  it('counts SVIDs minted, and those that replaced a cached one, for X.509 and JWT', async () => {
    const counts = { x509Minted: 0, x509Rotated: 0, jwtMinted: 0, jwtRotated: 0 };
    const counter = (key: keyof typeof counts) => ({ inc: (by = 1) => void (counts[key] += by) });
    const m = manager({ metrics: { x509Minted: counter('x509Minted'), x509Rotated: counter('x509Rotated'), jwtMinted: counter('jwtMinted'), jwtRotated: counter('jwtRotated') } });
    sync(m, [entry('a', '/a', ['unix:uid:1']), entry('b', '/b', ['unix:uid:2'])]);
    await m.mintDue();
    expect(counts).toEqual({ x509Minted: 2, x509Rotated: 0, jwtMinted: 0, jwtRotated: 0 });
    clock.advance(6 * MINUTE); // past half-life: both rotate
    await m.mintDue();
    const signal = new AbortController().signal;
    await Promise.all([m.fetchJwtSvids(sel('unix:uid:1'), ['x'], signal), m.fetchJwtSvids(sel('unix:uid:1'), ['x'], signal)]);
    expect(counts).toEqual({ x509Minted: 4, x509Rotated: 2, jwtMinted: 1, jwtRotated: 0 });
    clock.advance(6 * MINUTE);
    await m.fetchJwtSvids(sel('unix:uid:1'), ['x'], signal);
    expect([counts.jwtMinted, counts.jwtRotated]).toEqual([2, 1]);
  });

  describe('tainted X.509 authorities (forced rotation)', () => {
    let old: CertificateAuthority;
    let next: CertificateAuthority;
    let nextDir: string;
    beforeEach(async () => {
      old = ca;
      nextDir = await mkdtemp(join(tmpdir(), 'sna-cm-next-'));
      next = await openCertificateAuthority({ dataDir: nextDir, trustDomain: TD, clock, defaultX509SvidTtlMs: 10 * MINUTE, defaultJwtSvidTtlMs: 10 * MINUTE });
    });
    afterEach(async () => {
      await rm(nextDir, { recursive: true, force: true });
    });

    /** Both CAs' roots, as the server's bundle lists them after `prepare`, the old one tainted or not. */
    function bothRoots(oldTainted: boolean): TrustDomainBundle {
      const roots = [...old.bundle().x509Authorities.map((asn1) => ({ asn1, tainted: oldTainted })), ...next.bundle().x509Authorities.map((asn1) => ({ asn1, tainted: false }))];
      return toTrustDomainBundle({ trust_domain: TD, x509_authorities: roots, jwt_authorities: [], refresh_hint: 0, sequence_number: 1, wit_authorities: [] });
    }
    function syncWith(m: CacheManager, entries: CachedEntry[], own: TrustDomainBundle): void {
      entryIndex.clear();
      for (const e of entries) entryIndex.set(e.id, e);
      m.applySync(entries, own, new Map());
    }
    /** Mints with `next` from now on (the server activated it). */
    function activateNext(): void {
      ca = next;
    }
    const issuerOf = (chain: Buffer | undefined) => new X509Certificate(chain as Buffer).issuer;

    it('keeps the tainted roots of the server bundle, and drops none from the served bundle', () => {
      const own = bothRoots(true);
      expect(own.taintedX509).toEqual(old.bundle().x509Authorities);
      expect(bothRoots(false).taintedX509).toBeUndefined();
      expect(own.fingerprint).toBe(bothRoots(false).fingerprint);
    });

    it('re-mints at once the SVIDs the tainted root signed and pushes them, leaves the others alone, and does it once', async () => {
      const counts = { x509Minted: 0, x509Rotated: 0, jwtMinted: 0, jwtRotated: 0 };
      const counter = (key: keyof typeof counts) => ({ inc: (by = 1) => void (counts[key] += by) });
      const m = manager({ metrics: { x509Minted: counter('x509Minted'), x509Rotated: counter('x509Rotated'), jwtMinted: counter('jwtMinted'), jwtRotated: counter('jwtRotated') } });
      const a = entry('a', '/a', ['unix:uid:1']);
      const b = entry('b', '/b', ['unix:uid:2']);
      syncWith(m, [a], bothRoots(false));
      await m.mintDue(); // a: signed by the old CA
      activateNext();
      syncWith(m, [a, b], bothRoots(false));
      await m.mintDue(); // b: signed by the new one
      const one = collect(m, sel('unix:uid:1'));
      const two = collect(m, sel('unix:uid:2'));
      await flush();
      const oldIssuer = issuerOf(one.states[0]?.identities[0]?.certChain);
      const newIssuer = issuerOf(two.states[0]?.identities[0]?.certChain);
      expect(oldIssuer).not.toBe(newIssuer);
      expect(m.nextRotationCheck()).toBeGreaterThan(clock.now());
      calls.batches = [];

      syncWith(m, [a, b], bothRoots(true));
      expect(m.nextRotationCheck()).toBe(0);
      await m.mintDue();
      expect(calls.batches).toEqual([1]);
      expect(one.states).toHaveLength(2);
      expect(issuerOf(one.states[1]?.identities[0]?.certChain)).toBe(newIssuer);
      expect(two.states).toHaveLength(1);
      expect(counts.x509Rotated).toBe(1);

      // The same taint in later syncs changes nothing, and the old CA is then revoked.
      syncWith(m, [a, b], bothRoots(true));
      await m.mintDue();
      syncWith(m, [a, b], bundleOf(next));
      await m.mintDue();
      expect(calls.batches).toEqual([1]);
      // The revoke's new bundle is pushed, with the same SVID.
      expect(one.states).toHaveLength(3);
      expect(one.states[2]?.identities[0]).toBe(one.states[1]?.identities[0]);
    });

    it('drops the cached JWT-SVIDs signed with a tainted JWT key, once per taint', async () => {
      const m = manager();
      const a = entry('a', '/a', ['unix:uid:1']);
      syncWith(m, [a], bundleOf(ca));
      const signal = new AbortController().signal;
      const first = await m.fetchJwtSvids(sel('unix:uid:1'), ['x'], signal);
      const b = ca.bundle();
      const taintedJwt = (taint: boolean): TrustDomainBundle =>
        toTrustDomainBundle({
          trust_domain: TD,
          x509_authorities: b.x509Authorities.map((asn1) => ({ asn1, tainted: false })),
          jwt_authorities: b.jwtAuthorities.map((k) => ({ public_key: k.publicKey, key_id: k.keyId, expires_at: k.expiresAt, tainted: taint })),
          refresh_hint: 0,
          sequence_number: 1,
          wit_authorities: [],
        });
      expect(taintedJwt(true).taintedJwtKeyIds).toEqual(b.jwtAuthorities.map((k) => k.keyId));
      syncWith(m, [a], taintedJwt(false));
      expect((await m.fetchJwtSvids(sel('unix:uid:1'), ['x'], signal))[0]?.token).toBe(first[0]?.token);
      syncWith(m, [a], taintedJwt(true));
      const second = await m.fetchJwtSvids(sel('unix:uid:1'), ['x'], signal);
      expect(second).toHaveLength(1);
      expect(calls.jwts).toBe(2);
      // The same taint again: the new token (same key here) stays cached.
      syncWith(m, [a], taintedJwt(true));
      expect((await m.fetchJwtSvids(sel('unix:uid:1'), ['x'], signal))[0]?.token).toBe(second[0]?.token);
      expect(calls.jwts).toBe(2);
    });

    it('re-mints once, with no loop, when the server keeps signing with the tainted authority', async () => {
      const m = manager();
      const a = entry('a', '/a', ['unix:uid:1']);
      syncWith(m, [a], bothRoots(false));
      await m.mintDue();
      const { states } = collect(m, sel('unix:uid:1'));
      await flush();
      calls.batches = [];
      for (let i = 0; i < 3; i++) {
        syncWith(m, [a], bothRoots(true));
        await m.mintDue();
      }
      expect(calls.batches).toEqual([1]);
      expect(states).toHaveLength(2);
      // Regular rotation still applies to the replacement.
      clock.advance(6 * MINUTE);
      syncWith(m, [a], bothRoots(true));
      await m.mintDue();
      expect(calls.batches).toEqual([1, 1]);
    });
  });
});
