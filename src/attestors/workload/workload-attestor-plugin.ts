/**
 * The workload attestation contract (one small interface, as in SPIRE): given a caller's
 * PID, return facts about it as selector values. A plugin returns values WITHOUT its type
 * prefix; the agent's fan-out (src/agent/workload-attestation/attest-workload.ts) adds
 * `<plugin name>:` in one place. The contract lives beside its implementations (unix.ts,
 * k8s/) so attestors never import from src/agent/.
 */

/** One workload attestor plugin (unix, k8s). */
export interface WorkloadAttestorPlugin {
  /** The selector type it produces, e.g. `unix` or `k8s`. */
  readonly name: string;
  /**
   * Selector values for the process (e.g. `uid:1000`), without the type prefix.
   * A process the plugin has nothing to say about yields `[]`, not an error.
   * Errors are ApiError with a module-prefixed message (`unix: …`).
   */
  attest(pid: number, signal: AbortSignal): Promise<string[]>;
}
