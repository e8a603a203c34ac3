/**
 * The agent process, wired: Workload API socket → workload attestation → cache manager
 * ← lifecycle (attest, rotate, sync) ← SPIRE Server API; beside them, the optional health
 * (`health_checks`) and Prometheus (`telemetry`) HTTP listeners.
 *
 * The socket is bound first, before the server is reached: until the first sync, every
 * workload call is answered with Unavailable instead of the agent crashing or blocking,
 * unless the workload cache in data_dir (workload-cache.ts) was restored: it serves at once.
 * The HTTP listeners are bound just before it, so a taken port fails the start before the
 * socket exists. The admin socket (`admin_socket_path`: Delegated Identity API, Debug), when
 * configured, is bound right after the Workload API socket.
 */
import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import type { Clock } from '../common/clock.ts';
import { systemClock } from '../common/clock.ts';
import type { Logger } from '../common/logger.ts';
import { ApiError, Code } from '../common/errors.ts';
import { configPathError, withConfigPath } from '../common/path-errors.ts';
import { joinTokenAttestor } from '../attestors/node/join-token.ts';
import { k8sPsatAttestor } from '../attestors/node/k8s-psat.ts';
import type { NodeAttestor } from '../attestors/node/node-attestor.ts';
import { createUnixAttestor } from '../attestors/workload/unix.ts';
import { createWorkloadAttestor } from './workload-attestation/attest-workload.ts';
import type { WorkloadAttestorPlugin } from '../attestors/workload/workload-attestor-plugin.ts';
import { startWorkloadApi, type WorkloadApiServer } from './workload-api/workload-api.ts';
import { prepareSocketPath } from './workload-api/socket-file.ts';
import type { AgentConfig } from './config.ts';
import { CacheManager } from './manager/cache-manager.ts';
import { ServerApi } from './server-client/server-api.ts';
import { AgentLifecycle, readBootstrapBundle, type LifecycleEnd } from './lifecycle.ts';
import type { HttpListener } from '../common/http-listener.ts';
import { startHealthServer } from './health/health-server.ts';
import type { AgentHealthFacts, KubeletFact } from './health/health-report.ts';
import type { KubeletOutcomeListener } from '../attestors/workload/k8s/metrics.ts';
import type { AgentMetrics } from './telemetry/agent-metrics.ts';
import { startMetricsServer } from './telemetry/metrics-server.ts';
import { discardWorkloadCache, openWorkloadCache, type WorkloadCacheWriter } from './workload-cache.ts';
import { adminCallerLimits, prepareAdminSocketPath, startAdminApi, type AdminApiServer } from './admin/admin-server.ts';
import { delegatedIdentityService } from './admin/delegated-identity.ts';
import { debugService } from './admin/debug-service.ts';
import { agentDebugService } from './admin/agent-debug-service.ts';
import { WorkloadActivity } from './workload-api/workload-activity.ts';
import { describeNearMiss, explainSelectors } from './explain/nearest-miss.ts';
import { readProcessFacts } from './workload-api/peer-credentials.ts';

export interface AgentOptions {
  config: AgentConfig;
  logger: Logger;
  clock?: Clock;
}

/** A running agent. */
export interface RunningAgent {
  readonly manager: CacheManager;
  readonly workloadApi: WorkloadApiServer;
  /** The admin API (`admin_socket_path`), when configured. */
  readonly adminApi: AdminApiServer | undefined;
  /** Resolves when the agent stops by itself (e.g. banned) or after stop(). */
  readonly ended: Promise<LifecycleEnd>;
  /** The agent's SPIFFE ID once attested. */
  agentId(): string | undefined;
  /** The bound health listener (`health_checks`), when enabled. */
  readonly healthListener: { readonly host: string; readonly port: number } | undefined;
  /** The bound metrics listener (`telemetry.Prometheus`), when configured. */
  readonly metricsListener: { readonly host: string; readonly port: number } | undefined;
  /**
   * Ends streams with UNAVAILABLE, closes the socket and the server connection, then the
   * HTTP listeners. Does not wait more than {@link LIFECYCLE_STOP_GRACE_MS} for a call to
   * the server that is in flight.
   */
  stop(): Promise<void>;
}

