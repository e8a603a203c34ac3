/**
 * The agent side of `Agent/AttestAgent`: send the attestation data and a CSR, answer any
 * challenges, and return the agent SVID.
 */
import type { AgentClient } from '../../common/proto.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { fromGrpcError } from '../../common/grpc-status.ts';
import type { AttestAgentResponse__Output } from '../../gen/spire/api/server/agent/v1/AttestAgentResponse.ts';

export interface AttestationRequest {
  /** The node attestor type, e.g. `join_token` or `k8s_psat`. */
  type: string;
  payload: Buffer;
  /** DER CSR for the agent key. */
  csr: Buffer;
  /** Answers a server challenge (attestors without challenges never see one). */
  respond?: (challenge: Buffer) => Promise<Buffer>;
  deadlineMs?: number;
}

export interface AttestationResult {
  /** DER chain, leaf first. */
  certChain: Buffer[];
  spiffeId: string;
  /** Unix seconds. */
  expiresAt: number;
  reattestable: boolean;
}

/**
 * Runs one AttestAgent exchange. Failures are the server's status (or the transport's),
 * except INTERNAL `server-client:` errors for a malformed result or a failed challenge answer.
 */
export function attestAgent(client: AgentClient, req: AttestationRequest): Promise<AttestationResult> {
  return new Promise((resolve, reject) => {
    const stream = client.AttestAgent({ deadline: Date.now() + (req.deadlineMs ?? 30_000) });
    let settled = false;
    const finish = (err: unknown, result?: AttestationResult): void => {
      if (settled) return;
      settled = true;
      if (err !== undefined) {
        stream.cancel();
        reject(err instanceof ApiError ? err : fromGrpcError(err));
      } else resolve(result as AttestationResult);
    };
    stream.on('data', (msg: AttestAgentResponse__Output) => {
      if (msg.result !== undefined && msg.result !== null) {
        const svid = msg.result.svid;
        if (svid === null || svid.cert_chain.length === 0 || svid.id === null) {
          finish(new ApiError(Code.INTERNAL, 'server-client: attestation result has no SVID'));
          return;
        }
        stream.end();
        finish(undefined, {
          certChain: svid.cert_chain,
          spiffeId: `spiffe://${svid.id.trust_domain}${svid.id.path}`,
          expiresAt: svid.expires_at,
          reattestable: msg.result.reattestable,
        });
        return;
      }
      const challenge = msg.challenge;
      if (challenge === undefined) return;
      if (req.respond === undefined) {
        finish(new ApiError(Code.INTERNAL, `server-client: ${req.type} attestation got an unexpected challenge`));
        return;
      }
      req.respond(challenge).then(
        (response) => stream.write({ challenge_response: response }),
        // A local failure, not the server's answer: never mistaken for a refusal.
        (err: unknown) => finish(new ApiError(Code.INTERNAL, `server-client: answering the ${req.type} challenge failed: ${err instanceof Error ? err.message : String(err)}`)),
      );
    });
    stream.on('error', (err) => finish(err));
    stream.on('end', () => finish(new ApiError(Code.UNAVAILABLE, 'server-client: attestation stream ended without a result')));
    stream.write({ params: { data: { type: req.type, payload: req.payload }, params: { csr: req.csr } } });
  });
}
