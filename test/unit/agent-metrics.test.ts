import { describe, expect, it } from 'vitest';
import { Code } from '../../src/common/errors.ts';
import { createAgentMetrics } from '../../src/agent/telemetry/agent-metrics.ts';
import { HistogramCell } from '../../src/agent/telemetry/cells.ts';
import { CALL_BUCKETS, METRIC_PREFIX, METRIC_SPECS, PHASES, REQUEST_BUCKETS } from '../../src/agent/telemetry/metric-specs.ts';
import { STATUS_LABELS, statusLabel } from '../../src/agent/telemetry/status-label.ts';
import { createWorkloadAttestor } from '../../src/agent/workload-attestation/attest-workload.ts';
import { createLogger } from '../../src/common/logger.ts';
import { ApiError } from '../../src/common/errors.ts';

/** Series → value, keyed exactly as exposed. */
function parse(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return series;
}

function types(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1] as string, m[2] as string]));
}

const metrics = (): ReturnType<typeof createAgentMetrics> => createAgentMetrics({ trustDomain: 'example.org', version: '9.9.9', defaultMetrics: false });

describe('metric names', () => {
  const specs = Object.values(METRIC_SPECS);

  it('are snake_case, prefixed spiffe_agent_, and unique', () => {
    for (const spec of specs) expect(spec.name).toMatch(/^spiffe_agent_[a-z0-9]+(_[a-z0-9]+)*$/);
    expect(new Set(specs.map((s) => s.name)).size).toBe(specs.length);
    expect(METRIC_PREFIX).toBe('spiffe_agent_');
  });

  it('have Prometheus suffixes that match their type: counters _total, histograms _seconds', async () => {
    const exposed = types(await metrics().scrape());
    const ours = [...exposed].filter(([name]) => name.startsWith(METRIC_PREFIX));
    expect(ours.map(([name]) => name).sort()).toEqual(specs.map((s) => s.name).sort());
    for (const [name, type] of ours) {
      if (type === 'counter') expect(name).toMatch(/_total$/);
      if (type === 'histogram') expect(name).toMatch(/_seconds$/);
      if (type === 'gauge') expect(name).not.toMatch(/_total$/);
    }
  });

  it('use only bounded labels: never a SPIFFE ID, entry ID, PID or pod', () => {
    const allowed = new Set(['version', 'trust_domain_id', 'method', 'status', 'attestor', 'phase', 'outcome', 'result', 'svid_type', 'reason', 'limit', 'cause']);
    for (const spec of specs) for (const label of spec.labelNames ?? []) expect(allowed, `${spec.name}{${label}}`).toContain(label);
  });

  it('follow SPIRE where SPIRE has the metric', () => {
    expect(METRIC_SPECS.attestor.name).toBe('spiffe_agent_workload_api_workload_attestor_duration_seconds');
    expect(METRIC_SPECS.attestation.name).toBe('spiffe_agent_workload_api_workload_attestation_duration_seconds');
    expect(METRIC_SPECS.connections.name).toBe('spiffe_agent_workload_api_connections');
    expect(METRIC_SPECS.svidMapSize.name).toBe('spiffe_agent_lru_cache_svid_map_size');
    expect(METRIC_SPECS.nodeAttestations.name).toBe('spiffe_agent_node_attestor_new_svid_total');
    expect(METRIC_SPECS.agentSvidRotations.name).toBe('spiffe_agent_agent_svid_rotate_total');
    expect(METRIC_SPECS.started.labelNames).toEqual(['version', 'trust_domain_id']);
  });

  it('spell status codes as SPIRE does (Go code names), and map unknown codes to Unknown', () => {
    expect(STATUS_LABELS).toHaveLength(17);
    expect([Code.OK, Code.CANCELLED, Code.PERMISSION_DENIED, Code.UNAVAILABLE, Code.UNAUTHENTICATED].map(statusLabel)).toEqual([
      'OK',
      'Canceled',
      'PermissionDenied',
      'Unavailable',
      'Unauthenticated',
    ]);
    expect(statusLabel(99 as Code)).toBe('Unknown');
  });

  it('have ascending buckets', () => {
    for (const buckets of [CALL_BUCKETS, REQUEST_BUCKETS]) expect([...buckets].sort((a, b) => a - b)).toEqual(buckets);
  });
});

