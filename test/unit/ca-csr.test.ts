import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock } from '../../src/common/clock.ts';
import { Code } from '../../src/common/errors.ts';
import { openCertificateAuthority, parseAndVerifyCsr, type CertificateAuthority } from '../../src/server/ca/index.ts';
import { checkX509SvidProfile } from '../support/svid-profile.ts';
import { TD, apiErrorOf, keyPair, makeCsr, tempDir } from '../support/ca-fixtures.ts';

const ID = `spiffe://${TD}/workload`;
const OTHER = `spiffe://${TD}/other`;

/** Flips a bit in the last byte: inside the signature BIT STRING of a DER CSR. */
function corruptSignature(der: Buffer): Buffer {
  const copy = Buffer.from(der);
  copy[copy.length - 1]! ^= 0x01;
  return copy;
}

describe('X509-SVID from a CSR', () => {
  const clock = new ManualClock();
  let ca: CertificateAuthority;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    const t = await tempDir();
    cleanup = t.cleanup;
    ca = await openCertificateAuthority({ dataDir: t.dir, trustDomain: TD, clock });
  });
  afterAll(async () => cleanup());

  it.each([
    { name: 'with the URI SAN of the ID', sans: { uris: [ID] } },
    { name: 'without any SAN', sans: {} },
    { name: 'with only DNS SANs (ignored, as SPIRE does)', sans: { dns: ['ignored.example.org'] } },
  ])('signs the CSR key $name', async ({ sans }) => {
    const pair = keyPair('P-256');
    const svid = ca.signX509SvidFromCsr({ csrDer: await makeCsr(pair, sans), spiffeId: ID, dnsNames: ['entry.example.org'] });
    const leaf = new X509Certificate(svid.certChain[0]!);
    expect(leaf.publicKey.equals(pair.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe(`URI:${ID}, DNS:entry.example.org`);
    expect(checkX509SvidProfile(svid.certChain, { expectedId: ID, bundleRootsDer: ca.bundle().x509Authorities, now: new Date(clock.now()) })).toEqual([]);
  });

  it('signs an RSA-2048 CSR', async () => {
    const pair = keyPair('RSA-2048');
    const svid = ca.signX509SvidFromCsr({ csrDer: await makeCsr(pair, { uris: [ID] }), spiffeId: ID });
    expect(new X509Certificate(svid.certChain[0]!).publicKey.equals(pair.publicKey)).toBe(true);
  });

  it.each([
    { name: 'an empty request', csr: async () => Buffer.alloc(0), message: 'missing CSR' },
    {
      name: 'garbage',
      csr: async () => Buffer.from('not a csr at all'),
      message: 'malformed CSR: CertificationRequest: expected tag 0x30, got 0x6e',
    },
    {
      name: 'a truncated request',
      csr: async () => (await makeCsr(keyPair('P-256'), { uris: [ID] })).subarray(0, 100),
      message: 'malformed CSR: element extends past its container',
    },
    {
      name: 'trailing bytes',
      csr: async () => Buffer.concat([await makeCsr(keyPair('P-256'), { uris: [ID] }), Buffer.of(0)]),
      message: 'malformed CSR: trailing data after the request',
    },
    {
      name: 'an EC CSR whose signature does not verify',
      csr: async () => corruptSignature(await makeCsr(keyPair('P-256'), { uris: [ID] })),
      message: 'invalid CSR signature: x509: ECDSA verification failure',
    },
    {
      name: 'an RSA CSR whose signature does not verify',
      csr: async () => corruptSignature(await makeCsr(keyPair('RSA-2048'), { uris: [ID] })),
      message: 'invalid CSR signature: crypto/rsa: verification error',
    },
    {
      name: 'a URI SAN for another ID',
      csr: async () => makeCsr(keyPair('P-256'), { uris: [OTHER] }),
      message: `CSR URI SAN "${OTHER}" does not match the expected SPIFFE ID "${ID}"`,
    },
    {
      name: 'two URI SANs',
      csr: async () => makeCsr(keyPair('P-256'), { uris: [ID, OTHER] }),
      message: `CSR has 2 URI SANs ("${ID}", "${OTHER}"); expected only "${ID}"`,
    },
    {
      name: 'a key too weak for an SVID',
      csr: async () => makeCsr(keyPair('RSA-1024'), { uris: [ID] }),
      message: 'unsupported public key: RSA key size 1024 is below 2048 bits',
    },
  ])('rejects $name with INVALID_ARGUMENT', async ({ csr, message }) => {
    const csrDer = await csr();
    const err = await apiErrorOf(() => ca.signX509SvidFromCsr({ csrDer, spiffeId: ID }));
    expect({ code: err.code, message: err.message }).toEqual({ code: Code.INVALID_ARGUMENT, message });
  });

  it('rejects a SPIFFE ID outside the trust domain even when the CSR matches it', async () => {
    const other = 'spiffe://elsewhere.org/w';
    const err = await apiErrorOf(async () => ca.signX509SvidFromCsr({ csrDer: await makeCsr(keyPair('P-256'), { uris: [other] }), spiffeId: other }));
    expect({ code: err.code, message: err.message }).toEqual({
      code: Code.INVALID_ARGUMENT,
      message: `invalid X509-SVID ID: "${other}" is not a member of trust domain "${TD}"`,
    });
  });

  it('parseAndVerifyCsr exposes the requested SANs and key', async () => {
    const pair = keyPair('P-384');
    const csr = parseAndVerifyCsr(await makeCsr(pair, { uris: [ID], dns: ['a.example.org', 'b'] }));
    expect(csr.uris).toEqual([ID]);
    expect(csr.dnsNames).toEqual(['a.example.org', 'b']);
    expect(csr.publicKey.equals(pair.publicKey)).toBe(true);
  });
});
