/**
 * The SpiffeWorkloadAPI service: its definition (response serializers pass pre-encoded bytes
 * through) and its seven handlers, each wrapped in the middleware chain by rpc.ts.
 */
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.ts';
import { WorkloadApiService } from '../../common/proto.ts';
import type { JWTBundlesRequest__Output } from '../../gen/JWTBundlesRequest.ts';
import type { WITBundlesRequest__Output } from '../../gen/WITBundlesRequest.ts';
import type { WITSVIDRequest__Output } from '../../gen/WITSVIDRequest.ts';
import type { X509BundlesRequest__Output } from '../../gen/X509BundlesRequest.ts';
import type { X509SVIDRequest__Output } from '../../gen/X509SVIDRequest.ts';
import { encodedJwtBundles, encodedX509Bundles } from './bundle-responses.ts';
import { withPassthroughSerializers } from './encode.ts';
import { fetchBundles } from './handlers/fetch-bundles.ts';
import { fetchJwtSvid } from './handlers/fetch-jwt-svid.ts';
import { fetchX509Svid } from './handlers/fetch-x509-svid.ts';
import { validateJwtSvidRpc } from './handlers/validate-jwt-svid.ts';
import type { IdentitySource } from './identity-source.ts';
import { LargeResponseWarnings, type LargeResponseLog } from './large-response.ts';
import { streamRpc, unaryRpc, unimplementedStream, type RpcDeps } from './rpc.ts';

/** The Workload API service definition with pass-through response serializers. */
export const workloadApiServiceDefinition: ServiceDefinition = withPassthroughSerializers(WorkloadApiService);

/** What the handlers need beyond the middleware. */
export interface WorkloadApiHandlerOptions extends RpcDeps {
  readonly source: IdentitySource;
  readonly clock: Clock;
  readonly allowUnauthenticatedVerifiers: boolean;
  readonly allowedForeignJwtClaims: ReadonlySet<string>;
  /** Where responses over the default client receive limit are reported; default: warnings in `logger`. */
  readonly largeResponses?: LargeResponseLog;
}

/** Builds the handlers of every SpiffeWorkloadAPI method. */
export function createWorkloadApiHandlers(opts: WorkloadApiHandlerOptions): UntypedServiceImplementation {
  const largeResponses = opts.largeResponses ?? new LargeResponseWarnings({ logger: opts.logger, clock: opts.clock });
  const bundleOpts = { source: opts.source, allowUnauthenticatedVerifiers: opts.allowUnauthenticatedVerifiers, largeResponses };
  return {
    FetchX509SVID: streamRpc<X509SVIDRequest__Output>(opts, 'FetchX509SVID', fetchX509Svid(opts.source, largeResponses, opts.activity)),
    FetchX509Bundles: streamRpc<X509BundlesRequest__Output>(opts, 'FetchX509Bundles', fetchBundles(bundleOpts, 'FetchX509Bundles', encodedX509Bundles)),
    FetchJWTBundles: streamRpc<JWTBundlesRequest__Output>(opts, 'FetchJWTBundles', fetchBundles(bundleOpts, 'FetchJWTBundles', encodedJwtBundles)),
    FetchJWTSVID: unaryRpc(opts, 'FetchJWTSVID', fetchJwtSvid(opts.source, largeResponses)),
    ValidateJWTSVID: unaryRpc(opts, 'ValidateJWTSVID', validateJwtSvidRpc(opts)),
    FetchWITSVID: unimplementedStream<WITSVIDRequest__Output>(opts, 'FetchWITSVID', 'fetching WIT-SVIDs is not implemented'),
    FetchWITBundles: unimplementedStream<WITBundlesRequest__Output>(opts, 'FetchWITBundles', 'fetching WIT bundles is not implemented'),
  };
}
