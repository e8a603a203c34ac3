/**
 * Every metric the agent exports: name, help and label names, in one table (README.md lists
 * the same). Names carry the `spiffe_agent_` prefix and follow SPIRE's keys where SPIRE has
 * the metric (`doc/telemetry/telemetry.md`: SPIRE's `workload_api_workload_attestor` becomes
 * `spiffe_agent_workload_api_workload_attestor_duration_seconds`), with Prometheus suffixes:
 * `_total` for counters, `_seconds` for durations. SPIRE's call counters (a count and an
 * elapsed time, labelled `status`) are histograms labelled `status` here.
 *
 * Labels are bounded by construction: `status` is a gRPC code name (17 values), `method`
 * a Workload API method, `attestor` a configured plugin, the others small closed sets.
 * Never a SPIFFE ID, entry ID, PID or pod.
 */
import type { FamilySpec } from './families.ts';

/** The metric name prefix. */
export const METRIC_PREFIX = 'spiffe_agent_';

function spec(name: string, help: string, labelNames: readonly string[] = []): FamilySpec {
  return { name: `${METRIC_PREFIX}${name}`, help, labelNames };
}

/** The agent's metrics by role. */
export const METRIC_SPECS = {
  started: spec('started', 'Information about the agent (always 1).', ['version', 'trust_domain_id']),
  uptime: spec('uptime_in_ms', 'Time since the agent started, in milliseconds.'),

  connectionsAccepted: spec('workload_api_connection_total', 'Workload API connections accepted.'),
  connections: spec('workload_api_connections', 'Open Workload API connections.'),
  streams: spec('workload_api_streams', 'Open Workload API server streams.'),
  rpcs: spec('workload_api_rpcs_total', 'Finished Workload API calls by method and gRPC status code.', ['method', 'status']),
  attestation: spec(
    'workload_api_workload_attestation_duration_seconds',
    'Workload attestation of a caller (all phases), in seconds, by gRPC status code.',
    ['status'],
  ),
  attestor: spec(
    'workload_api_workload_attestor_duration_seconds',
    'One workload attestor plugin attesting a caller, in seconds, by plugin and gRPC status code.',
    ['attestor', 'status'],
  ),
  connectionsRefused: spec(
    'workload_api_connections_refused_total',
    'Workload API connections closed before their first request, by reason: protocol_error, frame_too_large, header_block_too_large, request_deadline, too_many_bytes.',
    ['reason'],
  ),
  limitRefusals: spec(
    'workload_api_limit_refusals_total',
    'Workload API connections and calls answered ResourceExhausted by a per-caller limit: connections_per_process, connections_per_pod, calls_per_caller.',
    ['limit'],
  ),
  peerCredentialErrors: spec(
    'workload_api_peer_credential_errors_total',
    'Callers the agent could not identify for lack of a resource of its own (answered Unavailable), by errno name.',
    ['cause'],
  ),
  adminRpcs: spec('admin_api_rpcs_total', 'Finished admin API calls (Delegated Identity, Debug) by method and gRPC status code.', ['method', 'status']),
  attestationPhase: spec(
    'workload_api_attestation_phase_duration_seconds',
    'Workload attestation phases, in seconds: peer_credentials (per connection), attestors and liveness_check (per check).',
    ['phase'],
  ),

  kubeletRequests: spec('k8s_kubelet_requests_total', 'Kubelet /pods requests by outcome.', ['outcome']),
  kubeletRequestDuration: spec('k8s_kubelet_request_duration_seconds', 'Kubelet /pods request duration, in seconds (body included).'),
  podIndexLookups: spec('k8s_pod_index_lookups_total', 'Attestations of containerized callers answered from the shared pod list (hit) or after waiting for a kubelet request (miss).', ['result']),

  syncDuration: spec('manager_sync_duration_seconds', 'Syncs with the server (entries, bundles, minting), in seconds, by gRPC status code.', ['status']),
  lastSync: spec('manager_last_sync_timestamp_seconds', 'When the last successful sync finished, in Unix seconds (0 before the first).'),
  recordMapSize: spec('lru_cache_record_map_size', 'Registration entries cached.'),
  svidMapSize: spec('lru_cache_svid_map_size', 'SVIDs cached, by type (x509, jwt).', ['svid_type']),
  svidsMinted: spec('svids_minted_total', 'SVIDs minted by the server for workloads, by type (x509, jwt).', ['svid_type']),
  svidsRotated: spec('svids_rotated_total', 'Minted SVIDs that replaced a cached one (rotation or changed entry), by type.', ['svid_type']),

  agentSvidExpiration: spec('agent_svid_expiration_timestamp_seconds', 'When the agent SVID expires, in Unix seconds (0 before the agent has one).'),
  agentSvidRotations: spec('agent_svid_rotate_total', 'Agent SVID rotations (re-attestation or RenewAgent) by gRPC status code.', ['status']),
  nodeAttestations: spec('node_attestor_new_svid_total', 'Node attestations (AttestAgent) by gRPC status code.', ['status']),
} as const satisfies Record<string, FamilySpec>;

/** Buckets for per-call latencies: 10 µs to 30 s (a warm attestation takes tens of µs; a kubelet wait up to ~30 s). */
export const CALL_BUCKETS: readonly number[] = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** Buckets for requests to the kubelet and syncs with the server: 1 ms to 60 s. */
export const REQUEST_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The `phase` label values. */
export const PHASES = ['peer_credentials', 'attestors', 'liveness_check'] as const;
