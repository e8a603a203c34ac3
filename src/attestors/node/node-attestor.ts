/**
 * The agent side of node attestation: what the agent sends in AttestAgent to prove which
 * node it runs on. One implementation per attestation type (join_token, k8s_psat).
 */

/** An agent-side node attestor. */
export interface NodeAttestor {
  /** The attestation data type (`join_token`, `k8s_psat`). */
  readonly type: string;
  /** Whether the server lets this agent rotate by attesting again (k8s_psat) instead of RenewAgent. */
  readonly reattestable: boolean;
  /** The attestation payload, read fresh for every attestation (tokens rotate). */
  payload(): Promise<Buffer>;
  /** Answers a server challenge, for attestors that use them. */
  respond?(challenge: Buffer): Promise<Buffer>;
}
