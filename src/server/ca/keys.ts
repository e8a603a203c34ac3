/**
 * Keys: generation, the signature algorithm a CA key signs with, public-key checks, and
 * subject key identifiers.
 */
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

import { NULL, Tag, children, expectTlv, oid, seq } from '../../common/der.ts';

/** How a CA key signs certificates: the digest and the AlgorithmIdentifier placed in the certificate. */
export interface CertSigner {
  readonly key: KeyObject;
  readonly hash: 'sha256' | 'sha384' | 'sha512';
  /** DER AlgorithmIdentifier for `signatureAlgorithm` and the TBS `signature` field. */
  readonly algorithmIdentifier: Buffer;
}

/** Signature algorithm OIDs. */
export const SigAlg = {
  ECDSA_SHA256: '1.2.840.10045.4.3.2',
  ECDSA_SHA384: '1.2.840.10045.4.3.3',
  ECDSA_SHA512: '1.2.840.10045.4.3.4',
  RSA_SHA256: '1.2.840.113549.1.1.11',
  RSA_SHA384: '1.2.840.113549.1.1.12',
  RSA_SHA512: '1.2.840.113549.1.1.13',
} as const;

const CURVE_NAMES: Readonly<Record<string, string>> = {
  prime256v1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
};

/** A short human description of a key, e.g. `EC P-256` or `RSA 2048` (never key material). */
export function describeKey(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'ec') return `EC ${CURVE_NAMES[details.namedCurve ?? ''] ?? details.namedCurve ?? 'unknown curve'}`;
  if (type === 'rsa') return `RSA ${details.modulusLength ?? '?'}`;
  return String(type ?? key.type).toUpperCase();
}

/**
 * The signer for a CA private key: ECDSA P-256 → ecdsa-with-SHA256, P-384 → ecdsa-with-SHA384,
 * P-521 → ecdsa-with-SHA512, RSA (PKCS#1 v1.5) → sha256WithRSAEncryption. Throws on other keys.
 */
export function certSignerFor(key: KeyObject): CertSigner {
  if (key.type !== 'private') throw new Error('a CA signer needs a private key');
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return { key, hash: 'sha256', algorithmIdentifier: seq(oid(SigAlg.ECDSA_SHA256)) };
    if (curve === 'secp384r1') return { key, hash: 'sha384', algorithmIdentifier: seq(oid(SigAlg.ECDSA_SHA384)) };
    if (curve === 'secp521r1') return { key, hash: 'sha512', algorithmIdentifier: seq(oid(SigAlg.ECDSA_SHA512)) };
  } else if (type === 'rsa') {
    return { key, hash: 'sha256', algorithmIdentifier: seq(oid(SigAlg.RSA_SHA256), NULL) };
  }
  throw new Error(`unsupported CA key type ${describeKey(key)} (use EC P-256/P-384 or RSA)`);
}

/** A fresh ECDSA P-256 key pair (the default CA, JWT and SVID key type). */
export function generateP256(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** The key types of SPIRE's `ca_key_type` and `jwt_key_type`, spelled as SPIRE spells them. */
export const KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-4096'] as const;

/** One of {@link KEY_TYPES}. */
export type KeyType = (typeof KEY_TYPES)[number];

/** Whether a string is one of SPIRE's key type names. */
export function isKeyType(v: string): v is KeyType {
  return (KEY_TYPES as readonly string[]).includes(v);
}

/** A fresh private key of a SPIRE key type (RSA keys take tens to hundreds of milliseconds). */
export function generateKey(type: KeyType): KeyObject {
  switch (type) {
    case 'ec-p256': return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'ec-p384': return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    case 'rsa-2048': return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    case 'rsa-4096': return generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey;
  }
}

/** How a JWT key signs: the JOSE `alg` and the Node digest for it. */
export interface JwtSigningAlg {
  readonly alg: 'ES256' | 'ES384' | 'RS256';
  readonly hash: 'sha256' | 'sha384';
}

/**
 * The JWS algorithm for a JWT signing key, as SPIRE picks it: EC P-256 → ES256, EC P-384 →
 * ES384, RSA → RS256 (PKCS#1 v1.5). Throws on other keys.
 */
export function jwtAlgFor(key: KeyObject): JwtSigningAlg {
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (type === 'ec' && curve === 'prime256v1') return { alg: 'ES256', hash: 'sha256' };
  if (type === 'ec' && curve === 'secp384r1') return { alg: 'ES384', hash: 'sha384' };
  if (type === 'rsa') return { alg: 'RS256', hash: 'sha256' };
  throw new Error(`unsupported JWT key type ${describeKey(key)} (use EC P-256/P-384 or RSA)`);
}

/**
 * Checks that a public key may be certified in an X509-SVID: EC P-256/P-384/P-521 or RSA of at
 * least 2048 bits (every SPIFFE client library accepts these; Java ones accept nothing else).
 * Returns the reason it may not, or `undefined`.
 */
export function svidPublicKeyProblem(key: KeyObject): string | undefined {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve ?? '';
    return curve in CURVE_NAMES ? undefined : `unsupported public key: EC curve ${curve || 'unknown'}`;
  }
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    return bits >= 2048 ? undefined : `unsupported public key: RSA key size ${bits} is below 2048 bits`;
  }
  return `unsupported public key: ${describeKey(key)} (only EC and RSA keys are accepted)`;
}

/** The subjectPublicKey BIT STRING content (without the unused-bits byte) of an SPKI. */
export function subjectPublicKeyBits(spkiDer: Buffer): Buffer {
  const top = expectTlv(spkiDer, 0, Tag.SEQUENCE, 'SubjectPublicKeyInfo');
  const parts = children(spkiDer, top);
  const bits = parts[1];
  if (parts.length !== 2 || !bits || bits.tag !== Tag.BIT_STRING || bits.end - bits.contentStart < 2) {
    throw new Error('malformed SubjectPublicKeyInfo');
  }
  return spkiDer.subarray(bits.contentStart + 1, bits.end);
}

/** The subject key identifier of RFC 5280 §4.2.1.2 method 1 (SHA-1 of the public key bits), as SPIRE computes it. */
export function subjectKeyId(spkiDer: Buffer): Buffer {
  return createHash('sha1').update(subjectPublicKeyBits(spkiDer)).digest();
}

/** The DER SubjectPublicKeyInfo of a public (or private) key. */
export function spkiOf(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ format: 'der', type: 'spki' });
}
