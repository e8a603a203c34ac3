/**
 * The Delegated Identity API's response messages, built from the cache manager's immutable
 * snapshots. Pure. Maps are keyed by trust domain ID (`spiffe://example.org`), as SPIRE's.
 */
import { splitConcatenated } from '../../common/der.ts';
import { parseSpiffeId } from '../../common/spiffe-id.ts';
import type { SPIFFEID } from '../../gen/spire/api/types/SPIFFEID.ts';
import type { JWTSVID } from '../../gen/spire/api/types/JWTSVID.ts';
import type { SubscribeToX509SVIDsResponse } from '../../gen/spire/api/agent/delegatedidentity/v1/SubscribeToX509SVIDsResponse.ts';
import type { BundleSnapshot, JwtIdentity, WorkloadState } from '../manager/workload-state.ts';

/** `spire.api.types.SPIFFEID` of a SPIFFE ID URI (entries' IDs are valid by construction). */
export function spiffeIdMessage(uri: string): SPIFFEID {
  const id = parseSpiffeId(uri);
  return id.ok ? { trust_domain: id.value.trustDomain, path: id.value.path } : { trust_domain: '', path: '' };
}

/**
 * The workload's X509-SVIDs with their keys, leaving out those of `withheld` entries (admin
 * and downstream entries: their SVIDs are for the server API, never for a delegate), and the
 * trust domains its entries federate with that the agent has a bundle for, sorted.
 */
export function x509SvidsResponse(state: WorkloadState, withheld: ReadonlySet<string>): SubscribeToX509SVIDsResponse {
  const federatesWith = new Set<string>();
  for (const identity of state.identities) {
    for (const td of identity.federatesWith) if (state.bundles.x509.has(td)) federatesWith.add(`spiffe://${td}`);
  }
  return {
    x509_svids: state.identities
      .filter((identity) => !withheld.has(identity.entryId))
      .map((identity) => ({
        x509_svid: {
          cert_chain: splitConcatenated(identity.certChain),
          id: spiffeIdMessage(identity.spiffeId),
          expires_at: identity.expiresAt,
          hint: identity.hint,
        },
        x509_svid_key: identity.privateKey,
      })),
    federates_with: [...federatesWith].sort(),
  };
}

/** Every trust domain's X.509 authorities (DER, concatenated), keyed by trust domain ID. */
export function x509BundlesMap(bundles: BundleSnapshot): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [td, der] of bundles.x509) out[`spiffe://${td}`] = der;
  return out;
}

/** Every trust domain's JWT authorities (JWKS JSON), keyed by trust domain ID. */
export function jwtBundlesMap(bundles: BundleSnapshot): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [td, jwks] of bundles.jwks) out[`spiffe://${td}`] = jwks;
  return out;
}

/** The `exp` and `iat` claims (Unix seconds) of a compact JWS; 0 for a claim that is absent or unreadable. */
export function tokenTimes(token: string): { expiresAt: number; issuedAt: number } {
  const payload = token.split('.')[1] ?? '';
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    const seconds = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? Math.trunc(v) : 0);
    return { expiresAt: seconds(claims['exp']), issuedAt: seconds(claims['iat']) };
  } catch {
    return { expiresAt: 0, issuedAt: 0 };
  }
}

/** `spire.api.types.JWTSVID` of a minted or cached JWT-SVID. */
export function jwtSvidMessage(identity: JwtIdentity): JWTSVID {
  const { expiresAt, issuedAt } = tokenTimes(identity.token);
  return { token: identity.token, id: spiffeIdMessage(identity.spiffeId), expires_at: expiresAt, issued_at: issuedAt, hint: identity.hint };
}
