/**
 * The agent's metrics on one prom-client Registry of its own (never the global one: tests
 * run several agents in one process). It hands each component the recorders it declared
 * (WorkloadApiMetrics, CacheManagerMetrics, …), bound to their labels up front, and reads
 * sizes and times (connections, cache sizes, agent SVID expiry) from the components only
 * when scraped, so those cost nothing between scrapes.
 *
 * When telemetry is off the agent builds none of this: components get no recorder and skip
 * even their timing reads (see agent.ts).
 */
import { readFileSync } from 'node:fs';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { CallRecorder, StatusCounter } from '../../common/recorders.ts';
import type { K8sAttestorMetrics, KubeletOutcome } from '../../attestors/workload/k8s/metrics.ts';
import type { LifecycleMetrics } from '../lifecycle-metrics.ts';
import type { CacheManagerMetrics } from '../manager/metrics.ts';
import type { WorkloadApiMetrics } from '../workload-api/metrics.ts';
import type { AdminApiMetrics } from '../admin/admin-rpc.ts';
import type { WorkloadAttestorMetrics } from '../workload-attestation/attest-workload.ts';
import type { CounterCell } from './cells.ts';
import { CounterFamily, HistogramFamily, registerGauge, type GaugeReading } from './families.ts';
import { CALL_BUCKETS, METRIC_SPECS as M, REQUEST_BUCKETS } from './metric-specs.ts';
import { callRecorder, statusCounter } from './status-label.ts';

/** What gauges read from the running agent at scrape time. */
export interface GaugeSources {
  connections(): number;
  streams(): number;
  cacheStats(): { readonly entries: number; readonly svids: number; readonly jwts: number };
  /** Clock milliseconds, or undefined before the agent has an SVID. */
  agentSvidExpiresAt(): number | undefined;
  /** Clock milliseconds, or undefined before the first successful sync. */
  lastSyncAt(): number | undefined;
}

/** Options of {@link createAgentMetrics}. */
export interface AgentMetricsOptions {
  trustDomain: string;
  /** The `version` label of `spiffe_agent_started`. Default: this package's version. */
  version?: string;
  /** Also export prom-client's process and Node.js metrics (`process_*`, `nodejs_*`, unprefixed). Default true. */
  defaultMetrics?: boolean;
}

/** The agent's metrics: recorders for each component, and the registry to scrape. */
export interface AgentMetrics {
  readonly registry: Registry;
  readonly workloadApi: WorkloadApiMetrics;
  /** The admin socket's calls. */
  readonly adminApi: AdminApiMetrics;
  readonly workloadAttestor: WorkloadAttestorMetrics;
  readonly cache: CacheManagerMetrics;
  readonly lifecycle: LifecycleMetrics;
  /** The `k8s` attestor's recorders (its series appear once this is called). */
  k8s(): K8sAttestorMetrics;
  /** Connects the scrape-time gauges to the running agent (zero until called). */
  setSources(sources: GaugeSources): void;
  /** The exposition text (Prometheus text format 0.0.4). */
  scrape(): Promise<string>;
  /** The content type of {@link AgentMetrics.scrape}'s text. */
  readonly contentType: string;
}

