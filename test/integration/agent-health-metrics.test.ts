/**
 * Health, metrics and shutdown of the real agent process against the real server:
 * `health_checks` and `telemetry { Prometheus }` listeners, the `healthcheck` command's gRPC
 * health check on the socket, and SIGTERM ending open streams with UNAVAILABLE.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect as connectHttp2, constants as http2Constants, type IncomingHttpHeaders } from 'node:http2';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { promisify } from 'node:util';
import type { ServiceError } from '@grpc/grpc-js';
import { NODE, freePort, generateJoinToken, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { AGENT_BIN, healthChecksBlock, startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { eventually } from '../support/eventually.ts';
import { securityHeader, unaryCall, workloadClient } from '../support/workload-api-fixtures.ts';
import type { WorkloadApiClient } from '../../src/common/proto.ts';
import type { X509SVIDResponse__Output } from '../../src/gen/X509SVIDResponse.ts';
import type { JWTSVIDResponse__Output } from '../../src/gen/JWTSVIDResponse.ts';

const execFileAsync = promisify(execFile);
const TD = 'example.org';
const UID = process.getuid?.() ?? 0;

let server: ServerHandle;
let agent: AgentHandle;
let token: string;
let healthPort: number;
let metricsPort: number;

async function get(port: number, path: string): Promise<{ status: number; contentType: string | null; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, contentType: res.headers.get('content-type'), body: await res.text() };
}

/** Series → value, keyed exactly as exposed (`name{label="v",…}`). */
async function scrape(): Promise<Map<string, number>> {
  const { status, body } = await get(metricsPort, '/metrics');
  expect(status).toBe(200);
  const series = new Map<string, number>();
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return series;
}

/** The `workload_api_rpcs_total` series, exactly as exposed. */
async function rpcLines(): Promise<string[]> {
  const { body } = await get(metricsPort, '/metrics');
  return body.split('\n').filter((line) => line.startsWith('spiffe_agent_workload_api_rpcs_total{'));
}

async function healthcheck(): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(NODE, [AGENT_BIN, 'healthcheck', '-socketPath', agent.socketPath], { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Opens FetchX509SVID and resolves with the first message; the stream stays open. */
function openStream(client: WorkloadApiClient): Promise<{ first: X509SVIDResponse__Output; ended: Promise<ServiceError>; cancel: () => void }> {
  return new Promise((resolve, reject) => {
    const stream = client.FetchX509SVID({}, securityHeader());
    let resolveEnd: (err: ServiceError) => void = () => undefined;
    const ended = new Promise<ServiceError>((r) => (resolveEnd = r));
    stream.on('error', (err: ServiceError) => {
      resolveEnd(err);
      reject(err);
    });
    stream.once('data', (first: X509SVIDResponse__Output) => resolve({ first, ended, cancel: () => stream.cancel() }));
  });
}

/**
 * Opens FetchX509SVID on a raw HTTP/2 connection whose stream flow-control window is 0: the
 * agent attests the caller and sends its response headers, but the message cannot leave the
 * agent until the client opens the window, which it never does.
 */
async function openStalledFetch(socketPath: string): Promise<{ responseHeaders: Promise<IncomingHttpHeaders>; cancel: () => void; close: () => void }> {
  const session = connectHttp2('http://localhost', { createConnection: () => connect(socketPath), settings: { initialWindowSize: 0 } });
  session.on('error', () => undefined);
  const stream = session.request({
    ':method': 'POST',
    ':path': '/SpiffeWorkloadAPI/FetchX509SVID',
    'content-type': 'application/grpc',
    te: 'trailers',
    'workload.spiffe.io': 'true',
  });
  stream.on('error', () => undefined);
  stream.end(Buffer.alloc(5)); // one empty, uncompressed X509SVIDRequest
  const responseHeaders = new Promise<IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
  return { responseHeaders, cancel: () => stream.close(http2Constants.NGHTTP2_CANCEL), close: () => session.destroy() };
}

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD });
  token = await generateJoinToken(server);
  healthPort = await freePort();
  metricsPort = await freePort();
  // The agent starts while the server is down, so the state before the first sync is observable.
  expect(await server.stop()).toBe(0);
  agent = await startAgentProcess({
    server,
    joinToken: token,
    extraTopLevel: `${healthChecksBlock(healthPort)}
telemetry {
  Prometheus {
    host = "127.0.0.1"
    port = ${metricsPort}
  }
  Statsd {
    address = "localhost:8125"
  }
}`,
  });
}, 60_000);