describe('createAgentMetrics', () => {
  it('exposes what components record, with the labels they were bound to', async () => {
    const m = metrics();
    const fetchX509 = m.workloadApi.rpc('FetchX509SVID');
    fetchX509.inc(Code.OK);
    fetchX509.inc(Code.OK);
    fetchX509.inc(Code.PERMISSION_DENIED);
    m.workloadApi.connectionsAccepted.inc();
    m.workloadApi.peerCredentialsSeconds.observe(0.00002);
    m.workloadApi.attestation.record(Code.OK, 0.00004);
    m.workloadApi.attestation.record(Code.UNAVAILABLE, 2);
    m.workloadAttestor.attestor('unix').record(Code.OK, 0.00001);
    m.cache.x509Minted.inc(3);
    m.cache.x509Rotated.inc();
    m.lifecycle.nodeAttestation.inc(Code.OK);
    m.lifecycle.sync.record(Code.OK, 0.02);
    const k8s = m.k8s();
    k8s.kubelet.request('ok', 0.004);
    k8s.kubelet.request('forbidden', 0.002);
    k8s.podIndexHits.inc();
    m.setSources({
      connections: () => 2,
      streams: () => 5,
      cacheStats: () => ({ entries: 4, svids: 3, jwts: 1 }),
      agentSvidExpiresAt: () => 1_800_000_000_500,
      lastSyncAt: () => undefined,
    });

    const s = parse(await m.scrape());
    expect(Object.fromEntries([...s].filter(([k]) => !k.includes('_bucket') && !k.startsWith('spiffe_agent_uptime')))).toEqual({
      'spiffe_agent_started{version="9.9.9",trust_domain_id="spiffe://example.org"}': 1,
      spiffe_agent_workload_api_connections: 2,
      spiffe_agent_workload_api_streams: 5,
      spiffe_agent_lru_cache_record_map_size: 4,
      'spiffe_agent_lru_cache_svid_map_size{svid_type="x509"}': 3,
      'spiffe_agent_lru_cache_svid_map_size{svid_type="jwt"}': 1,
      spiffe_agent_agent_svid_expiration_timestamp_seconds: 1_800_000_000,
      spiffe_agent_manager_last_sync_timestamp_seconds: 0,
      'spiffe_agent_workload_api_rpcs_total{method="FetchX509SVID",status="OK"}': 2,
      'spiffe_agent_workload_api_rpcs_total{method="FetchX509SVID",status="PermissionDenied"}': 1,
      'spiffe_agent_workload_api_workload_attestation_duration_seconds_sum{status="OK"}': 0.00004,
      'spiffe_agent_workload_api_workload_attestation_duration_seconds_count{status="OK"}': 1,
      'spiffe_agent_workload_api_workload_attestation_duration_seconds_sum{status="Unavailable"}': 2,
      'spiffe_agent_workload_api_workload_attestation_duration_seconds_count{status="Unavailable"}': 1,
      'spiffe_agent_workload_api_workload_attestor_duration_seconds_sum{attestor="unix",status="OK"}': 0.00001,
      'spiffe_agent_workload_api_workload_attestor_duration_seconds_count{attestor="unix",status="OK"}': 1,
      ...Object.fromEntries(
        PHASES.flatMap((phase) => [
          [`spiffe_agent_workload_api_attestation_phase_duration_seconds_sum{phase="${phase}"}`, phase === 'peer_credentials' ? 0.00002 : 0],
          [`spiffe_agent_workload_api_attestation_phase_duration_seconds_count{phase="${phase}"}`, phase === 'peer_credentials' ? 1 : 0],
        ]),
      ),
      spiffe_agent_workload_api_connection_total: 1,
      'spiffe_agent_svids_minted_total{svid_type="x509"}': 3,
      'spiffe_agent_svids_minted_total{svid_type="jwt"}': 0,
      'spiffe_agent_svids_rotated_total{svid_type="x509"}': 1,
      'spiffe_agent_svids_rotated_total{svid_type="jwt"}': 0,
      'spiffe_agent_manager_sync_duration_seconds_sum{status="OK"}': 0.02,
      'spiffe_agent_manager_sync_duration_seconds_count{status="OK"}': 1,
      'spiffe_agent_node_attestor_new_svid_total{status="OK"}': 1,
      'spiffe_agent_k8s_kubelet_requests_total{outcome="ok"}': 1,
      'spiffe_agent_k8s_kubelet_requests_total{outcome="forbidden"}': 1,
      spiffe_agent_k8s_kubelet_request_duration_seconds_sum: 0.006,
      spiffe_agent_k8s_kubelet_request_duration_seconds_count: 2,
      'spiffe_agent_k8s_pod_index_lookups_total{result="hit"}': 1,
      'spiffe_agent_k8s_pod_index_lookups_total{result="miss"}': 0,
    });
    // Buckets are cumulative, `le` inclusive, and end with +Inf.
    const bucket = (le: string): number | undefined => s.get(`spiffe_agent_workload_api_workload_attestation_duration_seconds_bucket{status="OK",le="${le}"}`);
    expect([bucket('0.000025'), bucket('0.00005'), bucket('30'), bucket('+Inf')]).toEqual([0, 1, 1, 1]);
    expect(s.get('spiffe_agent_workload_api_workload_attestation_duration_seconds_bucket{status="Unavailable",le="1"}')).toBe(0);
    expect(s.get('spiffe_agent_workload_api_workload_attestation_duration_seconds_bucket{status="Unavailable",le="2.5"}')).toBe(1);
    expect(m.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('keeps each agent on its own registry (several agents in one process)', async () => {
    const a = metrics();
    const b = metrics();
    a.workloadApi.connectionsAccepted.inc();
    expect(parse(await a.scrape()).get('spiffe_agent_workload_api_connection_total')).toBe(1);
    expect(parse(await b.scrape()).get('spiffe_agent_workload_api_connection_total')).toBe(0);
  });

  it('adds the process and Node.js metrics by default', async () => {
    const m = createAgentMetrics({ trustDomain: 'example.org' });
    const exposed = types(await m.scrape());
    expect(exposed.get('process_resident_memory_bytes')).toBe('gauge');
    expect(exposed.get('nodejs_eventloop_lag_seconds')).toBe('gauge');
    expect(parse(await m.scrape()).get('spiffe_agent_started{version="0.1.0",trust_domain_id="spiffe://example.org"}')).toBe(1);
  });

  it('records each workload attestor plugin by status through the fan-out', async () => {
    const m = metrics();
    const attestor = createWorkloadAttestor({
      plugins: [
        { name: 'unix', attest: async () => ['uid:1'] },
        {
          name: 'k8s',
          attest: async () => {
            throw new ApiError(Code.UNAVAILABLE, 'k8s: kubelet unreachable');
          },
        },
      ],
      logger: createLogger({ name: 'test', level: 'silent' }),
      metrics: m.workloadAttestor,
    });
    await attestor.attest(7, new AbortController().signal);
    const s = parse(await m.scrape());
    expect(s.get('spiffe_agent_workload_api_workload_attestor_duration_seconds_count{attestor="unix",status="OK"}')).toBe(1);
    expect(s.get('spiffe_agent_workload_api_workload_attestor_duration_seconds_count{attestor="k8s",status="Unavailable"}')).toBe(1);
  });
});

describe('HistogramCell', () => {
  it('counts a value equal to a bound in that bucket, and ignores negative and NaN values', () => {
    const cell = new HistogramCell([0.1, 1]);
    for (const v of [0.1, 0.5, 1, 3, -1, Number.NaN]) cell.observe(v);
    expect([cell.cumulative(), cell.count, cell.sum]).toEqual([[1, 3, 4], 4, 4.6]);
  });
});