/** This package's version, read once (the same relative path from src/ and dist/). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Creates the agent's metrics on a fresh registry. */
export function createAgentMetrics(options: AgentMetricsOptions): AgentMetrics {
  const registry = new Registry();
  const startedAt = performance.now();
  const version = options.version ?? packageVersion();
  let sources: GaugeSources | undefined;

  const gauge = (spec: (typeof M)[keyof typeof M], read: () => Iterable<GaugeReading>): void => registerGauge(registry, spec, read);
  gauge(M.started, () => [[[version, `spiffe://${options.trustDomain}`], 1]]);
  gauge(M.uptime, () => [[[], Math.round(performance.now() - startedAt)]]);
  gauge(M.connections, () => [[[], sources?.connections() ?? 0]]);
  gauge(M.streams, () => [[[], sources?.streams() ?? 0]]);
  gauge(M.recordMapSize, () => [[[], sources?.cacheStats().entries ?? 0]]);
  gauge(M.svidMapSize, () => {
    const stats = sources?.cacheStats();
    return [
      [['x509'], stats?.svids ?? 0],
      [['jwt'], stats?.jwts ?? 0],
    ];
  });
  gauge(M.agentSvidExpiration, () => [[[], toUnixSeconds(sources?.agentSvidExpiresAt())]]);
  gauge(M.lastSync, () => [[[], toUnixSeconds(sources?.lastSyncAt())]]);

  const rpcs = new CounterFamily(registry, M.rpcs);
  const attestation = new HistogramFamily(registry, M.attestation, CALL_BUCKETS);
  const attestor = new HistogramFamily(registry, M.attestor, CALL_BUCKETS);
  const phases = new HistogramFamily(registry, M.attestationPhase, CALL_BUCKETS);
  const accepted = new CounterFamily(registry, M.connectionsAccepted);
  const refused = new CounterFamily(registry, M.connectionsRefused);
  const limitRefusals = new CounterFamily(registry, M.limitRefusals);
  const peerCredentialErrors = new CounterFamily(registry, M.peerCredentialErrors);
  const workloadApi: WorkloadApiMetrics = {
    connectionsAccepted: accepted.child(),
    peerCredentialsSeconds: phases.child('peer_credentials'),
    attestorsSeconds: phases.child('attestors'),
    livenessCheckSeconds: phases.child('liveness_check'),
    attestation: callRecorder((status) => attestation.child(status)),
    rpc: (method): StatusCounter => statusCounter((status) => rpcs.child(method, status)),
    gateRefused: (reason) => refused.child(reason),
    limitRefused: (limit) => limitRefusals.child(limit),
    peerCredentialErrors: (cause) => peerCredentialErrors.child(cause),
  };
  const adminRpcs = new CounterFamily(registry, M.adminRpcs);
  const adminApi: AdminApiMetrics = { rpc: (method): StatusCounter => statusCounter((status) => adminRpcs.child(method, status)) };
  const workloadAttestor: WorkloadAttestorMetrics = {
    attestor: (name): CallRecorder => callRecorder((status) => attestor.child(name, status)),
  };

  const minted = new CounterFamily(registry, M.svidsMinted);
  const rotated = new CounterFamily(registry, M.svidsRotated);
  const cache: CacheManagerMetrics = {
    x509Minted: minted.child('x509'),
    jwtMinted: minted.child('jwt'),
    x509Rotated: rotated.child('x509'),
    jwtRotated: rotated.child('jwt'),
  };

  const sync = new HistogramFamily(registry, M.syncDuration, REQUEST_BUCKETS);
  const attestations = new CounterFamily(registry, M.nodeAttestations);
  const rotations = new CounterFamily(registry, M.agentSvidRotations);
  const lifecycle: LifecycleMetrics = {
    sync: callRecorder((status) => sync.child(status)),
    nodeAttestation: statusCounter((status) => attestations.child(status)),
    agentSvidRotation: statusCounter((status) => rotations.child(status)),
  };

  const kubeletRequests = new CounterFamily(registry, M.kubeletRequests);
  const kubeletDuration = new HistogramFamily(registry, M.kubeletRequestDuration, REQUEST_BUCKETS);
  const podIndexLookups = new CounterFamily(registry, M.podIndexLookups);
  let k8s: K8sAttestorMetrics | undefined;
  const k8sMetrics = (): K8sAttestorMetrics => {
    if (k8s !== undefined) return k8s;
    const byOutcome = new Map<KubeletOutcome, CounterCell>();
    const duration = kubeletDuration.child();
    k8s = {
      kubelet: {
        request(outcome, seconds) {
          let cell = byOutcome.get(outcome);
          if (cell === undefined) byOutcome.set(outcome, (cell = kubeletRequests.child(outcome)));
          cell.inc();
          duration.observe(seconds);
        },
      },
      podIndexHits: podIndexLookups.child('hit'),
      podIndexMisses: podIndexLookups.child('miss'),
    };
    return k8s;
  };

  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  return {
    registry,
    workloadApi,
    adminApi,
    workloadAttestor,
    cache,
    lifecycle,
    k8s: k8sMetrics,
    setSources(s) {
      sources = s;
    },
    scrape: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

function toUnixSeconds(ms: number | undefined): number {
  return ms === undefined ? 0 : Math.floor(ms / 1000);
}
