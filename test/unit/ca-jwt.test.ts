import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ManualClock } from '../../src/common/clock.ts';
import { Code } from '../../src/common/errors.ts';
import { openCertificateAuthority, type CertificateAuthority } from '../../src/server/ca/index.ts';
import { HOUR, TD, apiErrorOf, jwksOf, tempDir } from '../support/ca-fixtures.ts';

const ID = `spiffe://${TD}/ns/default/sa/api`;

describe('JWT-SVID signing', () => {
  let clock: ManualClock;
  let ca: CertificateAuthority;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    const t = await tempDir();
    cleanup = t.cleanup;
    clock = new ManualClock();
    ca = await openCertificateAuthority({ dataDir: t.dir, trustDomain: TD, clock });
  });
  afterEach(async () => cleanup());

  it('verifies with jose against a JWKS built from the bundle', async () => {
    const svid = ca.signJwtSvid({ spiffeId: ID, audience: ['spire-server', 'other'] });
    const { payload, protectedHeader } = await jwtVerify(svid.token, createLocalJWKSet(jwksOf(ca.bundle())), {
      audience: 'spire-server',
      currentDate: new Date(clock.now()),
      algorithms: ['ES256'],
    });
    expect(protectedHeader).toEqual({ alg: 'ES256', kid: ca.bundle().jwtAuthorities[0]!.keyId, typ: 'JWT' });
    expect(payload).toEqual({ sub: ID, aud: ['spire-server', 'other'], iat: clock.now() / 1000, exp: clock.now() / 1000 + 300 });
    expect(Object.keys(payload).sort()).toEqual(['aud', 'exp', 'iat', 'sub']);
    expect({ issuedAt: svid.issuedAt, expiresAt: svid.expiresAt }).toEqual({ issuedAt: clock.now() / 1000, expiresAt: clock.now() / 1000 + 300 });
  });

  it('keeps aud an array for a single audience and drops empty audiences', () => {
    const svid = ca.signJwtSvid({ spiffeId: ID, audience: ['', 'one'] });
    expect(decodeJwt(svid.token).aud).toEqual(['one']);
  });

  it('uses a random 32-character alphanumeric kid published in the bundle', () => {
    const { kid } = decodeProtectedHeader(ca.signJwtSvid({ spiffeId: ID, audience: ['a'] }).token);
    expect(kid).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(ca.bundle().jwtAuthorities.map((a) => a.keyId)).toEqual([kid]);
    expect(ca.bundle().jwtAuthorities[0]!.expiresAt).toBe((clock.now() + 24 * HOUR) / 1000);
  });

  it.each([
    { at: 0, ttl: 60_000, lifetime: 60 },
    { at: 0, ttl: 0, lifetime: 300 },
    { at: 24 * HOUR - 60_000, ttl: undefined, lifetime: 60 },
  ])('at +$at ms with ttl $ttl the token lives $lifetime s (capped at the key expiry)', ({ at, ttl, lifetime }) => {
    clock.advance(at);
    const svid = ca.signJwtSvid({ spiffeId: ID, audience: ['a'], ...(ttl !== undefined ? { ttlMs: ttl } : {}) });
    expect(svid.expiresAt - svid.issuedAt).toBe(lifetime);
    expect(svid.expiresAt).toBeLessThanOrEqual(ca.bundle().jwtAuthorities[0]!.expiresAt);
  });

  it.each([
    { audience: [], message: 'invalid JWT-SVID audience: cannot be empty' },
    { audience: [''], message: 'invalid JWT-SVID audience: cannot be empty' },
  ])('rejects audience $audience', async ({ audience, message }) => {
    const err = await apiErrorOf(() => ca.signJwtSvid({ spiffeId: ID, audience }));
    expect({ code: err.code, message: err.message }).toEqual({ code: Code.INVALID_ARGUMENT, message });
  });

  it('rejects an ID of another trust domain', async () => {
    const err = await apiErrorOf(() => ca.signJwtSvid({ spiffeId: 'spiffe://x.org/a', audience: ['a'] }));
    expect({ code: err.code, message: err.message }).toEqual({
      code: Code.INVALID_ARGUMENT,
      message: `invalid JWT-SVID ID: "spiffe://x.org/a" is not a member of trust domain "${TD}"`,
    });
  });
});
