/**
 * What the Workload API uses from workload attestation: every plugin together, returning
 * typed selectors. The per-plugin contract is WorkloadAttestorPlugin
 * (src/attestors/workload/workload-attestor-plugin.ts); the fan-out over plugins is
 * attest-workload.ts.
 */
import type { Selector } from '../../common/selector.ts';

/** What the Workload API uses: all plugins together. */
export interface WorkloadAttestor {
  /**
   * Selectors of the process from every plugin that succeeded. Rejects with
   * ApiError(UNAVAILABLE, "workload attestation failed") only if every plugin failed.
   */
  attest(pid: number, signal: AbortSignal): Promise<Selector[]>;
}
