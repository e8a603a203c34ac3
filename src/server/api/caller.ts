/**
 * Who is calling a server RPC. On the TLS listener the caller is whoever presented a
 * client certificate that chains to the current bundle (grpc-js reports the peer
 * certificate only when the TLS layer verified it); on the local admin socket every
 * caller is an administrator, the socket's file permissions being the guard.
 */
import { uriSans } from '../../common/peer-certificate.ts';
import type { PeerCertificate } from 'node:tls';
import { ApiError, Code } from '../../common/errors.ts';
import type { Clock } from '../../common/clock.ts';
import type { AttestedAgent } from '../datastore/types.ts';
import { authorizeAgent } from '../agent-authorizer.ts';

/** Any server call: all grpc-js server calls expose their TLS auth context. */
export interface ServerSurfaceCall {
  getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
}

/** The verified X.509 identity of a TLS peer. */
export interface TlsPeer {
  spiffeId: string;
  serialNumber: string;
  /** Unix seconds. */
  expiresAt: number;
}

/** Reads the verified peer certificate of a call, if the peer presented one. */
export function tlsPeerOf(call: ServerSurfaceCall): TlsPeer | undefined {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  if (cert === undefined) return undefined;
  const uris = uriSans(cert);
  if (uris.length !== 1 || !(uris[0] as string).startsWith('spiffe://')) return undefined;
  return {
    spiffeId: uris[0] as string,
    // Node reports the serial in hex; SPIRE records and compares it in decimal.
    serialNumber: BigInt(`0x${cert.serialNumber.replace(/:/g, '') || '0'}`).toString(10),
    expiresAt: Math.floor(Date.parse(cert.valid_to) / 1000),
  };
}

/** An authenticated caller. */
export type Caller =
  | { kind: 'admin' }
  | { kind: 'agent'; agentId: string; agent: AttestedAgent; promoteNewSerial: boolean }
  | { kind: 'anonymous' };

/** The slice of the datastore caller checks need. */
export interface AgentLookup {
  getAttestedAgent(spiffeId: string): AttestedAgent | undefined;
  /** Makes the renewed serial the current one (the agent has switched to its new SVID). */
  promoteNewSerial(spiffeId: string, expiresAt: number): void;
}

/** Decides who a call comes from; one per listener. */
export interface CallerResolver {
  /** The caller, without requiring anything. */
  resolve(call: ServerSurfaceCall): Caller;
  /** An attested, active agent, or PermissionDenied with SPIRE's details reason. */
  requireAgent(call: ServerSurfaceCall): Extract<Caller, { kind: 'agent' }>;
  /** An administrator or PermissionDenied. */
  requireAdmin(call: ServerSurfaceCall): Extract<Caller, { kind: 'admin' }>;
}

/** Every caller of the local admin socket is an administrator. */
export const adminSocketResolver: CallerResolver = {
  resolve: () => ({ kind: 'admin' }),
  requireAgent: () => {
    throw new ApiError(Code.PERMISSION_DENIED, 'caller is not an agent');
  },
  requireAdmin: () => ({ kind: 'admin' }),
};

const AGENT_PATH = '/spire/agent/';

/** Resolves TLS callers: agents by SVID, checked against the datastore on every call. */
export function tlsCallerResolver(opts: { trustDomain: string; agents: AgentLookup; clock: Clock }): CallerResolver {
  const agentPrefix = `spiffe://${opts.trustDomain}${AGENT_PATH}`;
  const resolveAgent = (call: ServerSurfaceCall): Extract<Caller, { kind: 'agent' }> => {
    const peer = tlsPeerOf(call);
    if (peer === undefined || !peer.spiffeId.startsWith(agentPrefix)) {
      throw new ApiError(Code.PERMISSION_DENIED, 'caller is not an agent', { reason: 'AGENT_NOT_ATTESTED' });
    }
    const agent = opts.agents.getAttestedAgent(peer.spiffeId);
    const verdict = authorizeAgent(agent, peer.serialNumber, peer.expiresAt, Math.floor(opts.clock.now() / 1000));
    if (!verdict.ok) throw new ApiError(Code.PERMISSION_DENIED, verdict.message, { reason: verdict.reason });
    if (verdict.promoteNewSerial) opts.agents.promoteNewSerial(peer.spiffeId, peer.expiresAt);
    return { kind: 'agent', agentId: peer.spiffeId, agent: agent as AttestedAgent, promoteNewSerial: verdict.promoteNewSerial };
  };
  return {
    resolve(call) {
      const peer = tlsPeerOf(call);
      if (peer === undefined || !peer.spiffeId.startsWith(agentPrefix)) return { kind: 'anonymous' };
      return resolveAgent(call);
    },
    requireAgent: resolveAgent,
    requireAdmin() {
      throw new ApiError(Code.PERMISSION_DENIED, 'caller is not an administrator: use the local admin socket');
    },
  };
}
