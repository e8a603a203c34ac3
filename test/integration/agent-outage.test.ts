/**
 * Server outages against the real server and agent processes: how soon the agent is in sync
 * again after a long outage, and how long a workload waits for a new JWT-SVID while the
 * server accepts connections but never answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { freePort, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { WorkloadApiClient } from '../../src/common/proto.ts';
import type { X509SVIDResponse__Output } from '../../src/gen/X509SVIDResponse.ts';
import type { JWTSVIDResponse__Output } from '../../src/gen/JWTSVIDResponse.ts';
import { eventually } from '../support/eventually.ts';

const TD = 'example.org';
const UID = process.getuid?.() ?? 0;
const SYNC_INTERVAL_MS = 500;
/**
 * Long enough that, before the fix, the agent's backoff (×1.5 up to 60 s) and the gRPC
 * channel's own reconnect backoff (×1.6 up to 120 s) had both grown to tens of seconds.
 */
const OUTAGE_MS = 60_000;
/** Generous slack over one sync interval: a reconnect, a sync and a loaded machine. */
const RECOVERY_BOUND_MS = SYNC_INTERVAL_MS * 1.1 + 4_500;

let server: ServerHandle;
let agent: AgentHandle;
let client: WorkloadApiClient;
let healthPort: number;

function header(): Metadata {
  const md = new Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

function fetchX509(): Promise<X509SVIDResponse__Output> {
  return new Promise((resolve, reject) => {
    const stream = client.FetchX509SVID({}, header());
    stream.once('data', (res: X509SVIDResponse__Output) => {
      resolve(res);
      stream.cancel();
    });
    stream.on('error', (err: ServiceError) => err.code !== 1 && reject(err));
  });
}

function fetchJwt(audience: string): Promise<JWTSVIDResponse__Output> {
  return new Promise((resolve, reject) => {
    client.FetchJWTSVID({ audience: [audience] }, header(), (err: ServiceError | null, res?: JWTSVIDResponse__Output) => (err ? reject(err) : resolve(res as JWTSVIDResponse__Output)));
  });
}

/** The agent's last successful sync (ms since the epoch), from its readiness endpoint. */
async function lastSync(): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${healthPort}/ready`);
  const body = (await res.json()) as { last_sync: string | null };
  return body.last_sync === null ? undefined : Date.parse(body.last_sync);
}

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD });
  healthPort = await freePort();
  const token = /Token: (\S+)/.exec((await server.cli('token', 'generate')).stdout)?.[1] as string;
  agent = await startAgentProcess({
    server,
    joinToken: token,
    syncInterval: `${SYNC_INTERVAL_MS}ms`,
    extraTopLevel: `health_checks {
  listener_enabled = true
  bind_address = "127.0.0.1"
  bind_port = ${healthPort}
  live_path = "/live"
  ready_path = "/ready"
}`,
  });
  const agentId = `spiffe://${TD}/spire/agent/join_token/${token}`;
  await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', `spiffe://${TD}/outage`, '-selector', `unix:uid:${UID}`);
  client = new WorkloadApiClient(`unix://${agent.socketPath}`, credentials.createInsecure());
  await eventually(async () => {
    if ((await fetchX509()).svids.length === 0) throw new Error('no SVID yet');
  });
}, 60_000);

afterAll(async () => {
  client?.close();
  await agent?.cleanup();
  await server?.cleanup();
});

describe('server outages', () => {
  it('fails a new JWT audience within 5 s, saying so, while the server accepts connections but never answers', async () => {
    expect(await server.stop()).toBe(0);
    // The server's port now accepts TCP connections and never answers (no TLS handshake).
    const held: Socket[] = [];
    const hung: Server = createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => hung.listen(server.port, '127.0.0.1', resolve));
    try {
      // Let the agent's next sync reach the hung listener (it then waits for its 30 s deadline).
      await new Promise((r) => setTimeout(r, 2 * SYNC_INTERVAL_MS));
      const started = Date.now();
      const err = (await fetchJwt('new-audience').catch((e: ServiceError) => e)) as ServiceError;
      const elapsed = Date.now() - started;
      expect(err.code).toBe(14);
      expect(err.details).toMatch(/^could not fetch JWT-SVID: server-client: the server did not answer NewJWTSVID within 5 s/);
      expect(elapsed).toBeGreaterThanOrEqual(4_900);
      expect(elapsed).toBeLessThan(10_000);
      // X.509 SVIDs are still served from the cache meanwhile.
      expect((await fetchX509()).svids.map((s) => s.spiffe_id)).toEqual([`spiffe://${TD}/outage`]);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => hung.close(r));
      await server.restart();
    }
    await eventually(() => fetchJwt('new-audience'), 40_000);
  }, 90_000);

  it(`is in sync again within one sync interval (+ slack) after a ${OUTAGE_MS / 1000} s outage`, async () => {
    const before = await eventually(async () => {
      const at = await lastSync();
      if (at === undefined) throw new Error('not synced yet');
      return at;
    });
    expect(before).toBeGreaterThan(0);
    expect(await server.stop()).toBe(0);
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    const from = agent.logs().length;
    await server.restart();
    const back = Date.now();
    const synced = await eventually(
      async () => {
        const at = await lastSync();
        if (at === undefined || at < back) throw new Error('not synced since the server returned');
        return at;
      },
      60_000,
      50,
    );
    expect(synced - back).toBeLessThan(RECOVERY_BOUND_MS);
    await agent.waitForLog(/"msg":"synced with the server again"/, 5_000, from);
  }, 150_000);
});
