/**
 * `telemetry { Prometheus { host, port } }`: serves `GET /metrics` (Prometheus text format,
 * with prom-client's content type) on its own HTTP listener. Every other path is 404.
 */
import type { Logger } from '../../common/logger.ts';
import { startHttpListener, type HttpListener } from '../../common/http-listener.ts';
import type { AgentMetrics } from './agent-metrics.ts';

/** The path Prometheus scrapes. */
export const METRICS_PATH = '/metrics';

/** Options of {@link startMetricsServer}. */
export interface MetricsServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  metrics: Pick<AgentMetrics, 'scrape' | 'contentType'>;
  logger: Logger;
}

/** Starts the metrics listener; rejects with ApiError(UNAVAILABLE) when the address is taken. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<HttpListener> {
  const { metrics, logger } = options;
  const listener = await startHttpListener({
    name: 'telemetry.Prometheus',
    host: options.host,
    port: options.port,
    routes: new Map([[METRICS_PATH, async () => ({ status: 200, contentType: metrics.contentType, body: await metrics.scrape() })]]),
    notFound: () => ({ status: 404, contentType: 'text/plain; charset=utf-8', body: `not found: metrics are served at ${METRICS_PATH}\n` }),
    onError: (err) => logger.error({ error: err instanceof Error ? err.message : String(err) }, 'telemetry: collecting metrics failed'),
  });
  logger.info({ address: `${listener.host}:${listener.port}`, path: METRICS_PATH }, 'prometheus metrics listening');
  return listener;
}
