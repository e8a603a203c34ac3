import 'reflect-metadata';

import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';

import { checkX509SvidProfile, splitDerCertificates } from '../support/svid-profile.ts';
import { HOUR, TD, keyPair, makeTestCa, type TestCa } from '../support/ca-fixtures.ts';

const ID = `spiffe://${TD}/w`;
const T0 = Date.UTC(2026, 0, 1);
const NOW = new Date(T0);

const GOOD_USAGE = x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement;

/** A leaf signed by `issuer`, shaped by the overrides (defaults: a conforming SVID). */
async function leaf(
  issuer: TestCa,
  o: { uris?: string[]; ca?: boolean; usage?: number; usageCritical?: boolean; eku?: string[]; notAfter?: Date } = {},
): Promise<Buffer> {
  const pub = new x509.PublicKey(keyPair('P-256').publicKey.export({ format: 'der', type: 'spki' }));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01',
    subject: 'C=US, O=SPIRE',
    issuer: issuer.cert.subject,
    notBefore: new Date(T0 - HOUR),
    notAfter: o.notAfter ?? new Date(T0 + HOUR),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    publicKey: pub,
    signingKey: issuer.pair.privateKey.toCryptoKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']) as unknown as CryptoKey,
    extensions: [
      new x509.BasicConstraintsExtension(o.ca ?? false, undefined, true),
      new x509.KeyUsagesExtension(o.usage ?? GOOD_USAGE, o.usageCritical ?? true),
      new x509.ExtendedKeyUsageExtension((o.eku ?? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]) as x509.ExtendedKeyUsageType[]),
      new x509.SubjectAlternativeNameExtension((o.uris ?? [ID]).map((value) => ({ type: 'url' as const, value }))),
    ],
  });
  return Buffer.from(cert.rawData);
}

describe('checkX509SvidProfile (the test oracle)', async () => {
  const root = await makeTestCa({ notBefore: new Date(T0 - 2 * HOUR), notAfter: new Date(T0 + 24 * HOUR), name: 'CN=root' });
  const otherRoot = await makeTestCa({ notBefore: new Date(T0 - 2 * HOUR), notAfter: new Date(T0 + 24 * HOUR), name: 'CN=other' });
  const check = (chain: Buffer[] | Buffer, roots: TestCa[] = [root], now = NOW) =>
    checkX509SvidProfile(chain, { expectedId: ID, bundleRootsDer: roots.map((r) => r.der), now });

  it('accepts a conforming SVID, as an array or as concatenated DER', async () => {
    const der = await leaf(root);
    expect(check([der])).toEqual([]);
    expect(check(der)).toEqual([]);
  });

  it.each([
    { name: 'a CA certificate', o: { ca: true, usage: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign }, v: ['leaf: basicConstraints CA=true', 'leaf: keyUsage lacks digitalSignature', 'leaf: keyUsage has keyCertSign', 'leaf: keyUsage has cRLSign'] },
    { name: 'two URI SANs', o: { uris: [ID, `spiffe://${TD}/x`] }, v: ['leaf: has 2 URI SANs, expected exactly 1'] },
    { name: 'another ID', o: { uris: [`spiffe://${TD}/x`] }, v: [`leaf: URI SAN is "spiffe://${TD}/x", expected "${ID}"`] },
    { name: 'a root path', o: { uris: [`spiffe://${TD}`] }, v: [`leaf: URI SAN is "spiffe://${TD}", expected "${ID}"`, `leaf: URI SAN "spiffe://${TD}" has a root path (a leaf needs a workload path)`] },
    { name: 'a non-critical key usage', o: { usageCritical: false }, v: ['leaf: keyUsage is not critical'] },
    { name: 'serverAuth only', o: { eku: [x509.ExtendedKeyUsage.serverAuth] }, v: ['leaf: extKeyUsage lacks clientAuth'] },
  ])('reports $name', async ({ o, v }) => {
    expect(check([await leaf(root, o)])).toEqual(v);
  });

  it('reports expiry, an unknown root and garbage', async () => {
    const der = await leaf(root);
    const later = new Date(T0 + 2 * HOUR);
    expect(check([der], [root], later)).toEqual([`leaf: expired at ${later.toISOString()} (notAfter ${new Date(T0 + HOUR).toISOString()})`]);
    expect(check([der], [otherRoot])).toEqual(['chain does not verify to any of the 1 bundle root(s)']);
    expect(check([der], [])).toEqual(['no bundle roots to verify against']);
    expect(check(Buffer.from([0x30, 0x82, 0x10]))).toEqual(['chain is not concatenated DER: byte 0: truncated length']);
  });

  it('splits concatenated certificates by their DER lengths', async () => {
    const a = await leaf(root);
    const parts = splitDerCertificates(Buffer.concat([a, root.der]));
    expect(parts.map((p) => p.length)).toEqual([a.length, root.der.length]);
    expect(parts[1]).toEqual(root.der);
    expect(() => splitDerCertificates(Buffer.from([0x04, 0x00]))).toThrow('byte 0: expected a SEQUENCE (0x30), got 0x4');
  });
});
