/**
 * What the Workload API records (see ../telemetry/agent-metrics.ts for the metric names).
 * Every member is bound to its labels before the first call: recording is a number update.
 */
import {
  NOOP_CALL_RECORDER,
  NOOP_COUNTER,
  NOOP_RECORDER,
  NOOP_STATUS_COUNTER,
  type CallRecorder,
  type EventCounter,
  type StatusCounter,
  type ValueRecorder,
} from '../../common/recorders.ts';
import type { LimitName } from './caller-limits.ts';
import type { GateRefusal } from './connection-gate.ts';
import type { ResourceCause } from './peer-credentials.ts';

/** The Workload API's recorders. */
export interface WorkloadApiMetrics {
  /** Connections accepted (SPIRE `workload_api_connection`). */
  readonly connectionsAccepted: EventCounter;
  /** Phase `peer_credentials`: seconds to capture a connection's credentials at accept. */
  readonly peerCredentialsSeconds: ValueRecorder;
  /** Phase `attestors`: seconds of the attestor fan-out, per attested call. */
  readonly attestorsSeconds: ValueRecorder;
  /** Phase `liveness_check`: seconds of the PID-reuse checks (before and after attesting), per call. */
  readonly livenessCheckSeconds: ValueRecorder;
  /** A whole caller attestation, by final status (SPIRE `workload_api_workload_attestation`). */
  readonly attestation: CallRecorder;
  /** Finished calls of one RPC method, by final status. Called once per method, when handlers are built. */
  rpc(method: string): StatusCounter;
  /** Connections closed before their first request, by reason (see connection-gate.ts). */
  gateRefused(reason: GateRefusal): EventCounter;
  /** Connections or calls refused by a per-caller limit (see caller-limits.ts). */
  limitRefused(limit: LimitName): EventCounter;
  /** Callers the agent could not identify for lack of a resource of its own, by errno name. */
  peerCredentialErrors(cause: ResourceCause): EventCounter;
}

/** Records nothing (telemetry off). */
export const NOOP_WORKLOAD_API_METRICS: WorkloadApiMetrics = {
  connectionsAccepted: NOOP_COUNTER,
  peerCredentialsSeconds: NOOP_RECORDER,
  attestorsSeconds: NOOP_RECORDER,
  livenessCheckSeconds: NOOP_RECORDER,
  attestation: NOOP_CALL_RECORDER,
  rpc: () => NOOP_STATUS_COUNTER,
  gateRefused: () => NOOP_COUNTER,
  limitRefused: () => NOOP_COUNTER,
  peerCredentialErrors: () => NOOP_COUNTER,
};
