/**
 * spire.api.server.agent.v1.Agent: node attestation (AttestAgent), agent SVID renewal
 * (RenewAgent), and the admin calls behind `spiffe-server agent …` and `token generate`.
 */
import { randomUUID } from 'node:crypto';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { AgentHandlers } from '../../gen/spire/api/server/agent/v1/Agent.ts';
import type { AttestAgentRequest__Output } from '../../gen/spire/api/server/agent/v1/AttestAgentRequest.ts';
import type { AttestAgentResponse } from '../../gen/spire/api/server/agent/v1/AttestAgentResponse.ts';
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { toGrpcStatus } from '../../common/grpc-status.ts';
import type { AttestedAgent, Selector } from '../datastore/types.ts';
import { selectorKey } from '../../common/selector.ts';
import type { NodeAttestor } from '../node-attestors/node-attestor.ts';
import type { CallerResolver } from './caller.ts';
import { agentToProto, idFromProto, idToProto } from './convert.ts';
import { logRpcError, unary } from './rpc.ts';

/** An agent SVID signed from the agent's CSR. */
export interface SignedAgentSvid {
  certChain: Buffer[];
  /** Unix seconds. */
  expiresAt: number;
  /** Lowercase hex, as TLS peers report it. */
  serialNumber: string;
}

/** What the Agent service needs from the CA. */
export interface AgentSvidSigner {
  signAgentSvid(csr: Buffer, agentId: string): SignedAgentSvid;
}

/** What the Agent service needs from the datastore. */
export interface AgentStore {
  getAttestedAgent(spiffeId: string): AttestedAgent | undefined;
  listAttestedAgents(): AttestedAgent[];
  putAttestedAgent(agent: AttestedAgent): void;
  updateAgentSerials(spiffeId: string, serials: { serialNumber: string; newSerialNumber: string; expiresAt: number }): void;
  banAgent(spiffeId: string): void;
  deleteAgent(spiffeId: string): void;
  createJoinToken(token: { token: string; expiresAt: number }): void;
  createJoinTokenEntry(token: string, agentAlias: string): void;
}

export interface AgentServiceDeps {
  trustDomain: string;
  clock: Clock;
  logger: Logger;
  callers: CallerResolver;
  store: AgentStore;
  signer: AgentSvidSigner;
  nodeAttestors: ReadonlyMap<string, NodeAttestor>;
}

/** How long AttestAgent waits for each message from the agent. */
const ATTESTATION_STEP_TIMEOUT_MS = 30_000;

type AttestStream = ServerDuplexStream<AttestAgentRequest__Output, AttestAgentResponse>;

/** Reads the next message of an attestation stream, or fails on end, error or timeout. */
function nextMessage(stream: AttestStream): Promise<AttestAgentRequest__Output> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const onData = (msg: AttestAgentRequest__Output): void => {
      cleanup();
      resolve(msg);
    };
    const onEnd = (): void => {
      cleanup();
      reject(new ApiError(Code.INVALID_ARGUMENT, 'failed to attest: stream ended before attestation completed'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new ApiError(Code.DEADLINE_EXCEEDED, 'failed to attest: timed out waiting for the agent'));
    }, ATTESTATION_STEP_TIMEOUT_MS);
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
  });
}

/** Whether two selector lists hold the same set (order and duplicates do not matter). */
function sameSelectors(a: readonly Selector[], b: readonly Selector[]): boolean {
  const left = new Set(a.map(selectorKey));
  const right = new Set(b.map(selectorKey));
  return left.size === right.size && [...left].every((k) => right.has(k));
}

