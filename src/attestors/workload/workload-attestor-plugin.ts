/**
 * The workload attestation contract (one small interface, as in SPIRE): given a caller's
 * PID, return facts about it as selector values. A plugin returns values WITHOUT its type
 * prefix; the agent's fan-out (src/agent/workload-attestation/attest-workload.ts) adds
 * `<plugin name>:` in one place. The contract lives beside its implementations (unix.ts,
 * k8s/) so attestors never import from src/agent/.
 */

/** A value in a trace step's detail. */
export type TraceValue = string | number | boolean;

/**
 * Receives the steps of one attestation when someone asks why a process got its selectors
 * (`spiffe-agent debug explain`). Never passed on the Workload API's path, so plugins time
 * their steps only when it is given.
 */
export interface AttestTrace {
  /** Monotonic milliseconds, to time steps with. */
  now(): number;
  /** One step: its name (e.g. `cgroup`), how long it took, and where its answer came from. */
  step(name: string, durationMs: number, detail?: Readonly<Record<string, TraceValue>>): void;
}

/** One workload attestor plugin (unix, k8s). */
export interface WorkloadAttestorPlugin {
  /** The selector type it produces, e.g. `unix` or `k8s`. */
  readonly name: string;
  /**
   * Selector values for the process (e.g. `uid:1000`), without the type prefix.
   * A process the plugin has nothing to say about yields `[]`, not an error.
   * Errors are ApiError with a module-prefixed message (`unix: …`).
   */
  attest(pid: number, signal: AbortSignal, trace?: AttestTrace): Promise<string[]>;
  /**
   * Selector values for a pod's container found by name rather than by a process, for
   * `debug explain -podUID` (plugins that know pods: k8s). Without `containerName`, the
   * pod-level values only. Rejects with NOT_FOUND when the pod or container is unknown.
   */
  attestPod?(podUid: string, containerName: string | undefined, signal: AbortSignal, trace?: AttestTrace): Promise<string[]>;
}
