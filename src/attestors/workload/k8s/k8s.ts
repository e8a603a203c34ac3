/**
 * The `k8s` workload attestor (SPIRE's `pkg/agent/plugin/workloadattestor/k8s`): the
 * caller's cgroup names its container (and usually its pod); the kubelet's pod list,
 * fetched over verified TLS into a shared index, says which pod that is; the pod and
 * container give the selectors.
 *
 * Differences from SPIRE, on purpose:
 * - when the pod is known but its container is not yet in the pod status (postStart hooks,
 *   sidecars holding the app, spire#3092), the attestor waits the bounded time and then
 *   falls back to pod-level selectors instead of failing (`disable_container_selectors`
 *   still gives pod-level selectors at once, as in SPIRE);
 * - giving up is `Unavailable` (retryable) naming what was missing, not `DeadlineExceeded`;
 * - kubelet answers that will not change by waiting (401, 403, TLS verification, unreadable
 *   credentials) fail the attestation at once instead of after 30 s of retries;
 * - an ephemeral container is refused at once (no fallback): it is not a workload container;
 * - a pod list answers callers it lists for `pod_list_max_age` (10 s), not only for
 *   `poll_retry_interval` (SPIRE refetched for nearly every attestation): labels may be up to
 *   that old; an unknown pod or container still refetches at once (see pod-index.ts).
 */
import type { AttestTrace, TraceValue, WorkloadAttestorPlugin } from '../workload-attestor-plugin.ts';
import { ApiError, Code } from '../../../common/errors.ts';
import { createKubeletClient } from './kubelet-client.ts';
import { locateProcess } from './locate-process.ts';
import { NOOP_K8S_METRICS } from './metrics.ts';
import { resolveK8sOptions, type K8sAttestorOptions } from './options.ts';
import { createPodIndex, systemTimerClock, type PodSnapshot } from './pod-index.ts';
import { findContainer, type ContainerStatusRecord, type PodRecord } from './pod-list.ts';
import { containerSelectorValues, podSelectorValues } from './selectors.ts';

export type { K8sAttestorOptions } from './options.ts';

/** The `k8s` plugin, plus the shutdown of its kubelet connection and timers. */
export interface K8sWorkloadAttestor extends WorkloadAttestorPlugin {
  /** Kubelet `/pods` requests started so far (for tests and benches; the metrics count finished ones). */
  readonly kubeletRequests: number;
  close(): Promise<void>;
}

const PLUGIN_NAME = 'k8s';
/** Kubelet failures that waiting will not fix. */
const PERMANENT = new Set<Code>([Code.UNAUTHENTICATED, Code.PERMISSION_DENIED, Code.FAILED_PRECONDITION, Code.INVALID_ARGUMENT]);
/**
 * How often a kubelet that refused the agent (401, 403, an unverifiable certificate,
 * unreadable credentials) is asked again with no workload waiting: the agent's readiness
 * shows the refusal until a request succeeds, so after the operator's fix (RBAC, CA) it
 * turns ready within this, without a restart. The readiness probe's period in the shipped
 * DaemonSet is also 10 s.
 */
export const KUBELET_REFUSAL_RECHECK_MS = 10_000;
/** Containers remembered as given up on (see `givenUp` below); the oldest is forgotten first. */
const GIVEN_UP_MAX = 1024;

/** What one snapshot says about the caller's container. */
type Match =
  | { readonly kind: 'found'; readonly pod: PodRecord; readonly status: ContainerStatusRecord }
  | { readonly kind: 'missing'; readonly pod: PodRecord | undefined }
  | { readonly kind: 'ephemeral'; readonly pod: PodRecord }
  | { readonly kind: 'duplicate' };

