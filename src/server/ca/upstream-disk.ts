/**
 * The "disk" upstream authority (SPIRE's `UpstreamAuthority "disk"`): a CA certificate and key in
 * PEM files. The server's CA is then an intermediate signed by that key, and the bundle's X.509
 * authorities are the upstream roots. Files are re-read at every CA preparation, so an operator
 * may replace them in place.
 */
import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';

import { ApiError, Code } from '../../common/errors.ts';
import { toPathError } from '../../common/path-errors.ts';
import { readCertificate, type CertificateInfo } from '../../common/cert-reader.ts';
import { certSignerFor, describeKey, spkiOf, subjectKeyId, type CertSigner } from './keys.ts';
import { decodePem, decodePemCertificates } from '../../common/pem.ts';
import { KeyUsage } from './x509-extensions.ts';
import type { Issuer } from './x509-templates.ts';

/** Where the upstream CA lives on disk. */
export interface DiskUpstreamConfig {
  /** PEM certificate of the upstream CA, optionally followed by its own intermediates. */
  certPath: string;
  /** PEM private key of that certificate (PKCS#8, SEC1 or PKCS#1; EC P-256/P-384 or RSA). */
  keyPath: string;
  /** PEM root certificate(s); required unless the upstream certificate is self-signed. */
  bundlePath?: string;
}

/** A loaded, checked upstream authority. */
export interface LoadedUpstream extends Issuer {
  /** SHA-256 of the upstream certificate DER, hex: identifies which upstream signed a CA. */
  readonly fingerprint: string;
  /** Certificates to append after the server's CA in SVID chains (upstream intermediates, no roots). */
  readonly chainDer: readonly Buffer[];
  /** The trust anchors to publish in the bundle. */
  readonly rootsDer: readonly Buffer[];
  /** The earliest notAfter (ms) along the upstream chain including its root: the CA's cap. */
  readonly notAfter: number;
}

function fail(message: string): ApiError {
  return new ApiError(Code.FAILED_PRECONDITION, `ca: ${message}`);
}

/** Reads one upstream file; a failure is a PathError, which the server reports under the file's config field. */
async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw await toPathError(err, path, 'read', `ca: upstream ${what}`);
  }
}

function parseCerts(text: string, path: string, what: string): CertificateInfo[] {
  try {
    return decodePemCertificates(text).map((der) => readCertificate(der));
  } catch (err) {
    throw fail(`upstream ${what} ${path}: ${(err as Error).message}`);
  }
}

function verifiedBy(child: CertificateInfo, parent: CertificateInfo): boolean {
  if (!child.issuerDer.equals(parent.subjectDer)) return false;
  try {
    return new X509Certificate(child.der).verify(new X509Certificate(parent.der).publicKey);
  } catch {
    return false;
  }
}

/** Loads and checks the upstream CA files. `now` (ms) is used to reject expired material. */
export async function loadDiskUpstream(cfg: DiskUpstreamConfig, now: number): Promise<LoadedUpstream> {
  const certs = parseCerts(await readText(cfg.certPath, 'certificate file'), cfg.certPath, 'certificate file');
  const keyText = await readText(cfg.keyPath, 'key file');
  let key: KeyObject;
  try {
    const blocks = decodePem(keyText);
    if (blocks.length === 0) throw new Error('no PEM block');
    key = createPrivateKey(keyText);
  } catch {
    // Never echo key material: only say that it failed.
    throw fail(`upstream key file ${cfg.keyPath}: cannot parse a PEM private key`);
  }
  let signer: CertSigner;
  try {
    signer = certSignerFor(key);
  } catch (err) {
    throw fail(`upstream key file ${cfg.keyPath}: ${(err as Error).message}`);
  }
  const upstream = certs[0]!;
  if (!spkiOf(key).equals(upstream.spkiDer)) {
    throw fail(`upstream key ${cfg.keyPath} (${describeKey(key)}) does not match certificate ${cfg.certPath}`);
  }
  if (upstream.isCa !== true) throw fail(`upstream certificate ${cfg.certPath} is not a CA (basicConstraints CA=true missing)`);
  if (upstream.keyUsage && !upstream.keyUsage.has(KeyUsage.keyCertSign)) {
    throw fail(`upstream certificate ${cfg.certPath} lacks the keyCertSign key usage`);
  }
  if (upstream.pathLen === 0) {
    throw fail(`upstream certificate ${cfg.certPath} has pathLenConstraint 0 and cannot sign an intermediate CA`);
  }

  let roots: CertificateInfo[];
  if (cfg.bundlePath !== undefined) {
    roots = parseCerts(await readText(cfg.bundlePath, 'bundle file'), cfg.bundlePath, 'bundle file');
  } else {
    roots = certs.filter((c) => verifiedBy(c, c));
    if (roots.length === 0) {
      throw fail(`upstream certificate ${cfg.certPath} is not self-signed; set the upstream bundle path to its root certificate(s)`);
    }
  }
  const isRoot = (c: CertificateInfo): boolean => roots.some((r) => r.der.equals(c.der));
  const chain = certs.filter((c) => !isRoot(c));

  // The chain must link certificate by certificate and end at one of the roots.
  const path = chain.length > 0 ? chain : [upstream];
  for (let i = 0; i + 1 < path.length; i++) {
    if (!verifiedBy(path[i]!, path[i + 1]!)) {
      throw fail(`upstream certificate file ${cfg.certPath}: certificate ${i + 1} is not signed by certificate ${i + 2}`);
    }
  }
  const last = path[path.length - 1]!;
  const anchor = isRoot(last) ? last : roots.find((r) => verifiedBy(last, r));
  if (!anchor) throw fail(`upstream certificate ${cfg.certPath} does not chain to a root in ${cfg.bundlePath ?? cfg.certPath}`);

  let notAfter = anchor.notAfter;
  for (const c of path) notAfter = Math.min(notAfter, c.notAfter);
  if (notAfter <= now) {
    throw fail(`upstream certificate chain in ${cfg.certPath} expired at ${new Date(notAfter).toISOString()}`);
  }
  return {
    signer,
    subjectDer: Buffer.from(upstream.subjectDer),
    subjectKeyId: Buffer.from(upstream.subjectKeyId ?? subjectKeyId(upstream.spkiDer)),
    fingerprint: createHash('sha256').update(upstream.der).digest('hex'),
    chainDer: chain.map((c) => Buffer.from(c.der)),
    rootsDer: roots.map((r) => Buffer.from(r.der)),
    notAfter,
  };
}
