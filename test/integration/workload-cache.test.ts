/**
 * The persisted workload cache with real processes and sockets: an agent killed with -9
 * together with its server serves the same SVIDs at once after a restart, then the first
 * sync replaces them; `KeyManager "memory"` leaves no file, nor does a ban; a damaged file
 * is ignored and rewritten once the server is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { freePort, generateJoinToken, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { healthChecksBlock, startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import type { X509SVIDResponse__Output } from '../../src/gen/X509SVIDResponse.ts';
import { decodeCacheFile } from '../../src/agent/manager/cache-file.ts';
import { eventually } from '../support/eventually.ts';
import { fetchX509Once } from '../support/workload-api-fixtures.ts';

const TD = 'example.org';
const UID = process.getuid?.() ?? 0;
let server: ServerHandle;
const agents: AgentHandle[] = [];

function getJson(port: number, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) as Record<string, unknown> }));
    })
      .on('error', reject)
      .end();
  });
}

async function createEntry(parentId: string, path: string, selector = `unix:uid:${UID}`): Promise<string> {
  const out = await server.cli('entry', 'create', '-parentID', parentId, '-spiffeID', `spiffe://${TD}${path}`, '-selector', selector);
  const id = /Entry ID\s+: (\S+)/.exec(out.stdout)?.[1];
  if (id === undefined) throw new Error(`entry create failed: ${out.stdout}${out.stderr}`);
  return id;
}

/** SIGKILL the server (no clean shutdown) and wait for it to be gone. */
async function killServer(): Promise<void> {
  const proc = server.child;
  if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await exited;
}

const ids = (res: X509SVIDResponse__Output): string[] => res.svids.map((s) => s.spiffe_id).sort();
const savedWith = (n: number) => new RegExp(`"svids":${n},"bytes":\\d+,.*"msg":"workload cache saved"`);

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD });
});

afterAll(async () => {
  for (const a of agents) await a.cleanup();
  // A server left killed has no process to stop: start it so cleanup() can stop it.
  if (server?.child?.signalCode !== null && server?.child?.signalCode !== undefined) await server.restart();
  await server?.cleanup();
});

