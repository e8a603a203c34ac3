/**
 * JWT-SVID signing (ES256, ES384 or RS256 after the CA's JWT key), without a JOSE library on the
 * hot path. Header: exactly `alg`, `kid`, `typ: "JWT"`. Claims: exactly `aud` (array), `exp`,
 * `iat`, `iss` (only when a `jwt_issuer` is configured), `sub`, in that (sorted) order as
 * SPIRE's go-jose serialization produces them.
 */
import { randomBytes, sign, type KeyObject } from 'node:crypto';

import type { JwtSigningAlg } from './keys.ts';

const KID_ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/** A random 32-character alphanumeric key ID, the shape SPIRE uses for JWT authorities. */
export function newKeyId(): string {
  let out = '';
  while (out.length < 32) {
    for (const b of randomBytes(48)) {
      // 248 = 4 × 62: rejection keeps the distribution uniform.
      if (b < 248 && out.length < 32) out += KID_ALPHABET[b % 62];
    }
  }
  return out;
}

/** The protected header, base64url-encoded, for a kid and its key's `alg` (computed once per key). */
export function encodeJwtHeader(kid: string, alg: JwtSigningAlg['alg']): string {
  return Buffer.from(JSON.stringify({ alg, kid, typ: 'JWT' })).toString('base64url');
}

/** JWT-SVID claims; times are in seconds. */
export interface JwtSvidClaims {
  readonly sub: string;
  readonly aud: readonly string[];
  readonly exp: number;
  readonly iat: number;
  /** SPIRE's `jwt_issuer`; the claim is left out when undefined. */
  readonly iss?: string | undefined;
}

/**
 * Signs claims with a JWT private key; `headerB64` comes from {@link encodeJwtHeader} with the
 * same `alg`, which `jwtAlgFor` (keys.ts) derives from `key`.
 */
export function signJwt(headerB64: string, claims: JwtSvidClaims, key: KeyObject, alg: JwtSigningAlg): string {
  const body = claims.iss === undefined
    ? { aud: claims.aud, exp: claims.exp, iat: claims.iat, sub: claims.sub }
    : { aud: claims.aud, exp: claims.exp, iat: claims.iat, iss: claims.iss, sub: claims.sub };
  const payload = Buffer.from(JSON.stringify(body)).toString('base64url');
  const signingInput = `${headerB64}.${payload}`;
  // ECDSA signatures in JWS are r‖s (IEEE P1363), not DER; the option is ignored for RSA.
  const signature = sign(alg.hash, Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
  return `${signingInput}.${signature.toString('base64url')}`;
}