/** Creates the `k8s` workload attestor plugin. Throws ApiError(INVALID_ARGUMENT) on bad options. */
export function createK8sAttestor(options: K8sAttestorOptions): K8sWorkloadAttestor {
  const { logger } = options;
  const config = resolveK8sOptions(options);
  const { nodeName, maxPollAttempts, pollRetryIntervalMs, disableContainerSelectors, procRoot } = config;
  const clock = options.clock ?? systemTimerClock;
  const metrics = options.metrics ?? NOOP_K8S_METRICS;

  const client = createKubeletClient({
    host: nodeName ?? '127.0.0.1',
    port: config.kubeletSecurePort,
    nodeName,
    caPath: config.kubeletCaPath,
    skipVerification: config.skipKubeletVerification,
    tokenPath: config.tokenPath,
    certificatePath: config.certificatePath,
    privateKeyPath: config.privateKeyPath,
    anonymous: config.useAnonymousAuthentication,
    timeoutMs: options.kubeletTimeoutMs,
    logger,
    metrics: metrics.kubelet,
    onOutcome: options.onKubeletOutcome,
    transport: options.transport,
    baseUrl: options.baseUrl,
  });
  const index = createPodIndex({
    fetchPodList: (signal) => client.getPodList(signal),
    minIntervalMs: pollRetryIntervalMs,
    maxAgeMs: config.podListMaxAgeMs,
    clock,
    logger,
    recheck: { intervalMs: KUBELET_REFUSAL_RECHECK_MS, when: (err) => PERMANENT.has(err.code) },
  });
  /**
   * Containers (`<pod UID>/<container ID>`, or the container ID alone) that were missing from
   * every pod list fetched during a full bounded wait, with when that wait ended. Why: a
   * process in a container no pod lists (a `docker run` on the node, a container of a deleted
   * pod) would otherwise restart 30 s of polling at `poll_retry_interval` on every call, so
   * a caller that retries keeps the kubelet at 2 requests/s for as long as it likes. A caller
   * from a container in here is treated like a known one: answered (pod-level selectors or
   * Unavailable, as after the wait) from a snapshot younger than `pod_list_max_age`, else after
   * one shared refetch; never polled for again. The container is still found as soon as a
   * pod list names it, since the snapshot is looked at first. Bounded: the oldest entries go.
   */
  const givenUp = new Map<string, number>();
  // Selector strings are computed once per immutable record, then shared by every caller.
  const podValues = new WeakMap<PodRecord, readonly string[]>();
  const containerValues = new WeakMap<ContainerStatusRecord, readonly string[]>();

  function selectorsOf(pod: PodRecord, status: ContainerStatusRecord | undefined): string[] {
    let values = podValues.get(pod);
    if (values === undefined) podValues.set(pod, (values = podSelectorValues(pod)));
    if (status === undefined || disableContainerSelectors) return values.slice();
    let extra = containerValues.get(status);
    if (extra === undefined) containerValues.set(status, (extra = containerSelectorValues(status)));
    return values.concat(extra);
  }

  function match(snapshot: PodSnapshot, podUid: string | undefined, containerId: string): Match {
    if (podUid !== undefined) {
      const pod = snapshot.pods.get(podUid);
      if (pod === undefined) return { kind: 'missing', pod: undefined };
      const found = findContainer(pod, containerId);
      if (found !== undefined) return { kind: 'found', pod, status: found.status };
      return pod.ephemeralContainerIds.includes(containerId) ? { kind: 'ephemeral', pod } : { kind: 'missing', pod };
    }
    // No pod UID in the cgroup path (cgroup namespaces, CRI-O): search every pod.
    if (snapshot.duplicateContainerIds.has(containerId)) return { kind: 'duplicate' };
    const found = snapshot.containers.get(containerId);
    if (found !== undefined) return { kind: 'found', pod: found.pod, status: found.status };
    for (const pod of snapshot.pods.values()) {
      if (pod.ephemeralContainerIds.includes(containerId)) return { kind: 'ephemeral', pod };
    }
    return { kind: 'missing', pod: undefined };
  }

  /** Selectors for a match, or undefined to keep polling; throws for final failures. */
  function settle(m: Match, pid: number, containerId: string): string[] | undefined {
    switch (m.kind) {
      case 'found':
        return selectorsOf(m.pod, m.status);
      case 'duplicate':
        logger.warn({ caller_pid: pid, container_id: containerId }, 'k8s: two pods found with same container Id');
        throw new ApiError(Code.INTERNAL, `k8s: two pods found with same container Id (${containerId})`);
      case 'ephemeral':
        if (disableContainerSelectors) return selectorsOf(m.pod, undefined);
        throw new ApiError(
          Code.FAILED_PRECONDITION,
          `k8s: container ${containerId} is an ephemeral container of pod ${m.pod.namespace}/${m.pod.name}; ephemeral containers are not attested`,
        );
      case 'missing':
        // As in SPIRE: with container selectors disabled, a known pod is enough.
        if (m.pod !== undefined && disableContainerSelectors) return selectorsOf(m.pod, undefined);
        return undefined;
    }
  }

  async function attest(pid: number, signal: AbortSignal, trace?: AttestTrace): Promise<string[]> {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new ApiError(Code.INVALID_ARGUMENT, `k8s: invalid pid ${pid}`);
    if (signal.aborted) throw cancelled(pid);
    const t0 = trace?.now() ?? 0;
    const { podUid, containerId } = locateProcess(procRoot, pid);
    const t1 = trace?.now() ?? 0;
    trace?.step('cgroup', t1 - t0, containerId === undefined ? { in_container: false } : { pod_uid: podUid ?? '(none in the cgroup path)', container_id: containerId });
    // Not in a container: nothing to say, and no error (the unix attestor still answers).
    if (containerId === undefined) return [];
    if (trace === undefined) return lookup(pid, podUid, containerId, signal, undefined);
    const how: Record<string, TraceValue> = {};
    try {
      return await lookup(pid, podUid, containerId, signal, how);
    } finally {
      trace.step('kubelet lookup', trace.now() - t1, how);
    }
  }

  /**
   * The caller's selectors from the shared pod index. `how`, when given, is told where the
   * answer came from: `source`, the snapshot's `generation` and `age_ms`, `attempts`.
   */
  async function lookup(pid: number, podUid: string | undefined, containerId: string, signal: AbortSignal, how: Record<string, TraceValue> | undefined): Promise<string[]> {
    const key = podUid === undefined ? containerId : `${podUid}/${containerId}`;
    // Hot path: a fresh shared snapshot already lists the container. No promise, no wait.
    const fresh = index.peek(0);
    let seen = 0;
    if (fresh !== undefined) {
      const m = match(fresh, podUid, containerId);
      if (how !== undefined) Object.assign(how, { source: 'pod index (fresh snapshot)', generation: fresh.generation, age_ms: Math.round(clock.now() - fresh.fetchedAt), match: m.kind });
      if (m.kind !== 'missing' || (m.pod !== undefined && disableContainerSelectors)) {
        // A final answer from the index: selectors, or an error (duplicate, ephemeral).
        metrics.podIndexHits.inc();
        if (m.kind === 'found' && givenUp.size > 0) givenUp.delete(key);
        return settle(m, pid, containerId) ?? [];
      }
      const gaveUpAt = givenUp.get(key);
      if (gaveUpAt !== undefined) {
        metrics.podIndexHits.inc();
        if (how !== undefined) Object.assign(how, { source: 'pod index (container given up on earlier)', gave_up_ms_ago: Math.round(clock.now() - gaveUpAt) });
        return afterGivingUp(m, pid, podUid, containerId, gaveUpAt);
      }
      seen = fresh.generation;
    }
    metrics.podIndexMisses.inc();
    if (how !== undefined) how['source'] = 'kubelet request (shared)';

    const started = clock.now();
    const budgetMs = maxPollAttempts * pollRetryIntervalMs;
    let attempts = 0;
    let lastMatch: Match | undefined;
    let lastError: ApiError | undefined;
    while (attempts < maxPollAttempts && (attempts === 0 || clock.now() - started < budgetMs)) {
      attempts++;
      let snapshot: PodSnapshot;
      try {
        snapshot = await index.next(seen, signal);
      } catch (err) {
        if (signal.aborted) throw cancelled(pid);
        const apiErr = err instanceof ApiError ? err : new ApiError(Code.UNAVAILABLE, `k8s: ${String(err)}`);
        if (how !== undefined) Object.assign(how, { attempts, last_error: apiErr.message });
        if (PERMANENT.has(apiErr.code)) throw apiErr;
        lastError = apiErr;
        continue;
      }
      if (signal.aborted) throw cancelled(pid);
      lastError = undefined;
      seen = snapshot.generation;
      const m = match(snapshot, podUid, containerId);
      if (how !== undefined) Object.assign(how, { attempts, generation: snapshot.generation, age_ms: Math.round(clock.now() - snapshot.fetchedAt), match: m.kind });
      const done = settle(m, pid, containerId);
      if (done !== undefined) {
        if (m.kind === 'found' && givenUp.size > 0) givenUp.delete(key);
        return done;
      }
      lastMatch = m;
      // Given up on (by this or another caller) and still missing from a current list: no more polling.
      const gaveUpAt = givenUp.get(key);
      if (gaveUpAt !== undefined && m.kind === 'missing') return afterGivingUp(m, pid, podUid, containerId, gaveUpAt);
    }

    // Missing from every list the kubelet gave during the whole wait: remember it (see givenUp).
    if (lastError === undefined && lastMatch?.kind === 'missing') {
      givenUp.delete(key);
      givenUp.set(key, clock.now());
      if (givenUp.size > GIVEN_UP_MAX) givenUp.delete(givenUp.keys().next().value as string);
    }
    const waited = `${attempts} attempt${attempts === 1 ? '' : 's'} over ${((clock.now() - started) / 1000).toFixed(1)}s`;
    // The pod as the latest pod list showed it (even if a later fetch failed): the cgroup
    // path proves the process runs in it, so its pod-level selectors are sound.
    const pod = lastMatch?.kind === 'missing' ? lastMatch.pod : undefined;
    if (pod !== undefined) {
      logger.info(
        { caller_pid: pid, pod_uid: pod.uid, pod: `${pod.namespace}/${pod.name}`, container_id: containerId, attempts, waited_ms: clock.now() - started },
        'k8s: container not in the pod status after the bounded wait; attesting with pod-level selectors only',
      );
      return selectorsOf(pod, undefined);
    }
    if (lastError !== undefined) {
      throw new ApiError(Code.UNAVAILABLE, `k8s: no pod list from the kubelet for ${describeCaller(podUid, containerId)} after ${waited}: ${lastError.message}`);
    }
    throw new ApiError(Code.UNAVAILABLE, `k8s: ${describeMissing(podUid, containerId)} not in the kubelet pod list after ${waited}`);
  }

  /**
   * The answer for a container given up on that a current pod list still does not name:
   * what the bounded wait ended with (pod-level selectors when the pod is listed, else
   * Unavailable), at once.
   */
  function afterGivingUp(m: Match & { kind: 'missing' }, pid: number, podUid: string | undefined, containerId: string, gaveUpAt: number): string[] {
    const ago = `${((clock.now() - gaveUpAt) / 1000).toFixed(1)}s ago`;
    if (m.pod !== undefined) {
      logger.debug(
        { caller_pid: pid, pod_uid: m.pod.uid, container_id: containerId, gave_up_ms_ago: clock.now() - gaveUpAt },
        'k8s: container still not in the pod status (given up on after a bounded wait); pod-level selectors only',
      );
      return selectorsOf(m.pod, undefined);
    }
    throw new ApiError(
      Code.UNAVAILABLE,
      `k8s: ${describeMissing(podUid, containerId)} not in the kubelet pod list; not polled for again: it was missing from every list during a full bounded wait that ended ${ago}`,
    );
  }

  async function attestPod(podUid: string, containerName: string | undefined, signal: AbortSignal, trace?: AttestTrace): Promise<string[]> {
    const t0 = trace?.now() ?? 0;
    // A fresh snapshot if there is one, else one shared kubelet request: as a caller would.
    const fresh = index.peek(0);
    const snapshot = fresh ?? (await index.next(0, signal));
    trace?.step('kubelet lookup', (trace?.now() ?? 0) - t0, {
      source: fresh !== undefined ? 'pod index (fresh snapshot)' : 'kubelet request (shared)',
      generation: snapshot.generation,
      age_ms: Math.round(clock.now() - snapshot.fetchedAt),
    });
    const pod = snapshot.pods.get(podUid);
    if (pod === undefined) throw new ApiError(Code.NOT_FOUND, `k8s: pod ${podUid} is not in the kubelet pod list of this node`);
    if (containerName === undefined) return selectorsOf(pod, undefined);
    const status = [...pod.containerStatuses, ...pod.initContainerStatuses].find((c) => c.name === containerName);
    if (status === undefined) {
      const names = [...pod.containerStatuses, ...pod.initContainerStatuses].map((c) => c.name);
      throw new ApiError(Code.NOT_FOUND, `k8s: pod ${pod.namespace}/${pod.name} has no container "${containerName}" in its status (it has: ${names.join(', ') || 'none yet'})`);
    }
    return selectorsOf(pod, status);
  }

  async function close(): Promise<void> {
    index.close();
    await client.close();
  }

  return {
    name: PLUGIN_NAME,
    attest,
    attestPod,
    get kubeletRequests() {
      return index.fetches;
    },
    close,
  };
}

function describeCaller(podUid: string | undefined, containerId: string): string {
  return podUid !== undefined ? `container ${containerId} of pod ${podUid}` : `container ${containerId} (the cgroup path names no pod UID, so every pod was searched)`;
}

function describeMissing(podUid: string | undefined, containerId: string): string {
  return podUid !== undefined ? `pod ${podUid} (of container ${containerId}) is` : `${describeCaller(podUid, containerId)} is`;
}

function cancelled(pid: number): ApiError {
  return new ApiError(Code.CANCELLED, `k8s: attestation of process ${pid} cancelled`);
}
