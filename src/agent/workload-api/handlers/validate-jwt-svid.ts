/**
 * ValidateJWTSVID (unary): the caller is attested but needs no identity. Keys come from the
 * agent's own trust domain plus the trust domains the caller's entries federate with (as in
 * SPIRE, where the key store is built from the caller's workload update).
 */
import type { KeyObject } from 'node:crypto';
import { ApiError, Code } from '../../../common/errors.ts';
import type { Clock } from '../../../common/clock.ts';
import { WorkloadApiService } from '../../../common/proto.ts';
import type { Selector } from '../../../common/selector.ts';
import type { ValidateJWTSVIDRequest__Output } from '../../../gen/ValidateJWTSVIDRequest.ts';
import { federatedTrustDomains } from '../bundle-responses.ts';
import { responseClaims, toStruct } from '../claims-struct.ts';
import { encodeResponse, serializerOf } from '../encode.ts';
import type { WorkloadState } from '../../manager/workload-state.ts';
import type { IdentitySource } from '../identity-source.ts';
import type { UnarySpec } from '../rpc.ts';
import { requireValidateArguments, validateJwtSvid, type JwtKeyLookup } from '../validate-jwt.ts';

const serialize = serializerOf(WorkloadApiService.ValidateJWTSVID);

/** Options of {@link validateJwtSvidRpc}. */
export interface ValidateJwtSvidOptions {
  readonly source: IdentitySource;
  readonly clock: Clock;
  /** SPIRE's allowed_foreign_jwt_claims. */
  readonly allowedForeignJwtClaims: ReadonlySet<string>;
}

/** The caller's current state: the first notification of a one-shot subscription. */
export function currentState(source: IdentitySource, selectors: readonly Selector[], signal: AbortSignal): Promise<WorkloadState> {
  return new Promise((resolve, reject) => {
    let done = false;
    let unsubscribe: (() => void) | undefined;
    const finish = (): void => {
      done = true;
      signal.removeEventListener('abort', onAbort);
      unsubscribe?.();
    };
    const onAbort = (): void => {
      if (done) return;
      finish();
      reject(new ApiError(Code.CANCELLED, 'workload api: call cancelled'));
    };
    signal.addEventListener('abort', onAbort);
    try {
      unsubscribe = source.subscribe(selectors, (state) => {
        if (done) return;
        finish();
        resolve(state);
      });
    } catch (err) {
      finish();
      reject(err);
      return;
    }
    // The listener may have run inside subscribe(), before `unsubscribe` was assigned.
    if (done) unsubscribe();
  });
}

/** JWT keys the caller may validate against: its own trust domain and its federations. */
export function callerJwtKeys(state: WorkloadState): JwtKeyLookup {
  const { bundles } = state;
  const allowed = new Set([bundles.trustDomain, ...federatedTrustDomains(state.identities, bundles.trustDomain)]);
  return (td) => (allowed.has(td) ? bundles.jwtKeys.get(td) : undefined) as ReadonlyMap<string, KeyObject> | undefined;
}

/** The ValidateJWTSVID RPC. */
export function validateJwtSvidRpc(opts: ValidateJwtSvidOptions): UnarySpec<ValidateJWTSVIDRequest__Output> {
  return {
    validate: (request) => requireValidateArguments(request.audience, request.svid),
    async handle(request, caller, signal) {
      const state = await currentState(opts.source, caller.selectors, signal);
      const validated = await validateJwtSvid({
        token: request.svid,
        audience: request.audience,
        keys: callerJwtKeys(state),
        nowMs: opts.clock.now(),
      });
      const claims = responseClaims(validated.claims, validated.spiffeId.trustDomain, {
        ownTrustDomain: state.bundles.trustDomain,
        allowedForeignClaims: opts.allowedForeignJwtClaims,
      });
      // No size check: the claims come from the token, inside a request of at most 64 KiB.
      return encodeResponse(serialize, { spiffe_id: validated.spiffeId.uri, claims: toStruct(claims) });
    },
  };
}
