/**
 * The agent's liveness and readiness, as pure functions of what the agent currently knows
 * (no I/O, no clock of their own), so every rule is a table test.
 *
 * Ready: the agent can serve workloads: it holds an unexpired identity, the cache manager
 * has applied a sync from the server, the Workload API socket is listening, and (with the
 * `k8s` workload attestor) the kubelet did not refuse its last request.
 * Live: the process is worth keeping: true from start (an agent waiting for its server is
 * not helped by a restart) until it is shutting down, or its own SVID has expired without
 * being rotated (it can no longer reach the server as itself).
 */

import type { KubeletOutcome } from '../../attestors/workload/k8s/metrics.ts';

/** How the `k8s` workload attestor's last kubelet `/pods` request ended. */
export interface KubeletFact {
  readonly outcome: KubeletOutcome;
  /** Clock milliseconds when it ended. */
  readonly at: number;
  /** The error message of a failed request (for refusals it names the fix); undefined for `ok`. */
  readonly error: string | undefined;
}

/** What the checks look at, read fresh for every probe. */
export interface AgentHealthFacts {
  /** Clock milliseconds. */
  readonly now: number;
  readonly stopping: boolean;
  readonly agentId: string | undefined;
  /** Clock milliseconds. */
  readonly agentSvidExpiresAt: number | undefined;
  /** The cache manager has applied a sync (bundles and entries). */
  readonly synced: boolean;
  readonly workloadApiServing: boolean;
  /** Clock milliseconds of the last successful sync. */
  readonly lastSyncAt: number | undefined;
  /** The last kubelet request; undefined without the `k8s` attestor or before its first request. */
  readonly kubelet: KubeletFact | undefined;
}

/** The `kubelet` member of the readiness body. */
export interface KubeletReport {
  readonly last_request: KubeletOutcome;
  /** ISO 8601. */
  readonly at: string;
  /** Present when the request failed. */
  readonly error?: string;
}

/** The JSON body of the readiness endpoint. */
export interface ReadinessReport {
  readonly ready: boolean;
  /** Why not ready, most fundamental first; empty when ready. */
  readonly reasons: readonly string[];
  readonly agent_id: string | null;
  /** ISO 8601, or null before the first successful sync. */
  readonly last_sync: string | null;
  /** The last kubelet request; absent without the `k8s` attestor or before its first request. */
  readonly kubelet?: KubeletReport;
}

/** The JSON body of the liveness endpoint. */
export interface LivenessReport {
  readonly live: boolean;
  /** Why not live; empty when live. */
  readonly reasons: readonly string[];
  readonly agent_id: string | null;
  /** ISO 8601, or null before the agent has an SVID. */
  readonly agent_svid_expires_at: string | null;
}

/** The reason texts (stable: probes and dashboards may match them). */
export const HEALTH_REASONS = {
  stopping: 'agent is shutting down',
  noIdentity: 'agent has no identity yet: node attestation has not succeeded',
  notSynced: 'agent has not synced with the server yet',
  notServing: 'the Workload API socket is not listening',
  svidExpired: (expiredAt: string): string => `agent SVID expired at ${expiredAt} and was not rotated`,
  kubeletRefused: (error: string): string => `workload attestation cannot read pods from the kubelet: ${error}`,
} as const;

/**
 * Kubelet outcomes that make the agent not ready: the kubelet refused the agent's
 * credentials (401) or permissions (403), its certificate failed verification, or the
 * credential files are unreadable. No `k8s` workload can be attested until someone fixes
 * the configuration or RBAC (the error says what), and waiting does not help (k8s.ts fails
 * such attestations at once), so readiness shows it to what watches it (`kubectl get pods`,
 * alerts, a DaemonSet rollout). It lasts until a request succeeds: the k8s attestor asks
 * the kubelet again every KUBELET_REFUSAL_RECHECK_MS (10 s) while it refuses, whether or
 * not a workload needs a pod list, so the agent is ready again within about 10 s of the
 * fix, without a restart.
 *
 * Why not `unreachable`, `timeout` or `http_error`: they are what a kubelet restart, an
 * overloaded node or an apiserver hiccup (the kubelet's webhook authorization) look like
 * for seconds, and the attestor retries them itself within its bounded wait. Flipping
 * readiness would turn every such blip into an unready agent with nothing for anyone to
 * fix; and it is the kubelet that runs readiness probes, so while it is down nobody reads
 * this answer anyway. They remain visible in the body's `kubelet` member.
 */
const KUBELET_REFUSALS: ReadonlySet<KubeletOutcome> = new Set<KubeletOutcome>(['unauthorized', 'forbidden', 'tls_error', 'credentials_error']);

function kubeletReport(fact: KubeletFact): KubeletReport {
  const at = new Date(fact.at).toISOString();
  return fact.error === undefined ? { last_request: fact.outcome, at } : { last_request: fact.outcome, at, error: fact.error };
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

function svidExpired(facts: AgentHealthFacts): boolean {
  return facts.agentSvidExpiresAt !== undefined && facts.now >= facts.agentSvidExpiresAt;
}

/** Readiness of the agent. */
export function readiness(facts: AgentHealthFacts): ReadinessReport {
  const reasons: string[] = [];
  if (facts.stopping) reasons.push(HEALTH_REASONS.stopping);
  if (facts.agentId === undefined) reasons.push(HEALTH_REASONS.noIdentity);
  else if (svidExpired(facts)) reasons.push(HEALTH_REASONS.svidExpired(iso(facts.agentSvidExpiresAt) as string));
  if (!facts.synced) reasons.push(HEALTH_REASONS.notSynced);
  if (!facts.workloadApiServing) reasons.push(HEALTH_REASONS.notServing);
  const { kubelet } = facts;
  if (kubelet !== undefined && KUBELET_REFUSALS.has(kubelet.outcome)) reasons.push(HEALTH_REASONS.kubeletRefused(kubelet.error ?? kubelet.outcome));
  const report = { ready: reasons.length === 0, reasons, agent_id: facts.agentId ?? null, last_sync: iso(facts.lastSyncAt) };
  return kubelet === undefined ? report : { ...report, kubelet: kubeletReport(kubelet) };
}

/** Liveness of the agent. */
export function liveness(facts: AgentHealthFacts): LivenessReport {
  const reasons: string[] = [];
  if (facts.stopping) reasons.push(HEALTH_REASONS.stopping);
  if (svidExpired(facts)) reasons.push(HEALTH_REASONS.svidExpired(iso(facts.agentSvidExpiresAt) as string));
  return { live: reasons.length === 0, reasons, agent_id: facts.agentId ?? null, agent_svid_expires_at: iso(facts.agentSvidExpiresAt) };
}
