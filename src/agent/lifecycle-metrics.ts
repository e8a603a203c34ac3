/**
 * What the agent's control loop records (lifecycle.ts). The agent SVID's expiry and the time
 * of the last sync are not recorded here; they are read from the lifecycle when scraped.
 */
import { NOOP_CALL_RECORDER, NOOP_STATUS_COUNTER, type CallRecorder, type StatusCounter } from '../common/recorders.ts';

/** The lifecycle's recorders. */
export interface LifecycleMetrics {
  /** Each sync (entries, bundles, minting), in seconds, by status. */
  readonly sync: CallRecorder;
  /** Each node attestation (AttestAgent, first or re-attestation), by status. */
  readonly nodeAttestation: StatusCounter;
  /** Each agent SVID rotation (re-attestation or RenewAgent), by status. */
  readonly agentSvidRotation: StatusCounter;
}

/** Records nothing. */
export const NOOP_LIFECYCLE_METRICS: LifecycleMetrics = {
  sync: NOOP_CALL_RECORDER,
  nodeAttestation: NOOP_STATUS_COUNTER,
  agentSvidRotation: NOOP_STATUS_COUNTER,
};