/** How long stop() waits for the lifecycle's current step (e.g. a sync) to finish. */
export const LIFECYCLE_STOP_GRACE_MS = 1_000;

function nodeAttestorFor(config: AgentConfig): NodeAttestor {
  if (config.nodeAttestor === 'join_token') return joinTokenAttestor(config.joinToken ?? '');
  if (config.nodeAttestor === 'k8s_psat' && config.k8sPsat !== undefined) return k8sPsatAttestor(config.k8sPsat);
  throw new ApiError(Code.INVALID_ARGUMENT, `config: unsupported node attestor "${config.nodeAttestor}"`);
}

/** The configured workload attestor plugins, plus what must be closed on stop. */
async function workloadPlugins(
  config: AgentConfig,
  logger: Logger,
  metrics: AgentMetrics | undefined,
  onKubeletOutcome: KubeletOutcomeListener,
): Promise<{ plugins: WorkloadAttestorPlugin[]; close: () => Promise<void> }> {
  const plugins: WorkloadAttestorPlugin[] = [];
  const closers: Array<() => Promise<void>> = [];
  const unix = config.workloadAttestors.unix;
  if (unix !== undefined) {
    plugins.push(createUnixAttestor({ discoverWorkloadPath: unix.discoverWorkloadPath, workloadSizeLimit: unix.workloadSizeLimit }));
  }
  const k8s = config.workloadAttestors.k8s;
  if (k8s !== undefined) {
    // Loaded only when configured: +0.6 MiB RssAnon (bench/idle-memory.ts; +3.3 MiB when its kubelet client used undici).
    const { createK8sAttestor } = await import('../attestors/workload/k8s/k8s.ts');
    const plugin = createK8sAttestor({ ...k8s, logger: logger.child({ subsystem: 'k8s_attestor' }), metrics: metrics?.k8s(), onKubeletOutcome });
    plugins.push(plugin);
    closers.push(() => plugin.close());
  }
  return { plugins, close: async () => void (await Promise.all(closers.map((c) => c()))) };
}

/**
 * The agent's metrics when `telemetry { Prometheus {…} }` is configured, else undefined.
 *
 * Why undefined rather than metrics on a registry nobody scrapes: components given no
 * recorder skip the recording and even the clock reads around it, no collector runs, and
 * prom-client is not loaded at all (hence the dynamic import).
 */
async function createMetrics(config: AgentConfig): Promise<AgentMetrics | undefined> {
  if (config.telemetry.prometheus === undefined) return undefined;
  const { createAgentMetrics } = await import('./telemetry/agent-metrics.ts');
  return createAgentMetrics({ trustDomain: config.trustDomain });
}

/** Starts the configured HTTP listeners (metrics, health); closes those started if one fails. */
async function startListeners(
  config: AgentConfig,
  logger: Logger,
  metrics: AgentMetrics | undefined,
  facts: () => AgentHealthFacts,
): Promise<{ metrics: HttpListener | undefined; health: HttpListener | undefined }> {
  const started: HttpListener[] = [];
  try {
    let metricsListener: HttpListener | undefined;
    const prometheus = config.telemetry.prometheus;
    if (metrics !== undefined && prometheus !== undefined) {
      metricsListener = await startMetricsServer({ host: prometheus.host, port: prometheus.port, metrics, logger: logger.child({ subsystem: 'telemetry' }) });
      started.push(metricsListener);
    }
    let health: HttpListener | undefined;
    if (config.healthChecks.listenerEnabled) {
      health = await startHealthServer({ config: config.healthChecks, facts, logger: logger.child({ subsystem: 'health' }) });
      started.push(health);
    }
    return { metrics: metricsListener, health };
  } catch (err) {
    await Promise.all(started.map((l) => l.close()));
    throw err;
  }
}

/**
 * Creates data_dir (0700) and checks that the agent can write in it now, not at its first
 * save after attesting (which would fail with a bare errno long after start).
 */
async function prepareDataDir(dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await access(dataDir, constants.W_OK | constants.X_OK);
}