/** Builds the Agent service handlers. */
export function createAgentService(deps: AgentServiceDeps): AgentHandlers {
  const { logger, store, callers } = deps;
  const nowSeconds = (): number => Math.floor(deps.clock.now() / 1000);

  async function attest(stream: AttestStream): Promise<AttestAgentResponse> {
    const first = await nextMessage(stream);
    const params = first.params;
    if (params === undefined || params === null) throw new ApiError(Code.INVALID_ARGUMENT, 'malformed param: missing params');
    const data = params.data;
    if (data === null || data.type === '') throw new ApiError(Code.INVALID_ARGUMENT, 'malformed param: missing attestation data');
    const csr = params.params?.csr;
    if (csr === undefined || csr.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'malformed param: missing X509-SVID params');
    const attestor = deps.nodeAttestors.get(data.type);
    if (attestor === undefined) {
      throw new ApiError(Code.FAILED_PRECONDITION, `failed to attest: could not find node attestor type "${data.type}"`);
    }

    const result = await attestor.attest(data.payload, async (challenge) => {
      stream.write({ challenge });
      const reply = await nextMessage(stream);
      if (reply.challenge_response === undefined) {
        throw new ApiError(Code.INVALID_ARGUMENT, 'failed to attest: expected a challenge response');
      }
      return reply.challenge_response;
    });

    const existing = store.getAttestedAgent(result.agentId);
    if (existing?.banned === true) throw new ApiError(Code.PERMISSION_DENIED, 'failed to attest: agent is banned');
    if (existing !== undefined && existing.attestationType !== data.type) {
      throw new ApiError(Code.PERMISSION_DENIED, `failed to attest: agent was attested with ${existing.attestationType}, not ${data.type}`);
    }

    const svid = deps.signer.signAgentSvid(csr, result.agentId);
    // A fresh attestation makes the new serial the only valid one: the previous SVID
    // (if any) now gets AGENT_NOT_ACTIVE.
    store.putAttestedAgent({
      spiffeId: result.agentId,
      attestationType: data.type,
      serialNumber: svid.serialNumber,
      newSerialNumber: '',
      expiresAt: svid.expiresAt,
      banned: false,
      canReattest: result.canReattest,
      selectors: result.selectors,
    });
    logger.info(
      {
        method: 'AttestAgent',
        spiffe_id: result.agentId,
        attestor: data.type,
        reattested: existing !== undefined,
        selectors_changed: existing !== undefined && !sameSelectors(existing.selectors, result.selectors),
      },
      'agent attested',
    );
    return {
      result: {
        svid: { cert_chain: svid.certChain, id: idToProto(result.agentId), expires_at: svid.expiresAt },
        reattestable: result.canReattest,
      },
    };
  }

  return {
    AttestAgent(stream: AttestStream) {
      attest(stream).then(
        (response) => {
          stream.write(response);
          stream.end();
        },
        (err: unknown) => {
          logRpcError(logger, 'AttestAgent', err);
          stream.emit('error', toGrpcStatus(err));
        },
      );
    },

    RenewAgent: unary(logger, 'RenewAgent', (req, call) => {
      const caller = callers.requireAgent(call);
      if (caller.agent.canReattest) {
        throw new ApiError(Code.PERMISSION_DENIED, 'agent must reattest to renew its SVID', { reason: 'AGENT_MUST_REATTEST' });
      }
      const csr = req.params?.csr;
      if (csr === undefined || csr.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'missing CSR');
      const svid = deps.signer.signAgentSvid(csr, caller.agentId);
      const current = store.getAttestedAgent(caller.agentId) ?? caller.agent;
      // The new serial becomes current when the agent first presents it (see CallerResolver).
      store.updateAgentSerials(caller.agentId, {
        serialNumber: current.serialNumber,
        newSerialNumber: svid.serialNumber,
        expiresAt: current.expiresAt,
      });
      logger.info({ method: 'RenewAgent', spiffe_id: caller.agentId }, 'agent SVID renewed');
      return { svid: { cert_chain: svid.certChain, id: idToProto(caller.agentId), expires_at: svid.expiresAt } };
    }),

    CountAgents: unary(logger, 'CountAgents', (_req, call) => {
      callers.requireAdmin(call);
      return { count: store.listAttestedAgents().length };
    }),

    ListAgents: unary(logger, 'ListAgents', (req, call) => {
      callers.requireAdmin(call);
      const f = req.filter;
      const agents = store.listAttestedAgents().filter((a) => {
        if (f === null) return true;
        if (f.by_attestation_type !== '' && a.attestationType !== f.by_attestation_type) return false;
        if (f.by_banned !== null && a.banned !== f.by_banned.value) return false;
        if (f.by_can_reattest !== null && a.canReattest !== f.by_can_reattest.value) return false;
        return true;
      });
      return { agents: agents.map((a) => agentToProto(a, req.output_mask)), next_page_token: '' };
    }),

    GetAgent: unary(logger, 'GetAgent', (req, call) => {
      callers.requireAdmin(call);
      const id = idFromProto(req.id, 'agent ID');
      const agent = store.getAttestedAgent(id);
      if (agent === undefined) throw new ApiError(Code.NOT_FOUND, 'agent not found');
      return agentToProto(agent, req.output_mask);
    }),

    DeleteAgent: unary(logger, 'DeleteAgent', (req, call) => {
      callers.requireAdmin(call);
      const id = idFromProto(req.id, 'agent ID');
      if (store.getAttestedAgent(id) === undefined) throw new ApiError(Code.NOT_FOUND, 'agent not found');
      store.deleteAgent(id);
      logger.info({ method: 'DeleteAgent', spiffe_id: id }, 'agent evicted');
      return {};
    }),

    BanAgent: unary(logger, 'BanAgent', (req, call) => {
      callers.requireAdmin(call);
      const id = idFromProto(req.id, 'agent ID');
      if (store.getAttestedAgent(id) === undefined) throw new ApiError(Code.NOT_FOUND, 'agent not found');
      store.banAgent(id);
      logger.info({ method: 'BanAgent', spiffe_id: id }, 'agent banned');
      return {};
    }),

    CreateJoinToken: unary(logger, 'CreateJoinToken', (req, call) => {
      callers.requireAdmin(call);
      if (req.ttl < 1) throw new ApiError(Code.INVALID_ARGUMENT, 'ttl is required, you must provide one');
      const token = req.token === '' ? randomUUID() : req.token;
      if (!/^[A-Za-z0-9._-]+$/.test(token)) {
        throw new ApiError(Code.INVALID_ARGUMENT, 'token may contain only letters, digits, ".", "_" and "-"');
      }
      const alias = req.agent_id === null || req.agent_id.trust_domain === '' ? undefined : idFromProto(req.agent_id, 'agent ID');
      const expiresAt = nowSeconds() + req.ttl;
      store.createJoinToken({ token, expiresAt });
      if (alias !== undefined) store.createJoinTokenEntry(token, alias);
      logger.info({ method: 'CreateJoinToken', expires_at: expiresAt }, 'join token created');
      return { value: token, expires_at: expiresAt };
    }),

    PostStatus: unary(logger, 'PostStatus', (_req, call) => {
      callers.requireAgent(call);
      return {};
    }),
  };
}
