/**
 * `health_checks { listener_enabled, bind_address, bind_port, live_path, ready_path }`:
 * SPIRE's HTTP health listener. Each probe evaluates the agent's current state (no cached
 * verdict, unlike SPIRE's 1 s / 1 min check loop) and answers 200 when healthy, 500 when
 * not, with a JSON body saying why (health-report.ts). Other paths are 404.
 */
import type { Logger } from '../../common/logger.ts';
import { startHttpListener, type HttpAnswer, type HttpListener } from '../../common/http-listener.ts';
import type { HealthChecksConfig } from '../config.ts';
import { liveness, readiness, type AgentHealthFacts } from './health-report.ts';

/** Options of {@link startHealthServer}. */
export interface HealthServerOptions {
  config: Pick<HealthChecksConfig, 'bindAddress' | 'bindPort' | 'livePath' | 'readyPath'>;
  /** The agent's current state, read on every probe. */
  facts: () => AgentHealthFacts;
  logger: Logger;
}

function json(ok: boolean, body: unknown): HttpAnswer {
  return { status: ok ? 200 : 500, contentType: 'application/json', body: JSON.stringify(body) };
}

/** Starts the health listener; rejects with ApiError(UNAVAILABLE) when the address is taken. */
export async function startHealthServer(options: HealthServerOptions): Promise<HttpListener> {
  const { config, facts, logger } = options;
  const listener = await startHttpListener({
    name: 'health_checks',
    host: config.bindAddress,
    port: config.bindPort,
    routes: new Map([
      [config.livePath, () => {
        const report = liveness(facts());
        return json(report.live, report);
      }],
      [config.readyPath, () => {
        const report = readiness(facts());
        return json(report.ready, report);
      }],
    ]),
    notFound: () => ({
      status: 404,
      contentType: 'application/json',
      body: JSON.stringify({ error: `not found: health is served at ${config.livePath} and ${config.readyPath}` }),
    }),
    onError: (err) => logger.error({ error: err instanceof Error ? err.message : String(err) }, 'health check failed'),
  });
  logger.info({ address: `${listener.host}:${listener.port}`, live_path: config.livePath, ready_path: config.readyPath }, 'health checks listening');
  return listener;
}