afterAll(async () => {
  await agent?.cleanup();
  await server?.cleanup();
});

describe('before the first sync (server down)', () => {
  it('/ready is 500 and says why; /live is 200', async () => {
    expect(await get(healthPort, '/ready')).toEqual({
      status: 500,
      contentType: 'application/json',
      body: '{"ready":false,"reasons":["agent has no identity yet: node attestation has not succeeded","agent has not synced with the server yet"],"agent_id":null,"last_sync":null}',
    });
    expect(await get(healthPort, '/live')).toEqual({
      status: 200,
      contentType: 'application/json',
      body: '{"live":true,"reasons":[],"agent_id":null,"agent_svid_expires_at":null}',
    });
  });

  it('unknown paths are 404 and other methods 405', async () => {
    expect(await get(healthPort, '/healthz')).toEqual({
      status: 404,
      contentType: 'application/json',
      body: '{"error":"not found: health is served at /live and /ready"}',
    });
    expect((await get(metricsPort, '/')).status).toBe(404);
    const post = await fetch(`http://127.0.0.1:${healthPort}/ready`, { method: 'POST' });
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
  });

  it('the healthcheck command reports NOT_SERVING over gRPC health', async () => {
    expect(await healthcheck()).toEqual({ code: 1, stdout: '', stderr: 'Agent is unhealthy: agent returned status "NOT_SERVING"\n' });
  });

  it('logs a warning for the unsupported Statsd sink, and counts failed node attestations', async () => {
    await agent.waitForLog(/"sinks":\["Statsd"\],"msg":"telemetry: only Prometheus is supported; ignoring Statsd"/);
    const series = await eventually(async () => {
      const s = await scrape();
      if ((s.get('spiffe_agent_node_attestor_new_svid_total{status="Unavailable"}') ?? 0) < 1) throw new Error('no failed attestation yet');
      return s;
    });
    expect(series.get('spiffe_agent_node_attestor_new_svid_total{status="OK"}')).toBeUndefined();
    expect(series.get('spiffe_agent_agent_svid_expiration_timestamp_seconds')).toBe(0);
    expect(series.get(`spiffe_agent_started{version="0.1.0",trust_domain_id="spiffe://${TD}"}`)).toBe(1);
  });
});

