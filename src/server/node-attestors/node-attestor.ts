/**
 * The server side of node attestation: one plugin per attestation type.
 *
 * AttestAgent hands the plugin the payload of the agent's first message and a function
 * to run challenge/response rounds over the same stream; the plugin returns who the
 * agent is. Plugins never sign anything and never touch the datastore except through
 * what they are given.
 */
import type { Selector } from '../datastore/types.ts';

/** What a successful attestation proves. */
export interface NodeAttestationResult {
  /** The agent's SPIFFE ID, e.g. spiffe://example.org/spire/agent/join_token/<token>. */
  agentId: string;
  /** Node selectors (type is the plugin name, e.g. k8s_psat:cluster:c1 is {type:'k8s_psat', value:'cluster:c1'}). */
  selectors: Selector[];
  /** Whether the agent rotates its SVID by attesting again instead of RenewAgent. */
  canReattest: boolean;
}

/** Sends a challenge to the agent and resolves with its response. */
export type ChallengeFn = (challenge: Buffer) => Promise<Buffer>;

/** A server-side node attestor. */
export interface NodeAttestor {
  /** The attestation data type it handles (`join_token`, `k8s_psat`). */
  readonly type: string;
  attest(payload: Buffer, challenge: ChallengeFn): Promise<NodeAttestationResult>;
}
