/**
 * The SPIFFE bundle format (SPIFFE_Trust_Domain_and_Bundle.md): a JWK Set whose keys carry
 * `use: "x509-svid"` (with `x5c`) or `use: "jwt-svid"` (with `kid`), plus
 * `spiffe_sequence` and `spiffe_refresh_hint`. Used by `bundle show|set -format spiffe`.
 */
import { createPublicKey, X509Certificate, type JsonWebKey } from 'node:crypto';
import type { Parsed } from './spiffe-id.ts';

/** Trust material of one trust domain. */
export interface BundleContent {
  x509Authorities: Buffer[];
  jwtAuthorities: { keyId: string; publicKey: Buffer; expiresAt: number }[];
  refreshHint: number;
  sequenceNumber: number;
}

/** Serializes a bundle as SPIFFE bundle JSON. */
export function toSpiffeBundleJson(bundle: BundleContent): string {
  const keys: Record<string, unknown>[] = [];
  for (const der of bundle.x509Authorities) {
    keys.push(inGoJoseOrder('x509-svid', new X509Certificate(der).publicKey.export({ format: 'jwk' }), { x5c: [der.toString('base64')] }));
  }
  for (const key of bundle.jwtAuthorities) {
    keys.push(inGoJoseOrder('jwt-svid', createPublicKey({ key: key.publicKey, format: 'der', type: 'spki' }).export({ format: 'jwk' }), { kid: key.keyId }));
  }
  const doc: Record<string, unknown> = { keys };
  if (bundle.sequenceNumber > 0) doc['spiffe_sequence'] = bundle.sequenceNumber;
  if (bundle.refreshHint > 0) doc['spiffe_refresh_hint'] = bundle.refreshHint;
  return `${JSON.stringify(doc, null, 4)}\n`;
}

/** A public JWK with its members in go-jose's order (use, kty, kid, crv, x, y, n, e, x5c), as spire-server prints it. */
function inGoJoseOrder(use: string, jwk: JsonWebKey, extra: { kid?: string; x5c?: string[] }): Record<string, unknown> {
  const out: Record<string, unknown> = { use, kty: jwk.kty };
  if (extra.kid !== undefined && extra.kid !== '') out['kid'] = extra.kid;
  for (const member of ['crv', 'x', 'y', 'n', 'e'] as const) if (jwk[member] !== undefined) out[member] = jwk[member];
  if (extra.x5c !== undefined) out['x5c'] = extra.x5c;
  return out;
}

/** Parses SPIFFE bundle JSON; errors name the offending key. */
export function fromSpiffeBundleJson(text: string): Parsed<BundleContent> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `bundle is not JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  const keys = (doc as { keys?: unknown }).keys;
  if (typeof doc !== 'object' || doc === null || !Array.isArray(keys)) return { ok: false, error: 'bundle has no "keys" array' };
  const out: BundleContent = { x509Authorities: [], jwtAuthorities: [], refreshHint: 0, sequenceNumber: 0 };
  const seq = (doc as Record<string, unknown>)['spiffe_sequence'];
  const hint = (doc as Record<string, unknown>)['spiffe_refresh_hint'];
  if (typeof seq === 'number') out.sequenceNumber = seq;
  if (typeof hint === 'number') out.refreshHint = hint;
  for (const [i, key] of keys.entries()) {
    const k = key as Record<string, unknown>;
    if (k['use'] === 'x509-svid') {
      const x5c = k['x5c'];
      if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== 'string') {
        return { ok: false, error: `keys[${i}]: an x509-svid key must have exactly one x5c certificate` };
      }
      out.x509Authorities.push(Buffer.from(x5c[0], 'base64'));
    } else if (k['use'] === 'jwt-svid') {
      const kid = k['kid'];
      if (typeof kid !== 'string' || kid === '') return { ok: false, error: `keys[${i}]: a jwt-svid key must have a kid` };
      try {
        const { use: _use, kid: _kid, ...jwk } = k;
        const spki = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }).export({ format: 'der', type: 'spki' });
        out.jwtAuthorities.push({ keyId: kid, publicKey: spki, expiresAt: 0 });
      } catch (err) {
        return { ok: false, error: `keys[${i}]: ${err instanceof Error ? err.message : String(err)}` };
      }
    } else {
      return { ok: false, error: `keys[${i}]: unknown "use" ${JSON.stringify(k['use'])} (expected "x509-svid" or "jwt-svid")` };
    }
  }
  return { ok: true, value: out };
}
