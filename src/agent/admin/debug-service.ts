/**
 * The agent's Debug API (`spire.agent.debug.v1.Debug/GetInfo`), as SPIRE's
 * `pkg/agent/api/debug/v1/service.go`: the agent SVID's chain verified against the agent's
 * own bundle (leaf, intermediates, the root), uptime, cache sizes and the last successful
 * sync. Any local caller that can open the admin socket may ask (the socket's mode is the
 * guard), as in SPIRE. Answers are kept for 5 s, as SPIRE's, so polling costs one chain
 * verification per 5 s.
 */
import type { Clock } from '../../common/clock.ts';
import { readCertificate, type CertificateInfo } from '../../common/cert-reader.ts';
import { ChainVerifier } from '../../common/chain-verify.ts';
import { splitConcatenated } from '../../common/der.ts';
import { ApiError, Code } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { loadProtos } from '../../common/proto.ts';
import { parseSpiffeId } from '../../common/spiffe-id.ts';
import type { GetInfoResponse } from '../../gen/spire/agent/debug/v1/GetInfoResponse.ts';
import { encodeResponse, serializerOf, withPassthroughSerializers, type EncodedMessage } from '../workload-api/encode.ts';
import { adminUnary, type AdminRpcDeps } from './admin-rpc.ts';
import type { AdminService } from './admin-server.ts';
import { goNameString } from './distinguished-name.ts';

/** How long one answer is reused (SPIRE's cacheExpiry). */
export const GET_INFO_CACHE_MS = 5_000;

/** What GetInfo reports, read when it is asked. */
export interface DebugFacts {
  /** The agent SVID's chain (DER, leaf first), once the agent has attested. */
  agentSvidChain(): readonly Buffer[] | undefined;
  /** The agent's own trust bundle roots, DER concatenated, once known. */
  ownRoots(): Buffer | undefined;
  /** Cached X509-SVIDs and JWT-SVIDs. */
  cacheCounts(): { readonly x509Svids: number; readonly jwtSvids: number };
  /** When the last sync succeeded (clock ms), if one has. */
  lastSyncAt(): number | undefined;
  /** When the agent started (clock ms). */
  readonly startedAt: number;
}

/** Options of {@link debugService}. */
export interface DebugServiceOptions {
  readonly facts: DebugFacts;
  readonly clock: Clock;
  readonly logger: Logger;
}

const SERVICE = withPassthroughSerializers(loadProtos().spire.agent.debug.v1.Debug.service);
const encodeGetInfo = serializerOf(SERVICE['GetInfo'] as unknown as { responseSerialize: (value: GetInfoResponse) => Buffer });

/** Int32 fields: SPIRE refuses values out of range rather than wrapping them. */
function int32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 31) throw new ApiError(Code.INTERNAL, `debug: ${what} out of range: ${value}`);
  return value;
}

/**
 * The verified chain: the SVID's certificates up to the first one a root signed, then that
 * root. Undefined when no root verifies the chain.
 */
export function verifiedChain(chain: readonly Buffer[], roots: readonly Buffer[]): CertificateInfo[] | undefined {
  for (const root of roots) {
    if (!new ChainVerifier([root]).verify(chain)) continue;
    const rootInfo = readCertificate(root);
    const certs = chain.map((der) => readCertificate(der));
    const signedByRoot = certs.findIndex((c) => c.issuerDer.equals(rootInfo.subjectDer));
    const upTo = signedByRoot === -1 ? certs.length - 1 : signedByRoot;
    // A chain that ends in the root itself does not list it twice.
    const head = certs.slice(0, upTo + 1).filter((c) => !c.der.equals(rootInfo.der));
    return [...head, rootInfo];
  }
  return undefined;
}

function certMessage(cert: CertificateInfo): NonNullable<GetInfoResponse['svid_chain']>[number] {
  const uri = cert.uris.length === 1 ? cert.uris[0] : undefined;
  const id = uri === undefined ? undefined : parseSpiffeId(uri);
  return {
    id: id?.ok === true ? { trust_domain: id.value.trustDomain, path: id.value.path } : null,
    expires_at: Math.floor(cert.notAfter / 1000),
    subject: goNameString(cert.subjectDer),
  };
}

/** The Debug service for the admin server. */
export function debugService(opts: DebugServiceOptions): AdminService {
  const { facts, clock, logger } = opts;
  let cached: { at: number; bytes: EncodedMessage } | undefined;

  const build = (): EncodedMessage => {
    const chain = facts.agentSvidChain();
    if (chain === undefined) throw new ApiError(Code.UNAVAILABLE, 'debug: the agent has not attested yet');
    const roots = facts.ownRoots();
    const verified = verifiedChain(chain, roots === undefined ? [] : splitConcatenated(roots));
    if (verified === undefined) {
      logger.error({}, 'Failed to verify agent SVID');
      throw new ApiError(Code.INTERNAL, 'failed to verify agent SVID: x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority');
    }
    const counts = facts.cacheCounts();
    const x509 = int32(counts.x509Svids, 'X.509 SVIDs count');
    const lastSync = facts.lastSyncAt();
    return encodeResponse(encodeGetInfo, {
      svid_chain: verified.map(certMessage),
      uptime: int32(Math.floor((clock.now() - facts.startedAt) / 1000), 'uptime'),
      svids_count: x509,
      last_sync_success: lastSync === undefined ? 0 : Math.floor(lastSync / 1000),
      cached_x509_svids_count: x509,
      cached_jwt_svids_count: int32(counts.jwtSvids, 'JWT SVIDs count'),
      // This agent has no SVID store.
      cached_svidstore_x509_svids_count: 0,
    }) as EncodedMessage;
  };

  return (deps: AdminRpcDeps) => ({
    definition: SERVICE,
    handlers: {
      GetInfo: adminUnary(deps, 'GetInfo', async () => {
        const now = clock.now();
        if (cached === undefined || now - cached.at >= GET_INFO_CACHE_MS) cached = { at: now, bytes: build() };
        return cached.bytes;
      }),
    },
  });
}
