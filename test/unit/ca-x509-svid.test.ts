import { X509Certificate, createPrivateKey } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ManualClock } from '../../src/common/clock.ts';
import { Code } from '../../src/common/errors.ts';
import { openCertificateAuthority, type CertificateAuthority } from '../../src/server/ca/index.ts';
import { checkX509SvidProfile } from '../support/svid-profile.ts';
import { HOUR, TD, apiErrorOf, keyPair, tempDir, type KeyType } from '../support/ca-fixtures.ts';

const ID = `spiffe://${TD}/ns/default/sa/web`;

describe('X509-SVID signing', () => {
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

  const now = (): Date => new Date(clock.now());

  it.each<KeyType>(['P-256', 'P-384', 'RSA-2048'])('an SVID for a %s key passes the profile and chains to the bundle', (type) => {
    const { publicKey } = keyPair(type);
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey });
    expect(svid.certChain).toHaveLength(1); // self-signed root: the chain excludes it
    expect(checkX509SvidProfile(svid.certChain, { expectedId: ID, bundleRootsDer: ca.bundle().x509Authorities, now: now() })).toEqual([]);
    const leaf = new X509Certificate(svid.certChain[0]!);
    expect(leaf.publicKey.equals(publicKey)).toBe(true);
  });

  it('uses the SPIRE subject, SPIRE key usages, a 10 s backdate and the 1 h default TTL', () => {
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey });
    const leaf = new X509Certificate(svid.certChain[0]!);
    expect(leaf.subject).toBe('C=US\nO=SPIRE');
    expect(leaf.subjectAltName).toBe(`URI:${ID}`);
    expect(leaf.ca).toBe(false);
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(new Date(leaf.validFrom).getTime()).toBe(clock.now() - 10_000);
    expect(new Date(leaf.validTo).getTime()).toBe(clock.now() + HOUR);
    expect(svid.expiresAt).toBe((clock.now() + HOUR) / 1000);
  });

  it('reports the serial number in decimal, random per certificate', () => {
    const pub = keyPair('P-256').publicKey;
    const a = ca.signX509Svid({ spiffeId: ID, publicKey: pub });
    const b = ca.signX509Svid({ spiffeId: ID, publicKey: pub });
    expect(a.serialNumber).toMatch(/^[1-9][0-9]*$/);
    expect(a.serialNumber).toBe(BigInt(`0x${new X509Certificate(a.certChain[0]!).serialNumber}`).toString());
    expect(a.serialNumber).not.toBe(b.serialNumber);
  });

  it('adds DNS SANs after the URI SAN and makes the first DNS name the CN', () => {
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey, dnsNames: ['web.example.org', 'web'] });
    const leaf = new X509Certificate(svid.certChain[0]!);
    expect(leaf.subject).toBe('C=US\nO=SPIRE\nCN=web.example.org');
    expect(leaf.subjectAltName).toBe(`URI:${ID}, DNS:web.example.org, DNS:web`);
    expect(checkX509SvidProfile(svid.certChain, { expectedId: ID, bundleRootsDer: ca.bundle().x509Authorities, now: now() })).toEqual([]);
  });

  it('uses a caller subject instead of the default', () => {
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey, subject: { organization: 'Acme', commonName: 'x' } });
    expect(new X509Certificate(svid.certChain[0]!).subject).toBe('O=Acme\nCN=x');
  });

  // CA TTL is 24 h; the clock is moved without rotating, so the same CA still signs.
  it.each([
    { at: 0, ttl: undefined, lifetime: HOUR },
    { at: 0, ttl: 2 * HOUR, lifetime: 2 * HOUR },
    { at: 0, ttl: -5, lifetime: HOUR },
    { at: 0, ttl: 48 * HOUR, lifetime: 24 * HOUR },
    { at: 23 * HOUR, ttl: 2 * HOUR, lifetime: HOUR },
  ])('an SVID requested at +$at ms with ttl $ttl never outlives its CA', ({ at, ttl, lifetime }) => {
    const start = clock.now();
    clock.advance(at);
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey, ...(ttl !== undefined ? { ttlMs: ttl } : {}) });
    expect(svid.expiresAt * 1000).toBe(clock.now() + lifetime);
    const root = new X509Certificate(ca.bundle().x509Authorities[0]!);
    expect(svid.expiresAt * 1000).toBeLessThanOrEqual(new Date(root.validTo).getTime());
    expect(new Date(root.validTo).getTime()).toBe(start + 24 * HOUR);
  });

  it.each([
    { id: `spiffe://other.org/ns/a`, message: `invalid X509-SVID ID: "spiffe://other.org/ns/a" is not a member of trust domain "${TD}"` },
    { id: `spiffe://${TD}`, message: `invalid X509-SVID ID: "spiffe://${TD}" is not a member of trust domain "${TD}"; path is empty` },
    { id: `http://${TD}/a`, message: `invalid X509-SVID ID: SPIFFE ID "http://${TD}/a" must use the spiffe scheme` },
    { id: '', message: 'invalid X509-SVID ID: SPIFFE ID is empty' },
  ])('rejects the ID $id', async ({ id, message }) => {
    const err = await apiErrorOf(() => ca.signX509Svid({ spiffeId: id, publicKey: keyPair('P-256').publicKey }));
    expect({ code: err.code, message: err.message }).toEqual({ code: Code.INVALID_ARGUMENT, message });
  });

  it.each<{ type: KeyType; message: string }>([
    { type: 'RSA-1024', message: 'unsupported public key: RSA key size 1024 is below 2048 bits' },
    { type: 'Ed25519', message: 'unsupported public key: ED25519 (only EC and RSA keys are accepted)' },
  ])('rejects a $type public key', async ({ type, message }) => {
    const err = await apiErrorOf(() => ca.signX509Svid({ spiffeId: ID, publicKey: keyPair(type).publicKey }));
    expect({ code: err.code, message: err.message }).toEqual({ code: Code.INVALID_ARGUMENT, message });
  });

  it('rejects a DNS name that is not printable ASCII', async () => {
    const err = await apiErrorOf(() => ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey, dnsNames: ['a b'] }));
    expect({ code: err.code, message: err.message }).toEqual({ code: Code.INVALID_ARGUMENT, message: 'invalid DNS name "a b"' });
  });

  it('refuses to sign with an expired CA that was never rotated', async () => {
    clock.advance(24 * HOUR);
    const err = await apiErrorOf(() => ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey }));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toBe(`ca: the X.509 CA expired at ${new Date(clock.now()).toISOString()} and has not been rotated`);
  });

  it('issues the server identity as an SVID for spiffe://<td>/spire/server with a matching fresh key', () => {
    const a = ca.issueServerIdentity();
    const b = ca.issueServerIdentity();
    expect(a.spiffeId).toBe(`spiffe://${TD}/spire/server`);
    expect(a.keyPem).not.toBe(b.keyPem);
    expect(a.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const leaf = new X509Certificate(a.certChainPem);
    expect(leaf.checkPrivateKey(createPrivateKey(a.keyPem))).toBe(true);
    expect(leaf.raw.equals(a.certChainDer[0]!)).toBe(true);
    expect(a.expiresAt).toBe((clock.now() + HOUR) / 1000);
    expect(checkX509SvidProfile(a.certChainDer, { expectedId: a.spiffeId, bundleRootsDer: ca.bundle().x509Authorities, now: now() })).toEqual([]);
  });
});
