/**
 * The FetchX509SVID response of a WorkloadState (SPIRE's composeX509SVIDResponse), and its
 * bytes, serialized once per state object: the identity source hands the same immutable
 * state to every workload with equal selectors, so a rotation pushed to N streams costs one
 * serialization, not N. No certificate parsing here; everything is already DER.
 */
import { ApiError, Code } from '../../common/errors.ts';
import { trustDomainId } from '../../common/spiffe-id.ts';
import { WorkloadApiService } from '../../common/proto.ts';
import type { X509SVIDResponse } from '../../gen/X509SVIDResponse.ts';
import { federatedTrustDomains } from './bundle-responses.ts';
import { encodeResponse, serializerOf, type EncodedMessage } from './encode.ts';
import { filterByHint } from './hint-filter.ts';
import type { WorkloadState } from '../manager/workload-state.ts';

/** The refusal of a caller no entry matches (SPIRE's words, which clients match on). */
export const NO_IDENTITY_ISSUED = 'no identity issued';

/** PermissionDenied with the text clients match on. */
export function noIdentityIssued(): ApiError {
  return new ApiError(Code.PERMISSION_DENIED, NO_IDENTITY_ISSUED);
}

/**
 * Builds the response: hint-filtered SVIDs ordered by entry ID, each with the agent's own
 * trust-domain roots, and the roots of every trust domain the workload's entries federate
 * with that the agent has a bundle for. Throws PermissionDenied when there is no identity.
 */
export function x509SvidResponse(state: WorkloadState): X509SVIDResponse {
  const identities = filterByHint(state.identities);
  if (identities.length === 0) throw noIdentityIssued();
  const { bundles } = state;
  const ownRoots = bundles.x509.get(bundles.trustDomain) ?? Buffer.alloc(0);
  const federated: Record<string, Buffer> = {};
  // As in SPIRE, federation comes from every matching entry, including hint-filtered ones.
  for (const td of federatedTrustDomains(state.identities, bundles.trustDomain)) {
    const roots = bundles.x509.get(td);
    if (roots !== undefined) federated[trustDomainId(td)] = roots;
  }
  return {
    svids: identities.map((identity) => ({
      spiffe_id: identity.spiffeId,
      x509_svid: identity.certChain,
      x509_svid_key: identity.privateKey,
      bundle: ownRoots,
      hint: identity.hint,
    })),
    federated_bundles: federated,
  };
}

/** The outcome of encoding a state: the bytes to send (and how many SVIDs), or the status that ends the stream. */
export type X509SvidOutcome =
  | { readonly ok: true; readonly bytes: EncodedMessage; readonly svids: number }
  | { readonly ok: false; readonly error: ApiError };

const serialize = serializerOf(WorkloadApiService.FetchX509SVID);
const cache = new WeakMap<WorkloadState, X509SvidOutcome>();

/** The encoded response (or its error) for a state, computed once per state object. */
export function encodedX509SvidResponse(state: WorkloadState): X509SvidOutcome {
  let outcome = cache.get(state);
  if (outcome === undefined) {
    try {
      const response = x509SvidResponse(state);
      outcome = { ok: true, bytes: encodeResponse(serialize, response), svids: response.svids?.length ?? 0 };
    } catch (err) {
      outcome = { ok: false, error: err instanceof ApiError ? err : new ApiError(Code.INTERNAL, String(err)) };
    }
    cache.set(state, outcome);
  }
  return outcome;
}
