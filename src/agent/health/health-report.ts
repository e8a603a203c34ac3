/**
 * The agent's liveness and readiness, as pure functions of what the agent currently knows
 * (no I/O, no clock of their own), so every rule is a table test.
 *
 * Ready: the agent can serve workloads: it holds an unexpired identity, the cache manager
 * has applied a sync from the server, and the Workload API socket is listening.
 * Live: the process is worth keeping: true from start (an agent waiting for its server is
 * not helped by a restart) until it is shutting down, or its own SVID has expired without
 * being rotated (it can no longer reach the server as itself).
 */

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
}

/** The JSON body of the readiness endpoint. */
export interface ReadinessReport {
  readonly ready: boolean;
  /** Why not ready, most fundamental first; empty when ready. */
  readonly reasons: readonly string[];
  readonly agent_id: string | null;
  /** ISO 8601, or null before the first successful sync. */
  readonly last_sync: string | null;
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
} as const;

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
  return { ready: reasons.length === 0, reasons, agent_id: facts.agentId ?? null, last_sync: iso(facts.lastSyncAt) };
}

/** Liveness of the agent. */
export function liveness(facts: AgentHealthFacts): LivenessReport {
  const reasons: string[] = [];
  if (facts.stopping) reasons.push(HEALTH_REASONS.stopping);
  if (svidExpired(facts)) reasons.push(HEALTH_REASONS.svidExpired(iso(facts.agentSvidExpiresAt) as string));
  return { live: reasons.length === 0, reasons, agent_id: facts.agentId ?? null, agent_svid_expires_at: iso(facts.agentSvidExpiresAt) };
}