describe('persisted workload cache', () => {
  it('serves the same SVIDs at once after both the agent and the server were killed, /ready stays false, and the first sync replaces them', async () => {
    const joinToken = await generateJoinToken(server);
    const healthPort = await freePort();
    const agent = await startAgentProcess({
      server,
      joinToken,
      extraTopLevel: healthChecksBlock(healthPort),
    });
    agents.push(agent);
    const agentId = `spiffe://${TD}/spire/agent/join_token/${joinToken}`;
    await createEntry(agentId, '/cached-a');
    const deleted = await createEntry(agentId, '/cached-b');
    await createEntry(agentId, '/other-uid', `unix:uid:${UID + 1}`);
    const before = await eventually(async () => {
      const r = await fetchX509Once(agent.socketPath);
      if (r.svids.length !== 2) throw new Error('not yet');
      return r;
    });
    await agent.waitForLog(savedWith(3));
    // Syncs that change nothing (every 500 ms here) write nothing.
    const saves = (): number => agent.logs().match(/"msg":"workload cache saved"/g)?.length ?? 0;
    const savesBefore = saves();
    await new Promise((r) => setTimeout(r, 2_000));
    expect(saves()).toBe(savesBefore);
    const file = join(agent.dataDir, 'workload-cache.bin');
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    await agent.kill();
    // Deleted while the agent is down: the restarted agent still serves it until its first sync.
    expect((await server.cli('entry', 'delete', '-entryID', deleted)).code).toBe(0);
    await killServer();

    const from = agent.logs().length;
    await agent.start();
    const after = await fetchX509Once(agent.socketPath); // no retry: served from the restored cache
    expect(ids(after)).toEqual([`spiffe://${TD}/cached-a`, `spiffe://${TD}/cached-b`]);
    const bySpiffeId = (r: X509SVIDResponse__Output) => new Map(r.svids.map((s) => [s.spiffe_id, s]));
    for (const [id, svid] of bySpiffeId(after)) {
      expect(svid.x509_svid.equals(bySpiffeId(before).get(id)?.x509_svid as Buffer)).toBe(true);
      expect(svid.bundle.length).toBeGreaterThan(0);
      expect(svid.bundle.equals(bySpiffeId(before).get(id)?.bundle as Buffer)).toBe(true);
    }
    expect(agent.logs().slice(from)).toMatch(/"svids":3,.*"msg":"serving the restored workload cache until the first sync"/);
    const ready = await getJson(healthPort, '/ready');
    expect(ready.body['ready']).toBe(false);
    expect(ready.body['reasons']).toContain('agent has not synced with the server yet');

    await server.restart();
    await eventually(async () => {
      const r = await fetchX509Once(agent.socketPath);
      expect(ids(r)).toEqual([`spiffe://${TD}/cached-a`]);
    });
    await eventually(async () => expect((await getJson(healthPort, '/ready')).body['ready']).toBe(true));
    await agent.waitForLog(savedWith(2), 20_000, from);
  }, 90_000);

  it('writes no cache file with KeyManager "memory", and removes one left by an earlier run', async () => {
    const joinToken = await generateJoinToken(server);
    const agent = await startAgentProcess({ server, joinToken });
    agents.push(agent);
    await agent.waitForLog(/"msg":"node attested"/);
    await agent.kill();
    await writeFile(agent.configPath, (await readFile(agent.configPath, 'utf8')).replace('KeyManager "disk"', 'KeyManager "memory"'));
    const file = join(agent.dataDir, 'workload-cache.bin');
    await writeFile(file, 'stale', { mode: 0o600 });
    const from = agent.logs().length;
    await agent.start();
    expect(agent.logs().slice(from)).toMatch(/"msg":"removed the workload cache file"/);
    expect(existsSync(file)).toBe(false);
    await createEntry(`spiffe://${TD}/spire/agent/join_token/${joinToken}`, '/memory');
    await eventually(async () => expect(ids(await fetchX509Once(agent.socketPath))).toEqual([`spiffe://${TD}/memory`]));
    await new Promise((r) => setTimeout(r, 2_500)); // past the writer's delay
    expect(existsSync(file)).toBe(false);
    expect(agent.logs().slice(from)).not.toMatch(/workload cache saved/);
  }, 60_000);

  it('removes the cache file with the stored identity when the agent is banned', async () => {
    const joinToken = await generateJoinToken(server);
    const agent = await startAgentProcess({ server, joinToken });
    agents.push(agent);
    const agentId = `spiffe://${TD}/spire/agent/join_token/${joinToken}`;
    await createEntry(agentId, '/banned');
    await agent.waitForLog(savedWith(1));
    expect((await server.cli('agent', 'ban', '-spiffeID', agentId)).code).toBe(0);
    expect(await agent.exited()).toBe(1);
    expect(existsSync(join(agent.dataDir, 'agent-data.json'))).toBe(false);
    expect(existsSync(join(agent.dataDir, 'workload-cache.bin'))).toBe(false);
  }, 60_000);

  it('ignores a truncated cache file with a log line, answers Unavailable, and works and rewrites it once the server is back', async () => {
    const joinToken = await generateJoinToken(server);
    const agent = await startAgentProcess({ server, joinToken });
    agents.push(agent);
    await createEntry(`spiffe://${TD}/spire/agent/join_token/${joinToken}`, '/truncated');
    await eventually(async () => expect(ids(await fetchX509Once(agent.socketPath))).toEqual([`spiffe://${TD}/truncated`]));
    await agent.waitForLog(savedWith(1));
    await agent.kill();
    await killServer();
    const file = join(agent.dataDir, 'workload-cache.bin');
    await truncate(file, Math.floor((await stat(file)).size / 2));

    const from = agent.logs().length;
    await agent.start();
    expect(agent.logs().slice(from)).toMatch(/"reason":"truncated: the payload is \d+ bytes, the header says \d+".*"msg":"ignoring the workload cache file; it will be rewritten after the first sync"/);
    const err = (await fetchX509Once(agent.socketPath).catch((e: ServiceError) => e)) as ServiceError;
    expect(err.code).toBe(14);
    expect(err.details).toBe('agent is not ready: it has not synchronized with the server yet');

    await server.restart();
    await eventually(async () => expect(ids(await fetchX509Once(agent.socketPath))).toEqual([`spiffe://${TD}/truncated`]));
    await agent.waitForLog(savedWith(1), 20_000, from);
    const decoded = decodeCacheFile(await readFile(file));
    expect(decoded.ok && decoded.value.svids.map((s) => s.spiffeId)).toEqual([`spiffe://${TD}/truncated`]);
    expect(agent.child?.exitCode).toBeNull();
  }, 90_000);
});
