/**
 * What the Workload API uses from workload attestation: every plugin together, returning
 * typed selectors. The per-plugin contract is WorkloadAttestorPlugin
 * (src/attestors/workload/workload-attestor-plugin.ts); the fan-out over plugins is
 * attest-workload.ts.
 */
import type { Code } from '../../common/errors.ts';
import type { Selector } from '../../common/selector.ts';
import type { TraceValue } from '../../attestors/workload/workload-attestor-plugin.ts';

/** One timed step of one plugin's attestation (see AttestTrace). */
export interface TraceStep {
  readonly name: string;
  readonly durationMs: number;
  readonly detail: Readonly<Record<string, TraceValue>>;
}

/** What one plugin said about a process, with how it got there. */
export interface AttestorReport {
  readonly plugin: string;
  readonly durationMs: number;
  /** Typed selectors, when the plugin succeeded. */
  readonly selectors?: readonly Selector[];
  /** Its error, when it failed. */
  readonly error?: { readonly code: Code; readonly message: string };
  readonly steps: readonly TraceStep[];
}

/** What the Workload API uses: all plugins together. */
export interface WorkloadAttestor {
  /**
   * Selectors of the process from every plugin that succeeded. Rejects with
   * ApiError(UNAVAILABLE, "workload attestation failed") only if every plugin failed.
   */
  attest(pid: number, signal: AbortSignal): Promise<Selector[]>;
  /**
   * Every plugin's answer for the process with its timed steps, for `debug explain`: the
   * same attestation as {@link attest}, traced. Never throws for a plugin's failure.
   */
  explain(pid: number, signal: AbortSignal): Promise<AttestorReport[]>;
  /**
   * The reports of the plugins that know pods (k8s) for a pod's container by name; empty
   * when no such plugin is configured.
   */
  explainPod(podUid: string, containerName: string | undefined, signal: AbortSignal): Promise<AttestorReport[]>;
}
