import { X509Certificate } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ManualClock } from '../../src/common/clock.ts';
import { Code } from '../../src/common/errors.ts';
import { openCertificateAuthority, type CertificateAuthority, type X509SvidResult } from '../../src/server/ca/index.ts';
import { checkX509SvidProfile } from '../support/svid-profile.ts';
import { HOUR, TD, apiErrorOf, jwksOf, keyPair, tempDir } from '../support/ca-fixtures.ts';

const ID = `spiffe://${TD}/w`;
const NONE = { bundleChanged: false, x509CaActivated: false, jwtKeyActivated: false };

describe('CA rotation (prepare at 1/2, activate at 5/6, prune at expiry)', () => {
  let clock: ManualClock;
  let t0: number;
  let ca: CertificateAuthority;
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
    clock = new ManualClock();
    t0 = clock.now();
    ca = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock });
  });
  afterEach(async () => cleanup());

  const sign = (): X509SvidResult => ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey });
  const violations = (svid: X509SvidResult, roots: readonly Buffer[]): string[] =>
    checkX509SvidProfile(svid.certChain, { expectedId: ID, bundleRootsDer: roots, now: new Date(clock.now()) });
  const at = (ms: number): void => clock.set(t0 + ms);

  it('does nothing before half-life and says when it next has work', async () => {
    expect(ca.nextRotationAt()).toBe(t0 + 12 * HOUR);
    at(12 * HOUR - 1);
    expect(await ca.maybeRotate()).toEqual(NONE);
    expect(ca.bundle().sequenceNumber).toBe(1);
    expect(ca.bundle().x509Authorities).toHaveLength(1);
  });

  it('publishes the next root and JWT key at half-life but keeps signing with the current ones', async () => {
    const root1 = ca.bundle().x509Authorities[0]!;
    const kid1 = ca.bundle().jwtAuthorities[0]!.keyId;
    at(12 * HOUR);
    expect(await ca.maybeRotate()).toEqual({ bundleChanged: true, x509CaActivated: false, jwtKeyActivated: false });
    const b = ca.bundle();
    expect(b.sequenceNumber).toBe(2);
    expect(b.x509Authorities).toHaveLength(2);
    expect(b.x509Authorities[0]).toEqual(root1);
    expect(b.jwtAuthorities.map((a) => a.keyId)[0]).toBe(kid1);
    expect(b.jwtAuthorities).toHaveLength(2);
    expect(violations(sign(), [root1])).toEqual([]);
    expect(decodeProtectedHeader(ca.signJwtSvid({ spiffeId: ID, audience: ['a'] }).token).kid).toBe(kid1);
    expect(ca.status().x509.map((a) => a.status)).toEqual(['active', 'prepared']);
    expect(ca.nextRotationAt()).toBe(t0 + 20 * HOUR);
  });

  it('activates the prepared CA at 5/6 of its lifetime; old SVIDs and tokens still verify with the bundle', async () => {
    const [root1] = ca.bundle().x509Authorities;
    const oldSvid = sign();
    const oldToken = ca.signJwtSvid({ spiffeId: ID, audience: ['a'], ttlMs: 24 * HOUR }).token;
    at(12 * HOUR);
    await ca.maybeRotate();
    const root2 = ca.bundle().x509Authorities[1]!;
    const kid2 = ca.bundle().jwtAuthorities[1]!.keyId;

    at(20 * HOUR);
    expect(await ca.maybeRotate()).toEqual({ bundleChanged: false, x509CaActivated: true, jwtKeyActivated: true });
    expect(ca.bundle().sequenceNumber).toBe(2);
    const newSvid = sign();
    expect(violations(newSvid, [root2])).toEqual([]);
    expect(violations(newSvid, [root1!])).toEqual(['chain does not verify to any of the 1 bundle root(s)']);
    expect(violations(newSvid, ca.bundle().x509Authorities)).toEqual([]);
    // oldSvid expired after its 1 h; check it at a time it was valid, against today's bundle.
    expect(checkX509SvidProfile(oldSvid.certChain, { expectedId: ID, bundleRootsDer: ca.bundle().x509Authorities, now: new Date(t0) })).toEqual([]);

    const newToken = ca.signJwtSvid({ spiffeId: ID, audience: ['a'] }).token;
    expect(decodeProtectedHeader(newToken).kid).toBe(kid2);
    const jwks = createLocalJWKSet(jwksOf(ca.bundle()));
    for (const token of [oldToken, newToken]) {
      await expect(jwtVerify(token, jwks, { audience: 'a', currentDate: new Date(clock.now()) })).resolves.toBeDefined();
    }
    expect(ca.status().x509.map((a) => a.status)).toEqual(['active']);
  });

  it('caps SVIDs signed late in a CA lifetime at that CA expiry, before the old root is pruned', async () => {
    at(19 * HOUR);
    await ca.maybeRotate();
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey, ttlMs: 10 * HOUR });
    expect(svid.expiresAt * 1000).toBe(t0 + 24 * HOUR);
  });

  it('prunes the old root and JWT key once they expire', async () => {
    const [root1] = ca.bundle().x509Authorities;
    const kid1 = ca.bundle().jwtAuthorities[0]!.keyId;
    at(12 * HOUR);
    await ca.maybeRotate();
    at(20 * HOUR);
    await ca.maybeRotate();
    expect(ca.nextRotationAt()).toBe(t0 + 24 * HOUR);
    at(24 * HOUR - 1);
    expect(await ca.maybeRotate()).toEqual(NONE);
    at(24 * HOUR);
    expect(await ca.maybeRotate()).toEqual({ bundleChanged: true, x509CaActivated: false, jwtKeyActivated: false });
    // The CA activated at 20 h was prepared at 12 h, so 24 h is also its half-life: its successor
    // is published in the same step that prunes the first root.
    const b = ca.bundle();
    expect(b.sequenceNumber).toBe(3);
    expect(b.x509Authorities).toHaveLength(2);
    expect(b.x509Authorities).not.toContainEqual(root1);
    expect(b.jwtAuthorities.map((a) => a.keyId)).not.toContain(kid1);
    expect(violations(sign(), b.x509Authorities)).toEqual([]);
  });

  it('after a long outage replaces the expired CA at once and signing works again', async () => {
    at(72 * HOUR);
    const err = await apiErrorOf(() => sign());
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(await ca.maybeRotate()).toEqual({ bundleChanged: true, x509CaActivated: true, jwtKeyActivated: true });
    expect(ca.bundle().x509Authorities).toHaveLength(1);
    expect(violations(sign(), ca.bundle().x509Authorities)).toEqual([]);
    expect(ca.signJwtSvid({ spiffeId: ID, audience: ['a'] }).expiresAt).toBe((t0 + 72 * HOUR) / 1000 + 300);
  });

  it('rotate() activates a successor immediately and keeps the old root', async () => {
    const [root1] = ca.bundle().x509Authorities;
    expect(await ca.rotate()).toEqual({ bundleChanged: true, x509CaActivated: true, jwtKeyActivated: true });
    const b = ca.bundle();
    expect(b.x509Authorities[0]).toEqual(root1);
    expect(b.x509Authorities).toHaveLength(2);
    expect(violations(sign(), [b.x509Authorities[1]!])).toEqual([]);
  });

  it('serializes concurrent rotation calls (one successor, not two)', async () => {
    at(12 * HOUR);
    const results = await Promise.all([ca.maybeRotate(), ca.maybeRotate(), ca.maybeRotate()]);
    expect(results.filter((r) => r.bundleChanged)).toHaveLength(1);
    expect(ca.bundle().x509Authorities).toHaveLength(2);
  });

  it('keeps each root valid until it is pruned (the bundle never holds an expired root)', async () => {
    for (let h = 0; h <= 72; h += 1) {
      at(h * HOUR);
      await ca.maybeRotate();
      for (const der of ca.bundle().x509Authorities) {
        expect(new Date(new X509Certificate(der).validTo).getTime()).toBeGreaterThan(clock.now());
      }
      expect(violations(sign(), ca.bundle().x509Authorities)).toEqual([]);
    }
    expect(ca.bundle().sequenceNumber).toBeGreaterThan(6);
  });
});
