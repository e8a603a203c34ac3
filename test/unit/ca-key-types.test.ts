import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { X509Certificate, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ManualClock } from '../../src/common/clock.ts';
import { Code } from '../../src/common/errors.ts';
import { validateJwtSvid } from '../../src/agent/workload-api/validate-jwt.ts';
import { openCertificateAuthority, readCertificate, type CaBundle, type KeyType } from '../../src/server/ca/index.ts';
import { TD, apiErrorOf, jwksOf, tempDir } from '../support/ca-fixtures.ts';

const ID = `spiffe://${TD}/ns/default/sa/api`;

function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails ?? {};
  return key.asymmetricKeyType === 'rsa' ? `rsa-${d.modulusLength}` : `ec-${d.namedCurve}`;
}

function caKeyOf(bundle: CaBundle): KeyObject {
  return createPublicKey({ key: readCertificate(bundle.x509Authorities[0]!).spkiDer, format: 'der', type: 'spki' });
}

function jwtKeysOf(bundle: CaBundle): Map<string, KeyObject> {
  return new Map(bundle.jwtAuthorities.map((a) => [a.keyId, createPublicKey({ key: a.publicKey, format: 'der', type: 'spki' })]));
}

describe('CA and JWT key types', () => {
  let clock: ManualClock;
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    const t = await tempDir();
    dir = t.dir;
    cleanup = t.cleanup;
    clock = new ManualClock();
  });
  afterEach(async () => cleanup());

  it.each([
    { keyType: 'ec-p256', caKey: 'ec-prime256v1', alg: 'ES256' },
    { keyType: 'ec-p384', caKey: 'ec-secp384r1', alg: 'ES384' },
    { keyType: 'rsa-2048', caKey: 'rsa-2048', alg: 'RS256' },
    { keyType: 'rsa-4096', caKey: 'rsa-4096', alg: 'RS256' },
  ] as const)('ca_key_type $keyType: CA key $caKey, JWT-SVIDs $alg verified with the bundle', async ({ keyType, caKey, alg }) => {
    const ca = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, caKeyType: keyType });
    const bundle = ca.bundle();
    expect(describeKey(caKeyOf(bundle))).toBe(caKey);

    const leafKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: leafKey });
    expect(new X509Certificate(svid.certChain[0]!).verify(caKeyOf(bundle))).toBe(true);

    const jwt = ca.signJwtSvid({ spiffeId: ID, audience: ['sts.amazonaws.com'] });
    const kid = bundle.jwtAuthorities[0]!.keyId;
    expect(decodeProtectedHeader(jwt.token)).toEqual({ alg, kid, typ: 'JWT' });
    expect(describeKey(jwtKeysOf(bundle).get(kid)!)).toBe(caKey);
    const { payload } = await jwtVerify(jwt.token, createLocalJWKSet(jwksOf(bundle)), {
      audience: 'sts.amazonaws.com',
      currentDate: new Date(clock.now()),
      algorithms: [alg],
    });
    expect(payload.sub).toBe(ID);
    // The agent's ValidateJWTSVID accepts it too.
    const validated = await validateJwtSvid({ token: jwt.token, audience: 'sts.amazonaws.com', keys: () => jwtKeysOf(bundle), nowMs: clock.now() });
    expect(validated.spiffeId.uri).toBe(ID);
  });

  it('jwt_key_type overrides ca_key_type for the JWT key only', async () => {
    const ca = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, caKeyType: 'ec-p384', jwtKeyType: 'rsa-2048' });
    expect(describeKey(caKeyOf(ca.bundle()))).toBe('ec-secp384r1');
    expect(decodeProtectedHeader(ca.signJwtSvid({ spiffeId: ID, audience: ['a'] }).token).alg).toBe('RS256');
  });

  it('keeps the stored keys when the key type changes, and uses the new type from the next rotation (as SPIRE)', async () => {
    const first = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock });
    const before = first.bundle();
    const reopened = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, caKeyType: 'rsa-2048' });
    expect(reopened.bundle()).toEqual(before);
    expect(decodeProtectedHeader(reopened.signJwtSvid({ spiffeId: ID, audience: ['a'] }).token).alg).toBe('ES256');

    await reopened.rotate();
    const after = reopened.bundle();
    expect(after.x509Authorities.map((der) => describeKey(createPublicKey({ key: readCertificate(der).spkiDer, format: 'der', type: 'spki' }))))
      .toEqual(['ec-prime256v1', 'rsa-2048']);
    expect([...jwtKeysOf(after).values()].map(describeKey)).toEqual(['ec-prime256v1', 'rsa-2048']);
    const token = reopened.signJwtSvid({ spiffeId: ID, audience: ['a'] }).token;
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', kid: after.jwtAuthorities[1]!.keyId, typ: 'JWT' });
    await jwtVerify(token, createLocalJWKSet(jwksOf(after)), { audience: 'a', currentDate: new Date(clock.now()) });
  });

  it('rejects an unknown key type', async () => {
    const err = await apiErrorOf(() => openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, caKeyType: 'ec-p521' as KeyType }));
    expect({ code: err.code, message: err.message }).toEqual({
      code: Code.INVALID_ARGUMENT,
      message: 'ca: caKeyType must be one of ec-p256, ec-p384, rsa-2048, rsa-4096, got "ec-p521"',
    });
  });
});

describe('jwt_issuer', () => {
  it('sets iss on every JWT-SVID; absent or empty means no iss', async () => {
    const t = await tempDir();
    try {
      const clock = new ManualClock();
      const now = clock.now() / 1000;
      const ca = await openCertificateAuthority({ dataDir: t.dir, trustDomain: TD, clock, jwtIssuer: 'https://oidc.example.org' });
      expect(decodeJwt(ca.signJwtSvid({ spiffeId: ID, audience: ['sts.amazonaws.com'] }).token)).toEqual({
        aud: ['sts.amazonaws.com'], exp: now + 300, iat: now, iss: 'https://oidc.example.org', sub: ID,
      });
      for (const jwtIssuer of [undefined, '']) {
        const plain = await openCertificateAuthority({ dataDir: t.dir, trustDomain: TD, clock, ...(jwtIssuer === undefined ? {} : { jwtIssuer }) });
        expect(decodeJwt(plain.signJwtSvid({ spiffeId: ID, audience: ['a'] }).token)).toEqual({ aud: ['a'], exp: now + 300, iat: now, sub: ID });
      }
    } finally {
      await t.cleanup();
    }
  });

  it('serializes the claims in go-jose order (aud, exp, iat, iss, sub)', async () => {
    const t = await tempDir();
    try {
      const ca = await openCertificateAuthority({ dataDir: t.dir, trustDomain: TD, clock: new ManualClock(), jwtIssuer: 'https://oidc.example.org' });
      const payload = ca.signJwtSvid({ spiffeId: ID, audience: ['a'] }).token.split('.')[1]!;
      expect(Object.keys(JSON.parse(Buffer.from(payload, 'base64url').toString()) as object)).toEqual(['aud', 'exp', 'iat', 'iss', 'sub']);
    } finally {
      await t.cleanup();
    }
  });
});
