/**
 * FetchX509Bundles and FetchJWTBundles responses built from a WorkloadState (SPIRE's
 * composeX509BundlesResponse / composeJWTBundlesResponse):
 * - maps are keyed `spiffe://<td>` and always hold the agent's own trust domain;
 * - federated trust domains appear only when the caller has an identity, and only those its
 *   entries federate with that the agent has a bundle for;
 * - JWT values are JWKS bytes, `{"keys":[]}` when a trust domain has no JWT keys, never empty.
 * Keys are inserted in sorted order so equal content always serializes to equal bytes (which
 * is how the streams detect "unchanged").
 */
import { trustDomainId } from '../../common/spiffe-id.ts';
import { WorkloadApiService } from '../../common/proto.ts';
import type { JWTBundlesResponse } from '../../gen/JWTBundlesResponse.ts';
import type { X509BundlesResponse } from '../../gen/X509BundlesResponse.ts';
import { encodeResponse, serializerOf, type EncodedMessage } from './encode.ts';
import type { BundleSnapshot, WorkloadState, X509Identity } from '../manager/workload-state.ts';

/** The JWKS of a trust domain without JWT keys. */
export const EMPTY_JWKS: Buffer = Buffer.from('{"keys":[]}');

/** Accepts `example.org` or `spiffe://example.org` (entries carry the latter on the wire). */
function trustDomainName(value: string): string {
  return value.startsWith('spiffe://') ? value.slice('spiffe://'.length) : value;
}

/**
 * Trust domain names the identities federate with, sorted and de-duplicated, excluding the
 * agent's own. SPIRE derives these from every matching identity (before hint filtering).
 */
export function federatedTrustDomains(identities: readonly X509Identity[], own: string): string[] {
  const names = new Set<string>();
  for (const identity of identities) {
    for (const td of identity.federatesWith) names.add(trustDomainName(td));
  }
  names.delete(own);
  return [...names].sort();
}

/** Whether the agent knows any bundle (X.509 or JWT) for a trust domain. */
function hasBundle(bundles: BundleSnapshot, td: string): boolean {
  return bundles.x509.has(td) || bundles.jwks.has(td);
}

/** JWKS bytes of a trust domain, never empty. */
export function jwksOf(bundles: BundleSnapshot, td: string): Buffer {
  const jwks = bundles.jwks.get(td);
  return jwks === undefined || jwks.length === 0 ? EMPTY_JWKS : jwks;
}

/**
 * Federated trust domains the state's caller gets bundles for: those its entries federate with
 * that the agent has a bundle for (none without an identity), sorted by name.
 */
export function servedFederatedDomains(state: WorkloadState): string[] {
  if (state.identities.length === 0) return [];
  return federatedTrustDomains(state.identities, state.bundles.trustDomain).filter((td) => hasBundle(state.bundles, td));
}

/** How many bundles (trust domains) the bundle responses of a state carry. */
export function bundleCount(state: WorkloadState): number {
  return 1 + servedFederatedDomains(state).length;
}

/** Builds the X509BundlesResponse for a state. */
export function x509BundlesResponse(state: WorkloadState): X509BundlesResponse {
  const { bundles } = state;
  const out: Record<string, Buffer> = {};
  for (const td of [bundles.trustDomain, ...servedFederatedDomains(state)]) {
    out[trustDomainId(td)] = bundles.x509.get(td) ?? Buffer.alloc(0);
  }
  return { bundles: out };
}

/** Builds the JWTBundlesResponse for a state. */
export function jwtBundlesResponse(state: WorkloadState): JWTBundlesResponse {
  const { bundles } = state;
  const out: Record<string, Buffer> = {};
  for (const td of [bundles.trustDomain, ...servedFederatedDomains(state)]) out[trustDomainId(td)] = jwksOf(bundles, td);
  return { bundles: out };
}

const serializeX509Bundles = serializerOf(WorkloadApiService.FetchX509Bundles);
const serializeJwtBundles = serializerOf(WorkloadApiService.FetchJWTBundles);

// Workloads with equal selectors share one WorkloadState object: encode once per state.
const x509Cache = new WeakMap<WorkloadState, EncodedMessage>();
const jwtCache = new WeakMap<WorkloadState, EncodedMessage>();

/** The serialized X509BundlesResponse of a state (cached per state object). */
export function encodedX509Bundles(state: WorkloadState): EncodedMessage {
  let bytes = x509Cache.get(state);
  if (bytes === undefined) {
    bytes = encodeResponse(serializeX509Bundles, x509BundlesResponse(state));
    x509Cache.set(state, bytes);
  }
  return bytes;
}

/** The serialized JWTBundlesResponse of a state (cached per state object). */
export function encodedJwtBundles(state: WorkloadState): EncodedMessage {
  let bytes = jwtCache.get(state);
  if (bytes === undefined) {
    bytes = encodeResponse(serializeJwtBundles, jwtBundlesResponse(state));
    jwtCache.set(state, bytes);
  }
  return bytes;
}
