/**
 * Authorities in memory ("slots", after SPIRE's CA manager): an X.509 CA or a JWT key with its
 * parsed key and everything signing needs, computed once when the slot is created or loaded.
 */
import { randomBytes, type KeyObject } from 'node:crypto';

import { ApiError, Code } from '../../common/errors.ts';
import { readCertificate } from '../../common/cert-reader.ts';
import { encodeJwtHeader, newKeyId } from './jwt.ts';
import { certSignerFor, generateKey, jwtAlgFor, spkiOf, subjectKeyId, type JwtSigningAlg, type KeyType } from './keys.ts';
import { jwtKeyFile, x509KeyFile, type StoredJwtKey, type StoredX509Ca } from './store.ts';
import type { LoadedUpstream } from './upstream-disk.ts';
import type { DistinguishedName } from './x509-name.ts';
import { signCaCertificate, type Issuer } from './x509-templates.ts';

/** SPIRE's clock-skew cushion subtracted from every notBefore. */
export const NOT_BEFORE_CUSHION_MS = 10_000;

/** An X.509 CA ready to sign. */
export interface X509CaSlot extends StoredX509Ca {
  readonly notBefore: number;
  readonly notAfter: number;
  readonly issuer: Issuer;
  /** Certificates that follow a leaf in its chain: empty for a self-signed root, else the intermediates. */
  readonly chainTail: readonly Buffer[];
}

/** A JWT key ready to sign. */
export interface JwtKeySlot extends StoredJwtKey {
  readonly key: KeyObject;
  /** The JWS algorithm of `key` (a restored key keeps its own type whatever the config says now). */
  readonly alg: JwtSigningAlg;
  readonly headerB64: string;
}

/** Restores a persisted X.509 CA; `where` names the state file for errors. */
export function restoreX509Ca(stored: StoredX509Ca, key: KeyObject, where: string): X509CaSlot {
  let info;
  try {
    info = readCertificate(stored.certDer);
  } catch (err) {
    throw new ApiError(Code.FAILED_PRECONDITION, `ca: ${where}: CA certificate does not parse: ${(err as Error).message}`);
  }
  if (!spkiOf(key).equals(info.spkiDer)) {
    throw new ApiError(Code.FAILED_PRECONDITION, `ca: ${where}: key file ${stored.keyFile} does not match the CA certificate`);
  }
  return {
    ...stored,
    notBefore: info.notBefore,
    notAfter: info.notAfter,
    issuer: {
      signer: certSignerFor(key),
      subjectDer: Buffer.from(info.subjectDer),
      subjectKeyId: Buffer.from(info.subjectKeyId ?? subjectKeyId(info.spkiDer)),
    },
    chainTail: stored.upstreamFingerprint === undefined ? [] : [stored.certDer, ...stored.chainDer],
  };
}

/** Restores a persisted JWT key; `where` names the state file for errors. */
export function restoreJwtKey(stored: StoredJwtKey, key: KeyObject, where: string): JwtKeySlot {
  if (!spkiOf(key).equals(stored.publicKeyDer)) {
    throw new ApiError(Code.FAILED_PRECONDITION, `ca: ${where}: key file ${stored.keyFile} does not match JWT key ${stored.kid}`);
  }
  let alg: JwtSigningAlg;
  try {
    alg = jwtAlgFor(key);
  } catch (err) {
    throw new ApiError(Code.FAILED_PRECONDITION, `ca: ${where}: key file ${stored.keyFile}: ${(err as Error).message}`);
  }
  return { ...stored, key, alg, headerB64: encodeJwtHeader(stored.kid, alg.alg) };
}

/** Parameters for minting a new X.509 CA. */
export interface NewX509CaParams {
  readonly trustDomain: string;
  readonly now: number;
  readonly ttlMs: number;
  readonly subject: DistinguishedName | undefined;
  /** Sign with this upstream (an intermediate); self-signed root when undefined. */
  readonly upstream: LoadedUpstream | undefined;
  /** The CA key's type (SPIRE's `ca_key_type`). */
  readonly keyType: KeyType;
}

/** Mints a new X.509 CA with a fresh key of `p.keyType`. The caller persists `key` before committing. */
export function newX509Ca(p: NewX509CaParams): { slot: X509CaSlot; key: KeyObject } {
  const privateKey = generateKey(p.keyType);
  const id = randomBytes(8).toString('hex');
  const notAfter = p.upstream ? Math.min(p.now + p.ttlMs, p.upstream.notAfter) : p.now + p.ttlMs;
  const cert = signCaCertificate(
    {
      trustDomainId: `spiffe://${p.trustDomain}`,
      spkiDer: spkiOf(privateKey),
      notBefore: p.now - NOT_BEFORE_CUSHION_MS,
      notAfter,
      subject: p.subject,
      // An upstream-signed intermediate only ever signs leaves.
      pathLen: p.upstream ? 0 : undefined,
    },
    p.upstream,
    certSignerFor(privateKey),
  );
  const stored: StoredX509Ca = {
    id,
    keyFile: x509KeyFile(id),
    issuedAt: p.now,
    certDer: cert.der,
    chainDer: p.upstream ? [...p.upstream.chainDer] : [],
    upstreamFingerprint: p.upstream?.fingerprint,
  };
  return { slot: restoreX509Ca(stored, privateKey, 'new CA'), key: privateKey };
}

/** Mints a new JWT key of `keyType` (SPIRE's `jwt_key_type`) valid for `ttlMs` from `now`. */
export function newJwtKey(now: number, ttlMs: number, keyType: KeyType): JwtKeySlot {
  const privateKey = generateKey(keyType);
  const alg = jwtAlgFor(privateKey);
  const kid = newKeyId();
  return {
    kid,
    keyFile: jwtKeyFile(kid),
    issuedAt: now,
    // JWT authority expiry is published in whole seconds; keep the key's own notAfter aligned.
    notAfter: Math.floor((now + ttlMs) / 1000) * 1000,
    publicKeyDer: spkiOf(privateKey),
    key: privateKey,
    alg,
    headerB64: encodeJwtHeader(kid, alg.alg),
  };
}
