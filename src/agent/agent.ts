/**
 * The agent process, wired: Workload API socket → workload attestation → cache manager
 * ← lifecycle (attest, rotate, sync) ← SPIRE Server API.
 *
 * The socket is bound first, before the server is reached: until the first sync, every
 * workload call is answered with Unavailable instead of the agent crashing or blocking.
 */
import { mkdir } from 'node:fs/promises';
import type { Clock } from '../common/clock.ts';
import { systemClock } from '../common/clock.ts';
import type { Logger } from '../common/logger.ts';
import { ApiError, Code } from '../common/errors.ts';
import { joinTokenAttestor } from '../attestors/node/join-token.ts';
import { k8sPsatAttestor } from '../attestors/node/k8s-psat.ts';
import type { NodeAttestor } from '../attestors/node/node-attestor.ts';
import { createUnixAttestor } from '../attestors/workload/unix.ts';
import { createK8sAttestor } from '../attestors/workload/k8s/k8s.ts';
import { createWorkloadAttestor } from './workload-attestation/attest-workload.ts';
import type { WorkloadAttestorPlugin } from './workload-attestation/workload-attestor.ts';
import { startWorkloadApi, type WorkloadApiServer } from './workload-api/workload-api.ts';
import type { AgentConfig } from './config.ts';
import { CacheManager } from './manager/cache-manager.ts';
import { ServerApi } from './server-client/server-api.ts';
import { AgentLifecycle, readBootstrapBundle, type LifecycleEnd } from './lifecycle.ts';

export interface AgentOptions {
  config: AgentConfig;
  logger: Logger;
  clock?: Clock;
}

/** A running agent. */
export interface RunningAgent {
  readonly manager: CacheManager;
  readonly workloadApi: WorkloadApiServer;
  /** Resolves when the agent stops by itself (e.g. banned) or after stop(). */
  readonly ended: Promise<LifecycleEnd>;
  /** The agent's SPIFFE ID once attested. */
  agentId(): string | undefined;
  /** Ends streams with UNAVAILABLE, closes the socket and the server connection. */
  stop(): Promise<void>;
}

function nodeAttestorFor(config: AgentConfig): NodeAttestor {
  if (config.nodeAttestor === 'join_token') return joinTokenAttestor(config.joinToken ?? '');
  if (config.nodeAttestor === 'k8s_psat' && config.k8sPsat !== undefined) return k8sPsatAttestor(config.k8sPsat);
  throw new ApiError(Code.INVALID_ARGUMENT, `config: unsupported node attestor "${config.nodeAttestor}"`);
}

/** The configured workload attestor plugins, plus what must be closed on stop. */
function workloadPlugins(config: AgentConfig, logger: Logger): { plugins: WorkloadAttestorPlugin[]; close: () => Promise<void> } {
  const plugins: WorkloadAttestorPlugin[] = [];
  const closers: Array<() => Promise<void>> = [];
  const unix = config.workloadAttestors.unix;
  if (unix !== undefined) {
    plugins.push(createUnixAttestor({ discoverWorkloadPath: unix.discoverWorkloadPath, workloadSizeLimit: unix.workloadSizeLimit }));
  }
  const k8s = config.workloadAttestors.k8s;
  if (k8s !== undefined) {
    const plugin = createK8sAttestor({ ...k8s, logger: logger.child({ subsystem: 'k8s_attestor' }) });
    plugins.push(plugin);
    closers.push(() => plugin.close());
  }
  return { plugins, close: async () => void (await Promise.all(closers.map((c) => c()))) };
}

/** Starts the agent: binds the socket at once, then attests and syncs in the background. */
export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const { config, logger } = opts;
  const clock = opts.clock ?? systemClock;
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  for (const warning of config.warnings) logger.warn({}, warning);
  for (const sink of config.telemetry.ignoredSinks) logger.warn({ sink }, `telemetry sink ${sink} is not supported; only Prometheus is exported`);
  const bootstrapRoots = await readBootstrapBundle(config);
  const nodeAttestor = nodeAttestorFor(config);

  let lifecycle: AgentLifecycle | undefined;
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
  });
  const attestors = workloadPlugins(config, logger);
  const workloadApi = await startWorkloadApi({
    socketPath: config.socketPath,
    source: manager,
    attestor: createWorkloadAttestor({ plugins: attestors.plugins, logger: logger.child({ subsystem: 'attestor' }) }),
    logger: logger.child({ subsystem: 'workload_api' }),
    clock,
  });
  logger.info({ socket_path: config.socketPath, trust_domain: config.trustDomain }, 'workload API listening');

  lifecycle = new AgentLifecycle(
    { config, logger: logger.child({ subsystem: 'lifecycle' }), clock, nodeAttestor, manager, api },
    bootstrapRoots,
  );
  const current = lifecycle;
  const ended = current.done.then(async (end) => {
    if (end.reason === 'banned') await workloadApi.close();
    return end;
  });

  return {
    manager,
    workloadApi,
    ended,
    agentId: () => current.agentId,
    async stop() {
      await current.stop().catch(() => undefined);
      await workloadApi.close();
      await attestors.close();
      logger.info({}, 'agent stopped');
    },
  };
}
