/**
 * spire.api.server.bundle.v1.Bundle: the server's own bundle (anyone may read it: it
 * holds only public keys) and federated bundles (agents read, administrators write).
 */
import type { BundleHandlers } from '../../gen/spire/api/server/bundle/v1/Bundle.ts';
import type { Bundle__Output } from '../../gen/spire/api/types/Bundle.ts';
import type { Logger } from '../../common/logger.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { toGrpcStatus } from '../../common/grpc-status.ts';
import { parseTrustDomain } from '../../common/spiffe-id.ts';
import type { FederatedBundle } from '../datastore/types.ts';
import type { CallerResolver } from './caller.ts';
import { bundleFromProto, bundleToProto } from './convert.ts';
import { unary, unimplemented } from './rpc.ts';

/** What the Bundle service needs from the datastore. */
export interface FederatedBundleStore {
  getFederatedBundle(trustDomain: string): FederatedBundle | undefined;
  listFederatedBundles(): FederatedBundle[];
  setFederatedBundle(bundle: FederatedBundle): FederatedBundle;
  deleteFederatedBundle(trustDomain: string): void;
}

export interface BundleServiceDeps {
  trustDomain: string;
  logger: Logger;
  callers: CallerResolver;
  store: FederatedBundleStore;
  /** The server's own current bundle. */
  ownBundle(): FederatedBundle;
}

/** Validates a trust domain name from a request (accepts `spiffe://td` too). */
function trustDomainArg(raw: string): string {
  const name = raw.replace(/^spiffe:\/\//, '');
  const parsed = parseTrustDomain(name);
  if (!parsed.ok) throw new ApiError(Code.INVALID_ARGUMENT, `trust domain argument is not valid: ${parsed.error}`);
  return parsed.value;
}

/** Builds the Bundle service handlers. */
export function createBundleService(deps: BundleServiceDeps): BundleHandlers {
  const { logger, callers, store } = deps;

  const writeFederated = (method: string, bundle: Bundle__Output, mode: 'create' | 'update' | 'set') => {
    try {
      const record = bundleFromProto(bundle);
      trustDomainArg(record.trustDomain);
      if (record.trustDomain === deps.trustDomain) {
        throw new ApiError(Code.INVALID_ARGUMENT, `bundle for ${deps.trustDomain} is the server's own bundle, not a federated one`);
      }
      if (record.x509Authorities.length === 0 && record.jwtAuthorities.length === 0) {
        throw new ApiError(Code.INVALID_ARGUMENT, 'bundle has no X.509 or JWT authorities');
      }
      const existing = store.getFederatedBundle(record.trustDomain);
      if (mode === 'create' && existing !== undefined) throw new ApiError(Code.ALREADY_EXISTS, 'bundle already exists');
      if (mode === 'update' && existing === undefined) throw new ApiError(Code.NOT_FOUND, 'bundle not found');
      const saved = store.setFederatedBundle(record);
      logger.info({ method, trust_domain: record.trustDomain }, 'federated bundle written');
      return { status: { code: Code.OK, message: 'OK' }, bundle: bundleToProto(saved) };
    } catch (err) {
      const status = toGrpcStatus(err);
      return { status: { code: status.code, message: status.details }, bundle: null };
    }
  };

  return {
    GetBundle: unary(logger, 'GetBundle', (req) => bundleToProto(deps.ownBundle(), req.output_mask)),

    GetFederatedBundle: unary(logger, 'GetFederatedBundle', (req, call) => {
      const caller = callers.resolve(call);
      if (caller.kind === 'anonymous') throw new ApiError(Code.PERMISSION_DENIED, 'caller is not an agent or administrator');
      const td = trustDomainArg(req.trust_domain);
      if (td === deps.trustDomain) {
        throw new ApiError(Code.INVALID_ARGUMENT, `${td} is this server's trust domain: use GetBundle`);
      }
      const bundle = store.getFederatedBundle(td);
      if (bundle === undefined) throw new ApiError(Code.NOT_FOUND, 'bundle not found');
      return bundleToProto(bundle, req.output_mask);
    }),

    CountBundles: unary(logger, 'CountBundles', (_req, call) => {
      callers.requireAdmin(call);
      return { count: store.listFederatedBundles().length + 1 };
    }),

    ListFederatedBundles: unary(logger, 'ListFederatedBundles', (req, call) => {
      callers.requireAdmin(call);
      return { bundles: store.listFederatedBundles().map((b) => bundleToProto(b, req.output_mask)), next_page_token: '' };
    }),

    BatchCreateFederatedBundle: unary(logger, 'BatchCreateFederatedBundle', (req, call) => {
      callers.requireAdmin(call);
      return { results: req.bundle.map((b) => writeFederated('BatchCreateFederatedBundle', b, 'create')) };
    }),
    BatchUpdateFederatedBundle: unary(logger, 'BatchUpdateFederatedBundle', (req, call) => {
      callers.requireAdmin(call);
      return { results: req.bundle.map((b) => writeFederated('BatchUpdateFederatedBundle', b, 'update')) };
    }),
    BatchSetFederatedBundle: unary(logger, 'BatchSetFederatedBundle', (req, call) => {
      callers.requireAdmin(call);
      return { results: req.bundle.map((b) => writeFederated('BatchSetFederatedBundle', b, 'set')) };
    }),

    BatchDeleteFederatedBundle: unary(logger, 'BatchDeleteFederatedBundle', (req, call) => {
      callers.requireAdmin(call);
      return {
        results: req.trust_domains.map((raw) => {
          try {
            const td = trustDomainArg(raw);
            if (store.getFederatedBundle(td) === undefined) throw new ApiError(Code.NOT_FOUND, 'bundle not found');
            store.deleteFederatedBundle(td);
            logger.info({ method: 'BatchDeleteFederatedBundle', trust_domain: td }, 'federated bundle deleted');
            return { trust_domain: td, status: { code: Code.OK, message: 'OK' } };
          } catch (err) {
            const status = toGrpcStatus(err);
            return { trust_domain: raw, status: { code: status.code, message: status.details } };
          }
        }),
      };
    }),

    AppendBundle: unimplemented('AppendBundle'),
    PublishJWTAuthority: unimplemented('PublishJWTAuthority'),
    PublishWITAuthority: unimplemented('PublishWITAuthority'),
  };
}
