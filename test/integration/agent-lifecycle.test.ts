/**
 * Agent lifecycle against the real server: starting while the server is down, renewing its
 * own SVID with RenewAgent, stopping for good when banned, and stopping with exit 1 and what
 * to do when no retry can help (join token used, trust bundle that does not verify the server).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { generateJoinToken, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { eventually } from '../support/eventually.ts';
import { fetchX509Once } from '../support/workload-api-fixtures.ts';
import { makeTestCa } from '../support/ca-fixtures.ts';

const TD = 'example.org';
const UID = process.getuid?.() ?? 0;
let server: ServerHandle;
const agents: AgentHandle[] = [];

beforeAll(async () => {
  // Agent SVIDs live 30 s (40 s with the CA's 10 s backdating), so they renew within ~12 s.
  server = await startServerProcess({ trustDomain: TD, serverBlock: '  agent_ttl = "30s"' });
});

afterAll(async () => {
  for (const a of agents) await a.cleanup();
  await server?.cleanup();
});

describe('agent lifecycle', () => {
  it('binds its socket while the server is down, answers Unavailable, and serves once the server is back', async () => {
    const joinToken = await generateJoinToken(server);
    expect(await server.stop()).toBe(0);
    const agent = await startAgentProcess({ server, joinToken });
    agents.push(agent);
    const err = (await fetchX509Once(agent.socketPath).catch((e: ServiceError) => e)) as ServiceError;
    expect(err.code).toBe(14);
    // The retry log says nothing is cached rather than claiming to serve from a cache.
    await agent.waitForLog(/"msg":"node attestation failed; nothing cached yet: workloads get Unavailable until the first sync; retrying"/);
    expect(agent.logs()).not.toMatch(/serving from cache|serving \d+ cached/);
    await server.restart();
    const agentId = `spiffe://${TD}/spire/agent/join_token/${joinToken}`;
    await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', `spiffe://${TD}/late`, '-selector', `unix:uid:${UID}`);
    const res = await eventually(() => fetchX509Once(agent.socketPath));
    expect(res.svids.map((s) => s.spiffe_id)).toEqual([`spiffe://${TD}/late`]);
    expect(agent.child?.exitCode).toBeNull();
  }, 60_000);

  it('renews its own SVID with RenewAgent before it expires and keeps syncing with the new one', async () => {
    const joinToken = await generateJoinToken(server);
    const agent = await startAgentProcess({ server, joinToken });
    agents.push(agent);
    const agentId = `spiffe://${TD}/spire/agent/join_token/${joinToken}`;
    await agent.waitForLog(/"msg":"agent SVID rotated"/, 30_000);
    await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', `spiffe://${TD}/after-renewal`, '-selector', `unix:uid:${UID}`, '-hint', 'renewal');
    const res = await eventually(async () => {
      const r = await fetchX509Once(agent.socketPath);
      if (!r.svids.some((s) => s.spiffe_id === `spiffe://${TD}/after-renewal`)) throw new Error('not yet');
      return r;
    });
    expect(res.svids.length).toBeGreaterThan(0);
    expect(agent.logs()).not.toMatch(/"reason":"AGENT_NOT_ACTIVE"/);
  }, 60_000);

  it('deletes its stored identity and exits 1 when banned', async () => {
    const joinToken = await generateJoinToken(server);
    const agent = await startAgentProcess({ server, joinToken });
    agents.push(agent);
    const agentId = `spiffe://${TD}/spire/agent/join_token/${joinToken}`;
    await agent.waitForLog(/"msg":"node attested"/);
    expect(existsSync(join(agent.dataDir, 'agent-data.json'))).toBe(true);
    expect((await server.cli('agent', 'ban', '-spiffeID', agentId)).code).toBe(0);
    expect(await agent.exited()).toBe(1);
    expect(agent.logs()).toMatch(/agent is banned: stored identity deleted, stopping/);
    expect(existsSync(join(agent.dataDir, 'agent-data.json'))).toBe(false);
  }, 60_000);

  it('exits 1 saying to create a new join token when its token was used but its identity was lost', async () => {
    const joinToken = await generateJoinToken(server);
    const agent = await startAgentProcess({ server, joinToken });
    agents.push(agent);
    await agent.waitForLog(/"msg":"node attested"/);
    // A crash before the identity reached the disk: the server has consumed the token.
    await agent.kill();
    await rm(join(agent.dataDir, 'agent-data.json'));
    const from = agent.logs().length;
    await agent.start();
    expect(await agent.exited()).toBe(1);
    const logs = agent.logs().slice(from);
    expect(logs).toMatch(/"level":"error"[^\n]*"msg":"stopping: the server refused node attestation \(INVALID_ARGUMENT: failed to attest: join token does not exist or has already been used\): the join token is unknown to the server or was already used\. Create a new join token on the server \(spiffe-server token generate/);
    expect(logs).toContain(`spiffe-server agent evict -spiffeID spiffe://${TD}/spire/agent/join_token/${joinToken}`);
    // One attempt, one error: no retry loop, and no claim of a cache.
    expect(logs.match(/"msg":"stopping: /g)).toHaveLength(1);
    expect(logs).not.toMatch(/retrying|serving from cache/);
  }, 60_000);

  it('exits 1 naming the trust bundle file when it does not verify the server', async () => {
    const joinToken = await generateJoinToken(server);
    const now = Date.now();
    const foreign = await makeTestCa({ name: 'C=US, O=Elsewhere, CN=foreign root', notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) });
    const bundlePath = join(server.dir, 'foreign-bundle.pem');
    await writeFile(bundlePath, foreign.pem);
    const agent = await startAgentProcess({ server, joinToken, trustBundlePath: bundlePath });
    agents.push(agent);
    expect(await agent.exited()).toBe(1);
    expect(agent.logs()).toMatch(/"msg":"stopping: the trust bundle does not verify the server's certificate \([^)]*\)\. Put the server's current bundle \(spiffe-server bundle show\) in [^ ]*foreign-bundle\.pem, then restart the agent\."/);
    expect(agent.logs()).not.toMatch(/retrying/);
  }, 60_000);
});
