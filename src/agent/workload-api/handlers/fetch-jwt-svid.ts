/**
 * FetchJWTSVID (unary), SPIRE semantics: audience required; a malformed `spiffe_id` is
 * InvalidArgument; tokens for every matching entry (cached X.509-SVID or not), hint-filtered
 * and ordered by entry ID, optionally narrowed to `spiffe_id`; none → PermissionDenied
 * "no identity issued"; a minting failure → Unavailable "could not fetch JWT-SVID: …".
 * Never refused for its size; over the default client receive limit it is logged.
 */
import { ApiError, Code, toApiError } from '../../../common/errors.ts';
import { WorkloadApiService } from '../../../common/proto.ts';
import { parseSpiffeId } from '../../../common/spiffe-id.ts';
import type { JWTSVIDRequest__Output } from '../../../gen/JWTSVIDRequest.ts';
import { encodeResponse, serializerOf } from '../encode.ts';
import { filterByHint } from '../hint-filter.ts';
import type { JwtCandidate, JwtIdentity } from '../../manager/workload-state.ts';
import type { IdentitySource } from '../identity-source.ts';
import type { LargeResponseLog } from '../large-response.ts';
import type { UnarySpec } from '../rpc.ts';
import { noIdentityIssued } from '../x509-svid-response.ts';

const serialize = serializerOf(WorkloadApiService.FetchJWTSVID);

/** Argument checks made before the caller is attested. */
export function validateJwtSvidRequest(request: JWTSVIDRequest__Output): void {
  if (request.audience.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'audience must be specified');
  if (request.spiffe_id !== '') {
    const id = parseSpiffeId(request.spiffe_id);
    if (!id.ok) throw new ApiError(Code.INVALID_ARGUMENT, `invalid requested SPIFFE ID: ${id.error}`);
  }
}

/** The FetchJWTSVID RPC. */
export function fetchJwtSvid(source: IdentitySource, largeResponses: LargeResponseLog): UnarySpec<JWTSVIDRequest__Output> {
  return {
    validate: validateJwtSvidRequest,
    async handle(request, caller, signal) {
      const wanted = request.spiffe_id;
      const select = <T extends JwtCandidate>(candidates: readonly T[]): T[] =>
        filterByHint(candidates).filter((candidate) => wanted === '' || candidate.spiffeId === wanted);
      let identities: JwtIdentity[];
      try {
        identities = await source.fetchJwtSvids(caller.selectors, request.audience, signal, select);
      } catch (err) {
        throw new ApiError(Code.UNAVAILABLE, `could not fetch JWT-SVID: ${toApiError(err).message}`);
      }
      // Sources that ignore `select` are narrowed here; for the others this is a no-op.
      const svids = select(identities);
      if (svids.length === 0) throw noIdentityIssued();
      const response = { svids: svids.map((identity) => ({ spiffe_id: identity.spiffeId, svid: identity.token, hint: identity.hint })) };
      const bytes = encodeResponse(serialize, response);
      largeResponses.check({ method: 'FetchJWTSVID', pid: caller.pid, bytes: bytes.length, counts: () => ({ svids: svids.length }) });
      return bytes;
    },
  };
}
