import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ManualClock } from '../../src/common/clock.ts';
import { Code } from '../../src/common/errors.ts';
import { openCertificateAuthority, readCertificate } from '../../src/server/ca/index.ts';
import { checkX509SvidProfile } from '../support/svid-profile.ts';
import { HOUR, TD, apiErrorOf, keyPair, makeTestCa, tempDir, writeUpstream, type KeyType } from '../support/ca-fixtures.ts';

const ID = `spiffe://${TD}/w`;

describe('disk upstream authority', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let clock: ManualClock;
  let t0: number;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
    clock = new ManualClock();
    t0 = clock.now();
  });
  afterEach(async () => cleanup());

  const validity = (hours: number) => ({ notBefore: new Date(t0 - HOUR), notAfter: new Date(t0 + hours * HOUR) });

  it.each<KeyType>(['P-256', 'P-384', 'RSA-2048'])('with a %s upstream root the chain is leaf + intermediate and verifies to it', async (keyType) => {
    const root = await makeTestCa({ keyType, ...validity(24 * 30) });
    const upstream = await writeUpstream(dir, root);
    const ca = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, upstream });
    expect(ca.bundle().x509Authorities).toEqual([root.der]);
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey });
    expect(svid.certChain).toHaveLength(2);
    expect(checkX509SvidProfile(svid.certChain, { expectedId: ID, bundleRootsDer: [root.der], now: new Date(clock.now()) })).toEqual([]);

    const intermediate = readCertificate(svid.certChain[1]!);
    expect(intermediate.isCa).toBe(true);
    expect(intermediate.pathLen).toBe(0);
    expect(intermediate.uris).toEqual([`spiffe://${TD}`]);
    expect(intermediate.authorityKeyId?.toString('hex')).toBe(readCertificate(root.der).subjectKeyId?.toString('hex'));
    expect(intermediate.notAfter).toBe(t0 + 24 * HOUR);
    expect(new X509Certificate(svid.certChain[1]!).verify(root.pair.publicKey)).toBe(true);
  });

  it('caps the intermediate at the upstream certificate expiry, and SVIDs at the intermediate', async () => {
    const root = await makeTestCa(validity(2));
    const ca = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, upstream: await writeUpstream(dir, root) });
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey, ttlMs: 5 * HOUR });
    expect(readCertificate(svid.certChain[1]!).notAfter).toBe(t0 + 2 * HOUR);
    expect(svid.expiresAt * 1000).toBe(t0 + 2 * HOUR);
  });

  it('with an upstream intermediate and a bundle file, chains leaf + CA + upstream intermediate to the root', async () => {
    const root = await makeTestCa({ ...validity(24 * 30), name: 'CN=offline root' });
    const mid = await makeTestCa({ ...validity(24 * 30), name: 'CN=upstream intermediate', issuer: root });
    const upstream = await writeUpstream(dir, mid, { bundle: [root] });
    const ca = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, upstream });
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey });
    expect(svid.certChain).toHaveLength(3);
    expect(svid.certChain[2]).toEqual(mid.der);
    expect(ca.bundle().x509Authorities).toEqual([root.der]);
    expect(checkX509SvidProfile(svid.certChain, { expectedId: ID, bundleRootsDer: [root.der], now: new Date(clock.now()) })).toEqual([]);
  });

  it('switching a self-signed CA to an upstream one activates an upstream-signed CA at once and keeps the old root', async () => {
    const selfSigned = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock });
    const [oldRoot] = selfSigned.bundle().x509Authorities;
    const root = await makeTestCa(validity(24 * 30));
    const ca = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, upstream: await writeUpstream(dir, root) });
    expect(ca.bundle().x509Authorities).toEqual([oldRoot, root.der]);
    expect(ca.bundle().sequenceNumber).toBe(2);
    const svid = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey });
    expect(checkX509SvidProfile(svid.certChain, { expectedId: ID, bundleRootsDer: [root.der], now: new Date(clock.now()) })).toEqual([]);
    // Reopening with the same upstream changes nothing.
    const again = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, upstream: await writeUpstream(dir, root) });
    expect(again.bundle()).toEqual(ca.bundle());
  });

  it('rotates the intermediate with a new key, keeping the upstream root as the only new authority', async () => {
    const root = await makeTestCa(validity(24 * 30));
    const ca = await openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, upstream: await writeUpstream(dir, root) });
    const first = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey }).certChain[1]!;
    clock.set(t0 + 12 * HOUR);
    // Only the next JWT key is published: the prepared intermediate adds no X.509 authority.
    expect(await ca.maybeRotate()).toEqual({ bundleChanged: true, x509CaActivated: false, jwtKeyActivated: false });
    expect(ca.bundle().x509Authorities).toEqual([root.der]);
    clock.set(t0 + 20 * HOUR);
    expect((await ca.maybeRotate()).x509CaActivated).toBe(true);
    const second = ca.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey }).certChain[1]!;
    expect(readCertificate(second).spkiDer.equals(readCertificate(first).spkiDer)).toBe(false);
    expect(ca.bundle().x509Authorities).toEqual([root.der]);
  });

  it.each([
    {
      name: 'a certificate that is not self-signed, without a bundle file',
      setup: async (d: string) => {
        const root = await makeTestCa(validityAbs(24));
        return writeUpstream(d, await makeTestCa({ ...validityAbs(24), name: 'CN=mid', issuer: root }));
      },
      message: (p: { certPath: string }) => `ca: upstream certificate ${p.certPath} is not self-signed; set the upstream bundle path to its root certificate(s)`,
    },
    {
      name: 'a key that does not match the certificate',
      setup: async (d: string) => {
        const p = await writeUpstream(d, await makeTestCa(validityAbs(24)));
        await writeFile(p.keyPath, keyPair('P-256').privateKey.export({ type: 'pkcs8', format: 'pem' }));
        return p;
      },
      message: (p: { certPath: string; keyPath: string }) => `ca: upstream key ${p.keyPath} (EC P-256) does not match certificate ${p.certPath}`,
    },
    {
      name: 'a certificate that is not a CA',
      setup: async (d: string) => writeUpstream(d, await makeTestCa({ ...validityAbs(24), isCa: false })),
      message: (p: { certPath: string }) => `ca: upstream certificate ${p.certPath} is not a CA (basicConstraints CA=true missing)`,
    },
    {
      name: 'a CA limited to pathLen 0',
      setup: async (d: string) => writeUpstream(d, await makeTestCa({ ...validityAbs(24), pathLength: 0 })),
      message: (p: { certPath: string }) => `ca: upstream certificate ${p.certPath} has pathLenConstraint 0 and cannot sign an intermediate CA`,
    },
    {
      name: 'an unreadable key file',
      setup: async (d: string) => {
        const p = await writeUpstream(d, await makeTestCa(validityAbs(24)));
        await writeFile(p.keyPath, 'garbage');
        return p;
      },
      message: (p: { keyPath: string }) => `ca: upstream key file ${p.keyPath}: cannot parse a PEM private key`,
    },
  ])('refuses $name', async ({ setup, message }) => {
    const upstream = await setup(dir);
    const err = await apiErrorOf(() => openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, upstream }));
    expect({ code: err.code, message: err.message }).toEqual({ code: Code.FAILED_PRECONDITION, message: message(upstream) });
  });

  it('refuses a missing upstream file, naming it', async () => {
    const upstream = { certPath: join(dir, 'nope.crt'), keyPath: join(dir, 'nope.key') };
    const err = await apiErrorOf(() => openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, upstream }));
    expect(err.message).toBe(`ca: upstream certificate file: "${upstream.certPath}" does not exist`);
  });
});

/** Validity around the ManualClock's default start, for table rows built before the clock exists. */
function validityAbs(hours: number): { notBefore: Date; notAfter: Date } {
  const t0 = new ManualClock().now();
  return { notBefore: new Date(t0 - HOUR), notAfter: new Date(t0 + hours * HOUR) };
}
