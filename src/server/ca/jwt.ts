/**
 * JWT-SVID signing (ES256 with the CA's P-256 JWT key), without a JOSE library on the hot path.
 * Header: exactly `alg`, `kid`, `typ: "JWT"`. Claims: exactly `aud` (array), `exp`, `iat`,
 * `sub`, in that (sorted) order as SPIRE's go-jose serialization produces them.
 */
import { randomBytes, sign, type KeyObject } from 'node:crypto';

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

/** The protected header, base64url-encoded, for a kid (computed once per key). */
export function encodeJwtHeader(kid: string): string {
  return Buffer.from(JSON.stringify({ alg: 'ES256', kid, typ: 'JWT' })).toString('base64url');
}

/** JWT-SVID claims; times are in seconds. */
export interface JwtSvidClaims {
  readonly sub: string;
  readonly aud: readonly string[];
  readonly exp: number;
  readonly iat: number;
}

/** Signs claims with a P-256 private key; `headerB64` comes from {@link encodeJwtHeader}. */
export function signJwt(headerB64: string, claims: JwtSvidClaims, key: KeyObject): string {
  const payload = Buffer.from(JSON.stringify({ aud: claims.aud, exp: claims.exp, iat: claims.iat, sub: claims.sub })).toString('base64url');
  const signingInput = `${headerB64}.${payload}`;
  const signature = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
  return `${signingInput}.${signature.toString('base64url')}`;
}
