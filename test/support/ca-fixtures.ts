/**
 * Shared fixtures of the CA unit tests: temporary data dirs, CSRs and upstream CAs built with
 * @peculiar/x509 (independently of the CA's own DER code).
 */
import 'reflect-metadata';

import * as x509 from '@peculiar/x509';
import { createPublicKey, generateKeyPairSync, webcrypto, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ApiError } from '../../src/common/errors.ts';
import type { CaBundle } from '../../src/server/ca/index.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const TD = 'example.org';
export const HOUR = 60 * 60 * 1000;

/** Key types the fixtures can make. */
export type KeyType = 'P-256' | 'P-384' | 'RSA-2048' | 'RSA-1024' | 'Ed25519';

/** A node key pair of the given type. */
export function keyPair(type: KeyType): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (type) {
    case 'P-256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'P-384':
      return generateKeyPairSync('ec', { namedCurve: 'P-384' });
    case 'RSA-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'RSA-1024':
      return generateKeyPairSync('rsa', { modulusLength: 1024 });
    case 'Ed25519':
      return generateKeyPairSync('ed25519');
  }
}

function webAlgorithms(pair: { publicKey: KeyObject }): { key: RsaHashedImportParams | EcKeyImportParams; sign: Algorithm | EcdsaParams } {
  if (pair.publicKey.asymmetricKeyType === 'rsa') {
    return { key: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } };
  }
  const curve = pair.publicKey.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'P-384' : 'P-256';
  return { key: { name: 'ECDSA', namedCurve: curve }, sign: { name: 'ECDSA', hash: curve === 'P-384' ? 'SHA-384' : 'SHA-256' } };
}

function cryptoPair(pair: { privateKey: KeyObject; publicKey: KeyObject }): CryptoKeyPair {
  const alg = webAlgorithms(pair).key;
  return {
    privateKey: pair.privateKey.toCryptoKey(alg, false, ['sign']) as unknown as CryptoKey,
    publicKey: pair.publicKey.toCryptoKey(alg, true, ['verify']) as unknown as CryptoKey,
  };
}

/** A DER PKCS#10 request signed by `pair`, with the given SANs. */
export async function makeCsr(
  pair: { privateKey: KeyObject; publicKey: KeyObject },
  sans: { uris?: string[]; dns?: string[] } = {},
): Promise<Buffer> {
  const names = [...(sans.uris ?? []).map((value) => ({ type: 'url' as const, value })), ...(sans.dns ?? []).map((value) => ({ type: 'dns' as const, value }))];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=workload',
    keys: cryptoPair(pair),
    signingAlgorithm: webAlgorithms(pair).sign,
    extensions: names.length ? [new x509.SubjectAlternativeNameExtension(names)] : [],
  });
  return Buffer.from(csr.rawData);
}

/** An upstream CA made with @peculiar/x509. */
export interface TestCa {
  pair: { privateKey: KeyObject; publicKey: KeyObject };
  cert: x509.X509Certificate;
  der: Buffer;
  pem: string;
  keyPem: string;
}

/** Makes a CA certificate: self-signed when `issuer` is absent. */
export async function makeTestCa(opts: {
  keyType?: KeyType;
  name?: string;
  notBefore: Date;
  notAfter: Date;
  issuer?: TestCa;
  pathLength?: number;
  isCa?: boolean;
}): Promise<TestCa> {
  const pair = keyPair(opts.keyType ?? 'P-256');
  const signerPair = opts.issuer?.pair ?? pair;
  const publicKey = new x509.PublicKey(pair.publicKey.export({ format: 'der', type: 'spki' }));
  const name = opts.name ?? 'C=US, O=Upstream, CN=upstream root';
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '0' + Math.floor(Math.random() * 1e9).toString(16),
    subject: name,
    issuer: opts.issuer ? opts.issuer.cert.subject : name,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    signingAlgorithm: webAlgorithms(signerPair).sign,
    publicKey,
    signingKey: cryptoPair(signerPair).privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(opts.isCa ?? true, opts.pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      ...(opts.issuer ? [await x509.AuthorityKeyIdentifierExtension.create(opts.issuer.cert.publicKey)] : []),
    ],
  });
  const der = Buffer.from(cert.rawData);
  return {
    pair,
    cert,
    der,
    pem: cert.toString('pem') + '\n',
    keyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** A certificate and its key, PEM. */
export interface PemPair {
  certPem: string;
  keyPem: string;
}

/** An EC P-256 leaf issued by `ca`: a serving certificate (`dns`/`ips` SANs) or a client one. */
export async function issueTestLeaf(
  ca: TestCa,
  opts: { cn: string; dns?: string[]; ips?: string[]; usage: 'server' | 'client'; notBefore?: Date; notAfter?: Date },
): Promise<PemPair> {
  const pair = keyPair('P-256');
  const names = [
    ...(opts.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '01' + Math.floor(Math.random() * 2 ** 48).toString(16),
    subject: `CN=${opts.cn}`,
    issuer: ca.cert.subject,
    notBefore: opts.notBefore ?? new Date(now - 86_400_000),
    notAfter: opts.notAfter ?? new Date(now + 30 * 86_400_000),
    signingAlgorithm: webAlgorithms(ca.pair).sign,
    publicKey: new x509.PublicKey(pair.publicKey.export({ format: 'der', type: 'spki' })),
    signingKey: cryptoPair(ca.pair).privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([opts.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** Writes an upstream CA's files into `dir`; `chain` certificates are appended to the cert file. */
export async function writeUpstream(
  dir: string,
  ca: TestCa,
  extra: { chain?: TestCa[]; bundle?: TestCa[] } = {},
): Promise<{ certPath: string; keyPath: string; bundlePath?: string }> {
  const certPath = join(dir, 'upstream.crt');
  const keyPath = join(dir, 'upstream.key');
  await writeFile(certPath, [ca, ...(extra.chain ?? [])].map((c) => c.pem).join(''));
  await writeFile(keyPath, ca.keyPem, { mode: 0o600 });
  if (!extra.bundle) return { certPath, keyPath };
  const bundlePath = join(dir, 'upstream-bundle.crt');
  await writeFile(bundlePath, extra.bundle.map((c) => c.pem).join(''));
  return { certPath, keyPath, bundlePath };
}

/** A temporary directory removed by the returned cleanup. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ca-test-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Runs `fn` and returns the ApiError it throws (fails the test when it does not throw one). */
export async function apiErrorOf(fn: () => unknown): Promise<ApiError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw new Error(`expected an ApiError, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected an ApiError, but nothing was thrown');
}

/**
 * The JWKS a client builds from the bundle's JWT authorities. (SPIFFE bundles mark keys
 * `use: "jwt-svid"`, which jose's key selection skips, so it is left out here.)
 */
export function jwksOf(bundle: CaBundle): { keys: JWK[] } {
  return {
    keys: bundle.jwtAuthorities.map((a) => ({
      ...(createPublicKey({ key: a.publicKey, format: 'der', type: 'spki' }).export({ format: 'jwk' }) as JWK),
      kid: a.keyId,
    })),
  };
}
