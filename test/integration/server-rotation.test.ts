/**
 * CA and server-SVID rotation in the running server process, with short TTLs: the next CA is
 * published in the bundle before it signs, the server's TLS SVID is re-issued at half-life,
 * and a client holding the current bundle keeps connecting throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type PeerCertificate } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { startServerProcess, readBundlePem, type ServerHandle } from '../support/server-process.ts';
import { decodePemCertificates } from '../../src/common/pem.ts';
import { eventually } from '../support/eventually.ts';

let server: ServerHandle;

/** The server's TLS leaf, verified against `ca` and checked for the server SPIFFE ID. */
function serverCertificate(ca: string): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: server.port, ca, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      if (cert.subjectaltname !== 'URI:spiffe://example.org/spire/server') reject(new Error(`unexpected SAN ${cert.subjectaltname}`));
      else resolve(cert);
    });
    socket.on('error', reject);
  });
}

beforeAll(async () => {
  server = await startServerProcess({ serverBlock: '  ca_ttl = "30s"\n  default_x509_svid_ttl = "8s"' });
});

afterAll(async () => {
  await server?.cleanup();
});

describe('rotation in the running server', () => {
  it('re-issues its TLS SVID at half-life and publishes then activates the next CA', async () => {
    const firstBundle = await readBundlePem(server);
    expect(decodePemCertificates(firstBundle)).toHaveLength(1);
    const first = await serverCertificate(firstBundle);

    // The server SVID (8 s + 10 s backdate) is re-issued within ~10 s.
    const second = await eventually(async () => {
      const cert = await serverCertificate(await readBundlePem(server));
      if (cert.serialNumber === first.serialNumber) throw new Error('not rotated yet');
      return cert;
    }, 20_000, 500);
    expect(second.serialNumber).not.toBe(first.serialNumber);

    // The next CA is prepared at half of the CA's 30 s lifetime: two roots in the bundle.
    const twoRoots = await eventually(async () => {
      const pem = await readBundlePem(server);
      if (decodePemCertificates(pem).length < 2) throw new Error('not prepared yet');
      return pem;
    }, 30_000, 500);
    const [oldRoot, nextRoot] = decodePemCertificates(twoRoots).map((der) => new X509Certificate(der));
    expect(new X509Certificate(second.raw).verify((oldRoot as X509Certificate).publicKey)).toBe(true);
    // Once activated, the server's SVID chains to the new root, which clients already trust.
    const activated = await eventually(async () => {
      const cert = await serverCertificate(await readBundlePem(server));
      if (!new X509Certificate(cert.raw).verify((nextRoot as X509Certificate).publicKey)) throw new Error('old CA still signs');
      return cert;
    }, 30_000, 500);
    expect(activated.subjectaltname).toBe('URI:spiffe://example.org/spire/server');
  }, 70_000);
});