describe('after the first sync', () => {
  let agentId: string;

  it('/ready turns 200 once the server is back; /live stays 200; healthcheck says healthy', async () => {
    await server.restart();
    agentId = (await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/, 30_000))[1] as string;
    const ready = await eventually(async () => {
      const res = await get(healthPort, '/ready');
      if (res.status !== 200) throw new Error(res.body);
      return res;
    }, 30_000);
    const body = JSON.parse(ready.body) as { last_sync: string };
    expect(Date.parse(body.last_sync)).toBeGreaterThan(Date.now() - 60_000);
    expect(ready.body).toBe(`{"ready":true,"reasons":[],"agent_id":"${agentId}","last_sync":"${body.last_sync}"}`);
    const live = await get(healthPort, '/live');
    expect(live.status).toBe(200);
    expect(JSON.parse(live.body)).toMatchObject({ live: true, reasons: [], agent_id: agentId });
    expect(await healthcheck()).toEqual({ code: 0, stdout: 'Agent is healthy.\n', stderr: '' });
  }, 60_000);

  it('/metrics serves the Prometheus text format with every agent metric', async () => {
    const res = await get(metricsPort, '/metrics');
    expect(res.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    const types = new Map([...res.body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(Object.fromEntries([...types].filter(([name]) => name?.startsWith('spiffe_agent_')))).toEqual({
      spiffe_agent_started: 'gauge',
      spiffe_agent_uptime_in_ms: 'gauge',
      spiffe_agent_workload_api_connections: 'gauge',
      spiffe_agent_workload_api_streams: 'gauge',
      spiffe_agent_lru_cache_record_map_size: 'gauge',
      spiffe_agent_lru_cache_svid_map_size: 'gauge',
      spiffe_agent_agent_svid_expiration_timestamp_seconds: 'gauge',
      spiffe_agent_admin_api_rpcs_total: 'counter',
      spiffe_agent_manager_last_sync_timestamp_seconds: 'gauge',
      spiffe_agent_workload_api_rpcs_total: 'counter',
      spiffe_agent_workload_api_workload_attestation_duration_seconds: 'histogram',
      spiffe_agent_workload_api_workload_attestor_duration_seconds: 'histogram',
      spiffe_agent_workload_api_attestation_phase_duration_seconds: 'histogram',
      spiffe_agent_workload_api_connection_total: 'counter',
      spiffe_agent_workload_api_connections_refused_total: 'counter',
      spiffe_agent_workload_api_limit_refusals_total: 'counter',
      spiffe_agent_workload_api_peer_credential_errors_total: 'counter',
      spiffe_agent_svids_minted_total: 'counter',
      spiffe_agent_svids_rotated_total: 'counter',
      spiffe_agent_manager_sync_duration_seconds: 'histogram',
      spiffe_agent_node_attestor_new_svid_total: 'counter',
      spiffe_agent_agent_svid_rotate_total: 'counter',
      spiffe_agent_k8s_kubelet_requests_total: 'counter',
      spiffe_agent_k8s_kubelet_request_duration_seconds: 'histogram',
      spiffe_agent_k8s_pod_index_lookups_total: 'counter',
    });
    expect(types.get('process_resident_memory_bytes')).toBe('gauge');
    const series = await scrape();
    expect(series.get('spiffe_agent_node_attestor_new_svid_total{status="OK"}')).toBe(1);
    expect(series.get('spiffe_agent_manager_sync_duration_seconds_count{status="OK"}')).toBeGreaterThanOrEqual(1);
    expect(series.get('spiffe_agent_agent_svid_expiration_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000);
    expect(series.get('spiffe_agent_manager_last_sync_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);
  });

  it('attestation, RPC and SVID metrics change when a workload fetches', async () => {
    const before = await scrape();
    const out = await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', `spiffe://${TD}/metrics-workload`, '-selector', `unix:uid:${UID}`);
    expect(out.stderr).toBe('');
    const client = workloadClient(agent.socketPath);
    try {
      const { first, cancel } = await eventually(async () => {
        const opened = await openStream(client);
        if (opened.first.svids.length === 0) throw new Error('no SVIDs yet');
        return opened;
      }, 30_000);
      expect(first.svids.map((s) => s.spiffe_id)).toEqual([`spiffe://${TD}/metrics-workload`]);
      const during = await scrape();
      expect(during.get('spiffe_agent_workload_api_streams')).toBe(1);
      expect(during.get('spiffe_agent_workload_api_connections')).toBe(1);
      expect(during.get('spiffe_agent_lru_cache_svid_map_size{svid_type="x509"}')).toBe(1);
      expect(during.get('spiffe_agent_lru_cache_record_map_size')).toBe(1);
      cancel();

      const jwt = await unaryCall<JWTSVIDResponse__Output>((cb) => client.FetchJWTSVID({ audience: ['metrics-test'] }, securityHeader(), cb));
      expect(jwt.svids).toHaveLength(1);

      const after = await eventually(async () => {
        const s = await scrape();
        if (s.get('spiffe_agent_workload_api_streams') !== 0) throw new Error('stream still open');
        return s;
      });
      const delta = (key: string): number => (after.get(key) ?? 0) - (before.get(key) ?? 0);
      // At least one successful attestation per call; earlier attempts (before the SVID was minted) may add more.
      expect(delta('spiffe_agent_workload_api_workload_attestation_duration_seconds_count{status="OK"}')).toBeGreaterThanOrEqual(2);
      expect(delta('spiffe_agent_workload_api_workload_attestor_duration_seconds_count{attestor="unix",status="OK"}')).toBeGreaterThanOrEqual(2);
      expect(delta('spiffe_agent_workload_api_attestation_phase_duration_seconds_count{phase="attestors"}')).toBeGreaterThanOrEqual(2);
      expect(delta('spiffe_agent_workload_api_attestation_phase_duration_seconds_count{phase="liveness_check"}')).toBeGreaterThanOrEqual(2); // one per attested call
      expect(delta('spiffe_agent_workload_api_attestation_phase_duration_seconds_count{phase="peer_credentials"}')).toBe(1);
      expect(delta('spiffe_agent_workload_api_connection_total')).toBe(1);
      // The client cancelled the stream after its first message (it had its answer: OK); the JWT call succeeded.
      expect(delta('spiffe_agent_workload_api_rpcs_total{method="FetchX509SVID",status="OK"}')).toBeGreaterThanOrEqual(1);
      expect(delta('spiffe_agent_workload_api_rpcs_total{method="FetchX509SVID",status="Canceled"}')).toBe(0);
      expect(delta('spiffe_agent_workload_api_rpcs_total{method="FetchJWTSVID",status="OK"}')).toBe(1);
      expect(delta('spiffe_agent_svids_minted_total{svid_type="x509"}')).toBe(1);
      expect(delta('spiffe_agent_svids_minted_total{svid_type="jwt"}')).toBe(1);
      expect(after.get('spiffe_agent_svids_rotated_total{svid_type="x509"}')).toBe(0);
      expect(after.get('spiffe_agent_lru_cache_svid_map_size{svid_type="jwt"}')).toBe(1);
      // Bounded labels: no SPIFFE ID, PID or entry ID ever appears in a series.
      expect([...after.keys()].filter((k) => /spiffe:\/\/[^"/]+\/|caller_pid|entry_id/.test(k))).toEqual([]);
    } finally {
      client.close();
    }
  }, 60_000);

  it('a FetchX509SVID stream cancelled before its response reached the client is counted Canceled', async () => {
    const before = await rpcLines();
    expect(before.filter((l) => l.includes('status="Canceled"'))).toEqual([]);
    const stalled = await openStalledFetch(agent.socketPath);
    try {
      // The agent has answered (headers sent) but its message is held by the client's window of 0.
      expect(await stalled.responseHeaders).toMatchObject({ ':status': 200, 'content-type': 'application/grpc+proto' });
      stalled.cancel();
      const lines = await eventually(async () => {
        const found = await rpcLines();
        if (!found.some((l) => l.includes('status="Canceled"'))) throw new Error('cancel not counted yet');
        return found;
      });
      // One new series, nothing else changed (the OK count in particular).
      expect(lines).toEqual([...before, 'spiffe_agent_workload_api_rpcs_total{method="FetchX509SVID",status="Canceled"} 1']);
    } finally {
      stalled.close();
    }
  });
});

describe('shutdown', () => {
  it('SIGTERM ends an open stream with UNAVAILABLE, removes the socket and exits 0 by itself', async () => {
    const client = workloadClient(agent.socketPath);
    try {
      const { first, ended } = await openStream(client);
      expect(first.svids).toHaveLength(1);
      // stop() sends SIGTERM and only falls back to SIGKILL (exit code null) after 10 s.
      expect(await agent.stop()).toBe(0);
      const err = await ended;
      expect([err.code, err.details]).toEqual([14, 'workload api: the agent is shutting down']);
      expect(existsSync(agent.socketPath)).toBe(false);
      await expect(fetch(`http://127.0.0.1:${healthPort}/live`)).rejects.toThrow();
      await expect(fetch(`http://127.0.0.1:${metricsPort}/metrics`)).rejects.toThrow();
      expect(agent.logs()).toMatch(/"msg":"agent stopped"/);
    } finally {
      client.close();
    }
  }, 30_000);

  it('SIGTERM exits 0 by itself even while a call to an unresponsive server is in flight', async () => {
    // A TCP listener that accepts and never answers: the agent's AttestAgent call hangs
    // until its 30 s deadline unless shutdown cuts it short.
    const held: Socket[] = [];
    const silent = createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const hung = await startAgentProcess({ server: { ...server, port: (silent.address() as AddressInfo).port }, joinToken: token });
    try {
      await new Promise((r) => setTimeout(r, 500));
      expect(held.length).toBeGreaterThan(0);
      expect(await hung.stop()).toBe(0);
      expect(existsSync(hung.socketPath)).toBe(false);
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
      await hung.cleanup();
    }
  }, 30_000);
});
