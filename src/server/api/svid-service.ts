/**
 * spire.api.server.svid.v1.SVID: agents mint workload X509-SVIDs (BatchNewX509SVID) and
 * JWT-SVIDs (NewJWTSVID) for entries they are authorized to host; administrators (the local
 * admin socket) mint SVIDs for any workload ID (MintX509SVID, MintJWTSVID, see svid-mint.ts).
 */
import type { SVIDHandlers } from '../../gen/spire/api/server/svid/v1/SVID.ts';
import type { Logger } from '../../common/logger.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { toGrpcStatus } from '../../common/grpc-status.ts';
import type { AttestedAgent, RegistrationEntry } from '../datastore/types.ts';
import type { CallerResolver } from './caller.ts';
import { idToProto } from './convert.ts';
import { unary, unimplemented } from './rpc.ts';
import { mintJwtSvid, mintX509Svid, type SvidMinter } from './svid-mint.ts';

/** What the SVID service needs from the CA. Zero TTLs mean the server default. */
export interface WorkloadSvidSigner {
  signX509SvidFromCsr(csr: Buffer, spiffeId: string, ttlSeconds: number, dnsNames: readonly string[]): { certChain: Buffer[]; expiresAt: number };
  signJwtSvid(spiffeId: string, audience: readonly string[], ttlSeconds: number): { token: string; issuedAt: number; expiresAt: number };
}

export interface SvidServiceDeps {
  logger: Logger;
  callers: CallerResolver;
  signer: WorkloadSvidSigner;
  /** Signs what administrators mint. */
  minter: SvidMinter;
  /** The entries an agent may host, by entry ID. */
  authorizedEntryMap(agent: AttestedAgent): ReadonlyMap<string, RegistrationEntry>;
}

/** The most params one BatchNewX509SVID call may carry. */
export const MAX_BATCH_SIZE = 1000;

/** Builds the SVID service handlers. */
export function createSvidService(deps: SvidServiceDeps): SVIDHandlers {
  const { logger, callers, signer } = deps;

  return {
    BatchNewX509SVID: unary(logger, 'BatchNewX509SVID', (req, call) => {
      const caller = callers.requireAgent(call);
      if (req.params.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'missing parameters');
      if (req.params.length > MAX_BATCH_SIZE) {
        throw new ApiError(Code.INVALID_ARGUMENT, `too many parameters: at most ${MAX_BATCH_SIZE} per call`);
      }
      const authorized = deps.authorizedEntryMap(caller.agent);
      const seen = new Set<string>();
      const results = req.params.map((param) => {
        try {
          if (param.entry_id === '') throw new ApiError(Code.INVALID_ARGUMENT, 'missing entry ID');
          if (seen.has(param.entry_id)) throw new ApiError(Code.INVALID_ARGUMENT, 'entry ID specified more than once');
          seen.add(param.entry_id);
          const entry = authorized.get(param.entry_id);
          if (entry === undefined) throw new ApiError(Code.NOT_FOUND, 'entry not found or not authorized');
          if (param.csr.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'missing CSR');
          const svid = signer.signX509SvidFromCsr(param.csr, entry.spiffeId, entry.x509SvidTtl, entry.dnsNames);
          return {
            status: { code: Code.OK, message: 'OK' },
            svid: { cert_chain: svid.certChain, id: idToProto(entry.spiffeId), expires_at: svid.expiresAt, hint: entry.hint },
          };
        } catch (err) {
          const status = toGrpcStatus(err);
          return { status: { code: status.code, message: status.details }, svid: null };
        }
      });
      logger.debug(
        { method: 'BatchNewX509SVID', spiffe_id: caller.agentId, requested: req.params.length, signed: results.filter((r) => r.svid !== null).length },
        'x509 svids signed',
      );
      return { results };
    }),

    NewJWTSVID: unary(logger, 'NewJWTSVID', (req, call) => {
      const caller = callers.requireAgent(call);
      if (req.entry_id === '') throw new ApiError(Code.INVALID_ARGUMENT, 'missing entry ID');
      if (req.audience.length === 0 || req.audience.some((a) => a === '')) {
        throw new ApiError(Code.INVALID_ARGUMENT, 'at least one audience is required');
      }
      const entry = deps.authorizedEntryMap(caller.agent).get(req.entry_id);
      if (entry === undefined) throw new ApiError(Code.NOT_FOUND, 'entry not found or not authorized');
      const jwt = signer.signJwtSvid(entry.spiffeId, req.audience, entry.jwtSvidTtl);
      return {
        svid: { token: jwt.token, id: idToProto(entry.spiffeId), expires_at: jwt.expiresAt, issued_at: jwt.issuedAt, hint: entry.hint },
      };
    }),

    MintX509SVID: unary(logger, 'MintX509SVID', (req, call) => {
      callers.requireAdmin(call);
      const res = mintX509Svid(req, deps.minter);
      logger.debug({ method: 'MintX509SVID', spiffe_id: res.svid?.id ? `spiffe://${res.svid.id.trust_domain}${res.svid.id.path}` : '', expires_at: res.svid?.expires_at }, 'x509 svid minted');
      return res;
    }),
    MintJWTSVID: unary(logger, 'MintJWTSVID', (req, call) => {
      callers.requireAdmin(call);
      const res = mintJwtSvid(req, deps.minter);
      logger.debug({ method: 'MintJWTSVID', spiffe_id: res.svid?.id ? `spiffe://${res.svid.id.trust_domain}${res.svid.id.path}` : '', audience: req.audience }, 'jwt svid minted');
      return res;
    }),
    MintWITSVID: unimplemented('MintWITSVID'),
    BatchNewWITSVID: unimplemented('BatchNewWITSVID'),
    NewDownstreamX509CA: unimplemented('NewDownstreamX509CA'),
  };
}