/** Starts the agent: binds the socket at once, then attests and syncs in the background. */
export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const { config, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const startedAt = clock.now();
  // First, before any file is touched: an agent already serving on socket_path may share
  // data_dir with this one. Refused here, this agent exits without touching its socket.
  await withConfigPath('agent.socket_path', config.socketPath, 'socket', () => prepareSocketPath(config.socketPath));
  const adminSocketPath = config.admin.adminSocketPath;
  if (adminSocketPath !== undefined) {
    await withConfigPath('agent.admin_socket_path', adminSocketPath, 'socket', () => prepareAdminSocketPath(adminSocketPath));
  }
  await withConfigPath('agent.data_dir', config.dataDir, 'directory', () => prepareDataDir(config.dataDir));
  const bootstrapRoots = await readBootstrapBundle(config);
  const nodeAttestor = nodeAttestorFor(config);
  if (config.telemetry.ignoredSinks.length > 0) {
    logger.warn({ sinks: config.telemetry.ignoredSinks }, `telemetry: only Prometheus is supported; ignoring ${config.telemetry.ignoredSinks.join(', ')}`);
  }
  const metrics = await createMetrics(config);

  let lifecycle: AgentLifecycle | undefined;
  let workloadApi: WorkloadApiServer | undefined;
  let stopping = false;
  let cacheWriter: WorkloadCacheWriter | undefined;
  let kubelet: KubeletFact | undefined;
  const api = new ServerApi(() => {
    if (lifecycle === undefined) throw new ApiError(Code.UNAVAILABLE, 'agent: not connected to the server yet');
    return lifecycle.clients();
  });
  const manager = new CacheManager({
    trustDomain: config.trustDomain,
    minter: api,
    logger: logger.child({ subsystem: 'cache' }),
    clock,
    x509SvidCacheMaxSize: config.x509SvidCacheMaxSize,
    jwtSvidCacheMaxSize: config.jwtSvidCacheMaxSize,
    metrics: metrics?.cache,
    onPersistentChange: () => cacheWriter?.changed(),
  });
  // Before the socket is bound, so a restarted agent serves its restored SVIDs at once.
  const cacheLog = logger.child({ subsystem: 'workload_cache' });
  cacheWriter = await openWorkloadCache({
    dataDir: config.dataDir,
    trustDomain: config.trustDomain,
    keyManager: config.keyManager,
    manager,
    agentId: () => lifecycle?.agentId,
    logger: cacheLog,
    clock,
  });
  const healthFacts = (): AgentHealthFacts => ({
    now: clock.now(),
    stopping,
    agentId: lifecycle?.agentId,
    agentSvidExpiresAt: lifecycle?.agentSvidExpiresAt,
    synced: manager.synced,
    workloadApiServing: workloadApi?.serving() ?? false,
    lastSyncAt: lifecycle?.lastSyncAt,
    kubelet,
  });
  // A cancelled request (the pod index closing) says nothing about the kubelet.
  const onKubeletOutcome: KubeletOutcomeListener = (outcome, error) => {
    if (outcome !== 'cancelled') kubelet = { outcome, at: clock.now(), error };
  };

  const attestors = await workloadPlugins(config, logger, metrics, onKubeletOutcome);
  let listeners: Awaited<ReturnType<typeof startListeners>>;
  try {
    listeners = await startListeners(config, logger, metrics, healthFacts);
  } catch (err) {
    await attestors.close();
    throw err;
  }
  const closeListeners = async (): Promise<void> => {
    await Promise.all([listeners.metrics?.close(), listeners.health?.close()]);
  };
  // What each connected process does, for `debug workloads`: kept only when the admin API that shows it is on.
  const activity = adminSocketPath !== undefined ? new WorkloadActivity() : undefined;
  const workloadAttestor = createWorkloadAttestor({ plugins: attestors.plugins, logger: logger.child({ subsystem: 'attestor' }), metrics: metrics?.workloadAttestor });
  try {
    workloadApi = await startWorkloadApi({
      socketPath: config.socketPath,
      source: manager,
      attestor: workloadAttestor,
      logger: logger.child({ subsystem: 'workload_api' }),
      clock,
      metrics: metrics?.workloadApi,
      limits: config.workloadApiLimits,
      sds: config.sds,
      activity,
      nearestMiss: (selectors) => {
        const [miss] = explainSelectors(selectors, manager.matchableEntries.values(), { limit: 1 }).nearMisses;
        return miss === undefined ? undefined : describeNearMiss(miss);
      },
    });
  } catch (err) {
    await Promise.all([attestors.close(), closeListeners()]);
    // A refused or failed bind never touched the path (see socket-file.ts); name the setting.
    throw await configPathError(err, 'agent.socket_path', config.socketPath, 'socket');
  }
  const serving = workloadApi;
  logger.info({ socket_path: config.socketPath, trust_domain: config.trustDomain }, 'workload API listening');

  let adminApi: AdminApiServer | undefined;
  if (adminSocketPath !== undefined) {
    const adminLog = logger.child({ subsystem: 'admin_api' });
    try {
      adminApi = await startAdminApi({
        socketPath: adminSocketPath,
        logger: adminLog,
        clock,
        limits: adminCallerLimits(config.workloadApiLimits),
        metrics: metrics?.adminApi,
        services: [
          delegatedIdentityService({ source: manager, attestor: workloadAttestor, authorizedDelegates: config.admin.authorizedDelegates, logger: adminLog }),
          debugService({
            clock,
            logger: adminLog,
            facts: {
              agentSvidChain: () => lifecycle?.agentSvid?.certChain,
              ownRoots: () => manager.ownRoots(),
              cacheCounts: () => {
                const stats = manager.stats();
                return { x509Svids: stats.svids, jwtSvids: stats.jwts };
              },
              lastSyncAt: () => lifecycle?.lastSyncAt,
              startedAt,
            },
          }),
          agentDebugService({
            explainSources: {
              attestor: workloadAttestor,
              manager,
              processFacts: (pid) => {
                const facts = readProcessFacts('/proc', pid);
                return facts.ok ? facts.value : facts.error;
              },
              now: () => performance.now(),
              wallNow: () => clock.now(),
            },
            matchingEntries: (selectors) => manager.matchingEntries(selectors),
            authorizedDelegates: config.admin.authorizedDelegates,
            workloads: activity ?? new WorkloadActivity(),
            logger: adminLog,
          }),
        ],
      });
    } catch (err) {
      await Promise.all([serving.close(), attestors.close(), closeListeners()]);
      throw await configPathError(err, 'agent.admin_socket_path', adminSocketPath, 'socket');
    }
    logger.info({ admin_socket_path: adminSocketPath, authorized_delegates: config.admin.authorizedDelegates }, 'admin API listening');
  }
  const admin = adminApi;

  lifecycle = new AgentLifecycle(
    { config, logger: logger.child({ subsystem: 'lifecycle' }), clock, nodeAttestor, manager, api, metrics: metrics?.lifecycle },
    bootstrapRoots,
  );
  const current = lifecycle;
  metrics?.setSources({
    connections: () => serving.connectionCount(),
    streams: () => serving.streamCount(),
    cacheStats: () => manager.stats(),
    agentSvidExpiresAt: () => current.agentSvidExpiresAt,
    lastSyncAt: () => current.lastSyncAt,
  });
  const ended = current.done.then(async (end) => {
    if (end.reason === 'banned') {
      await Promise.all([serving.close(), admin?.close()]);
      await cacheWriter?.close();
      await discardWorkloadCache(config.dataDir, cacheLog);
    }
    return end;
  });

  let stopped: Promise<void> | undefined;
  return {
    manager,
    workloadApi: serving,
    adminApi: admin,
    ended,
    agentId: () => current.agentId,
    healthListener: listeners.health,
    metricsListener: listeners.metrics,
    stop() {
      stopped ??= (async () => {
        stopping = true;
        // The socket closes at once; the lifecycle may be waiting on a call to the server
        // (deadlines are up to 30 s): give it a moment, not the whole deadline.
        let graceTimer: NodeJS.Timeout | undefined;
        const grace = new Promise<void>((resolve) => (graceTimer = setTimeout(resolve, LIFECYCLE_STOP_GRACE_MS)));
        await Promise.all([serving.close(), admin?.close(), Promise.race([current.stop().catch(() => undefined), grace])]);
        clearTimeout(graceTimer);
        await cacheWriter?.flush();
        await cacheWriter?.close();
        await attestors.close();
        await closeListeners();
        logger.info({}, 'agent stopped');
      })();
      return stopped;
    },
  };
}
