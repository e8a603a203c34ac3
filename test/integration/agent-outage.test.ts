/**
 * Server outages against the real server and agent processes: how soon the agent is in sync
 * again after a long outage, and how long a workload waits for a new JWT-SVID while the
 * server accepts connections but never answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import type { ServiceError } from '@grpc/grpc-js';
import { freePort, generateJoinToken, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { healthChecksBlock, startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import type { WorkloadApiClient } from '../../src/common/proto.ts';
import type { X509SVIDResponse__Output } from '../../src/gen/X509SVIDResponse.ts';
import type { JWTSVIDResponse__Output } from '../../src/gen/JWTSVIDResponse.ts';
import { eventually } from '../support/eventually.ts';
import { first, securityHeader, unaryCall, workloadClient } from '../support/workload-api-fixtures.ts';

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

function fetchX509(): Promise<X509SVIDResponse__Output> {
  return first(client.FetchX509SVID({}, securityHeader()));
}

function fetchJwt(audience: string): Promise<JWTSVIDResponse__Output> {
  return unaryCall((cb) => client.FetchJWTSVID({ audience: [audience] }, securityHeader(), cb));
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
  const token = await generateJoinToken(server);
  agent = await startAgentProcess({
    server,
    joinToken: token,
    syncInterval: `${SYNC_INTERVAL_MS}ms`,
    extraTopLevel: healthChecksBlock(healthPort),
  });
  const agentId = `spiffe://${TD}/spire/agent/join_token/${token}`;
  await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', `spiffe://${TD}/outage`, '-selector', `unix:uid:${UID}`);
  client = workloadClient(agent.socketPath);
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
      // The deadline, not an earlier failure, ended the call (the upper side is the message's
      // "within 5 s" and the test's own timeout: no wall-clock ceiling on a shared machine).
      expect(elapsed).toBeGreaterThanOrEqual(4_900);
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
