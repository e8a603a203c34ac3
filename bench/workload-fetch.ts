/**
 * Warm-fetch benchmark (MISSION §7): the first X509SVIDResponse for an attested workload with
 * a cached SVID, on an existing connection and on a new one, against a baseline measured in
 * the same run on the same socket: grpc.health.v1 Check (a unary call with no attestation).
 *
 *   node bench/workload-fetch.ts [iterations] [metrics]
 *
 * With `metrics`, the agent runs with `telemetry { Prometheus { port = 0 } }`, so every call
 * records its attestation phases, attestor and RPC metrics (compare with a run without).
 *
 * A real server and agent run in this process (the agent's socket, peer credentials and unix
 * attestor are real); the client is grpc-js in this process too.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { parseConfigText } from '../src/common/config-file.ts';
import { parseServerConfig } from '../src/server/config.ts';
import { startServer } from '../src/server/server.ts';
import { parseAgentConfig } from '../src/agent/config.ts';
import { startAgent } from '../src/agent/agent.ts';
import { HealthClient, WorkloadApiClient } from '../src/common/proto.ts';

const iterations = Number(process.argv[2] ?? 2000);
const withMetrics = process.argv[3] === 'metrics';
const telemetryBlock = withMetrics ? 'telemetry {\n Prometheus {\n host = "127.0.0.1"\n port = 0\n }\n}\n' : '';
const dir = await mkdtemp(join(tmpdir(), 'sna-bench-'));
const silent = pino({ level: 'silent' });
const uid = process.getuid?.() ?? 0;

const serverConfig = parseServerConfig(
  await parseConfigText(
    'server.conf',
    `server {\n trust_domain = "example.org"\n bind_address = "127.0.0.1"\n bind_port = 0\n socket_path = "${dir}/api.sock"\n data_dir = "${dir}/server"\n}\nplugins {\n NodeAttestor "join_token" {\n plugin_data {}\n }\n}\n`,
  ),
);
const server = await startServer({ config: serverConfig, logger: silent });
const token = randomUUID();
server.datastore.createJoinToken({ token, expiresAt: Math.floor(Date.now() / 1000) + 600 });
server.datastore.createEntry({ spiffeId: 'spiffe://example.org/bench', parentId: `spiffe://example.org/spire/agent/join_token/${token}`, selectors: [{ type: 'unix', value: `uid:${uid}` }] });
const socket = join(dir, 'agent.sock');
const agent = await startAgent({
  config: parseAgentConfig(
    await parseConfigText(
      'agent.conf',
      `agent {\n trust_domain = "example.org"\n server_address = "127.0.0.1"\n server_port = ${server.port}\n socket_path = "${socket}"\n data_dir = "${dir}/agent"\n trust_bundle_path = "${serverConfig.dataDir}/ca/bundle.pem"\n join_token = "${token}"\n}\nplugins {\n NodeAttestor "join_token" {\n plugin_data {}\n }\n WorkloadAttestor "unix" {\n plugin_data {}\n }\n}\n${telemetryBlock}`,
    ),
  ),
  logger: silent,
});

const md = new Metadata();
md.set('workload.spiffe.io', 'true');
const target = `unix://${socket}`;

function fetchOnce(client: WorkloadApiClient): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = client.FetchX509SVID({}, md);
    stream.once('data', () => {
      stream.cancel();
      resolve();
    });
    stream.on('error', (err: ServiceError) => (err.code === 1 ? undefined : reject(err)));
  });
}

function healthOnce(client: HealthClient): Promise<void> {
  return new Promise((resolve, reject) => client.Check({ service: '' }, (err) => (err ? reject(err) : resolve())));
}

async function measure(label: string, n: number, op: () => Promise<void>): Promise<{ label: string; p50: number; p99: number; perSecond: number }> {
  for (let i = 0; i < Math.min(200, n); i++) await op();
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op();
    samples.push(performance.now() - t0);
  }
  const total = performance.now() - start;
  samples.sort((a, b) => a - b);
  const at = (q: number): number => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] as number;
  return { label, p50: at(0.5), p99: at(0.99), perSecond: (n / total) * 1000 };
}

// Wait until the agent serves the workload.
const warm = new WorkloadApiClient(target, credentials.createInsecure());
for (;;) {
  try {
    await fetchOnce(warm);
    break;
  } catch {
    await new Promise((r) => setTimeout(r, 100));
  }
}
const health = new HealthClient(target, credentials.createInsecure());
const baseline = await measure('health check, existing connection (baseline)', iterations, () => healthOnce(health));
const existing = await measure('FetchX509SVID first message, existing connection', iterations, () => fetchOnce(warm));
const fresh = await measure('FetchX509SVID first message, new connection', Math.min(iterations, 1000), async () => {
  const c = new WorkloadApiClient(target, credentials.createInsecure());
  await fetchOnce(c);
  c.close();
});

const fmt = (r: { label: string; p50: number; p99: number; perSecond: number }): string =>
  `${r.label.padEnd(52)} p50 ${r.p50.toFixed(3)} ms  p99 ${r.p99.toFixed(3)} ms  ${r.perSecond.toFixed(0)}/s  (p50 ${(r.p50 / baseline.p50).toFixed(2)}× baseline)`;
process.stdout.write(`node ${process.version}, ${iterations} iterations, metrics ${withMetrics ? 'on' : 'off'}\n${[baseline, existing, fresh].map(fmt).join('\n')}\n`);
if (withMetrics && agent.metricsListener !== undefined) {
  // Proof that the measured calls were recorded.
  const text = await (await fetch(`http://127.0.0.1:${agent.metricsListener.port}/metrics`)).text();
  const line = /^spiffe_agent_workload_api_workload_attestation_duration_seconds_count\{status="OK"\} (\d+)$/m.exec(text);
  process.stdout.write(`attestations recorded: ${line?.[1] ?? 'none'}\n`);
}

warm.close();
health.close();
await agent.stop();
await server.stop();
await rm(dir, { recursive: true, force: true });
