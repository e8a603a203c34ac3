/**
 * A workload entitled to 5,000 SVIDs, end to end: the real server (5,000 entries created over
 * the admin API's BatchCreateEntry) and the real agent process (entry sync paged by the
 * server, minting in batches of 500). The agent answers with every SVID in one message of
 * about 6 MB, as SPIRE does; a client with a raised receive limit gets them all, a client
 * with gRPC's default 4 MiB limit fails on its own side, and the agent warns once, naming the
 * caller and the SVID count. The agent's own CLI receives them too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { credentials, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { Code } from '../../src/common/errors.ts';
import { unaryCall } from '../../src/common/grpc-client.ts';
import { WorkloadApiClient } from '../../src/common/proto.ts';
import { connectAdmin } from '../../src/server/cli/admin-client.ts';
import type { Entry } from '../../src/gen/spire/api/types/Entry.ts';
import type { X509SVIDResponse__Output } from '../../src/gen/X509SVIDResponse.ts';
import { startServerProcess, generateJoinToken, NODE, type ServerHandle } from '../support/server-process.ts';
import { AGENT_BIN, startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { first, securityHeader } from '../support/workload-api-fixtures.ts';
import { eventually } from '../support/eventually.ts';

const execFileAsync = promisify(execFile);
const TD = 'example.org';
const UID = process.geteuid?.() ?? 0;
const COUNT = 5_000;
const FOUR_MIB = 4 * 1024 * 1024;
const expectedIds = Array.from({ length: COUNT }, (_, i) => `spiffe://${TD}/bulk/w${String(i).padStart(4, '0')}`);

let server: ServerHandle;
let agent: AgentHandle;

function client(maxReceive?: number): WorkloadApiClient {
  return new WorkloadApiClient(`unix://${agent.socketPath}`, credentials.createInsecure(), maxReceive === undefined ? {} : { 'grpc.max_receive_message_length': maxReceive });
}

/** Creates the entries in batches over the admin socket (one CLI process per entry would take minutes). */
async function createEntries(parentId: string): Promise<void> {
  const parent = { trust_domain: TD, path: new URL(parentId).pathname };
  const admin = connectAdmin(server.socketPath);
  try {
    for (let i = 0; i < COUNT; i += 1_000) {
      const entries: Entry[] = expectedIds.slice(i, i + 1_000).map((id) => ({
        spiffe_id: { trust_domain: TD, path: new URL(id).pathname },
        parent_id: parent,
        selectors: [{ type: 'unix', value: `uid:${UID}` }],
      }));
      const res = await unaryCall(admin.entry, 'BatchCreateEntry', { entries });
      expect(res.results.filter((r) => r.status?.code !== Code.OK)).toEqual([]);
    }
  } finally {
    admin.close();
  }
}

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD });
  // The entries exist before the agent starts, so its first sync holds all 5,000 and no
  // partial response (say 4,000 SVIDs, already over 4 MiB) takes the one warning.
  const token = await generateJoinToken(server);
  const agentId = `spiffe://${TD}/spire/agent/join_token/${token}`;
  await createEntries(agentId);
  agent = await startAgentProcess({ server, joinToken: token });
  expect((await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/))[1]).toBe(agentId);
}, 60_000);

/** The raised-limit client and the stream it keeps open through the tests. */
let holder: { client: WorkloadApiClient; call: ClientReadableStream<X509SVIDResponse__Output> } | undefined;

/**
 * Opens a FetchX509SVID stream and resolves with its first message, leaving the stream open:
 * while a stream holds them, the SVIDs beyond x509_svid_cache_max_size (1,000) stay cached, so
 * the later tests are not slowed down by minting 4,000 SVIDs again.
 */
function openStream(c: WorkloadApiClient): Promise<{ first: X509SVIDResponse__Output; call: ClientReadableStream<X509SVIDResponse__Output> }> {
  return new Promise((resolve, reject) => {
    const call = c.FetchX509SVID({}, securityHeader()) as ClientReadableStream<X509SVIDResponse__Output>;
    call.once('data', (res: X509SVIDResponse__Output) => resolve({ first: res, call }));
    call.on('error', (err: ServiceError) => reject(err));
  });
}

afterAll(async () => {
  holder?.call.cancel();
  holder?.client.close();
  await agent?.cleanup();
  await server?.cleanup();
});

describe('a workload entitled to 5,000 SVIDs', () => {
  let response: X509SVIDResponse__Output;

  it('gets all of them in one response over 4 MiB, with a raised receive limit', async () => {
    const big = client(64 * 1024 * 1024);
    // Unavailable until the agent's first sync; then one response, sent once all 5,000 are minted.
    const opened = await eventually(() => openStream(big), 45_000, 250);
    holder = { client: big, call: opened.call };
    response = opened.first;
    const ids = response.svids.map((s) => s.spiffe_id);
    expect(ids).toHaveLength(COUNT);
    expect(new Set(ids)).toEqual(new Set(expectedIds));
    for (const svid of [response.svids[0], response.svids[COUNT - 1]]) {
      const leaf = new X509Certificate(svid?.x509_svid as Buffer);
      expect(leaf.subjectAltName).toBe(`URI:${svid?.spiffe_id}`);
      expect(svid?.x509_svid_key.length).toBeGreaterThan(0);
    }
    const bytes = response.svids.reduce((n, s) => n + s.x509_svid.length + s.x509_svid_key.length + s.bundle.length + s.spiffe_id.length, 0);
    expect(bytes).toBeGreaterThan(FOUR_MIB);
  }, 50_000);

  it('warns once in the agent log, naming the caller PID and the SVID count', async () => {
    const line = await agent.waitForLog(/\{[^\n]*"msg":"workload api: response is over the 4194304-byte default gRPC receive limit[^\n]*\}/);
    const warning = JSON.parse(line[0]) as Record<string, unknown>;
    expect(warning).toMatchObject({ level: 'warn', method: 'FetchX509SVID', caller_pid: process.pid, svids: COUNT, limit_bytes: FOUR_MIB });
    expect(warning['response_bytes']).toBeGreaterThan(FOUR_MIB);
    expect(warning['msg']).toMatch(/client needs a larger receive limit/);
    // Later responses to the same caller within the interval are not warned about again.
    const again = client(64 * 1024 * 1024);
    await first<X509SVIDResponse__Output>(again.FetchX509SVID({}, securityHeader())).finally(() => again.close());
    expect(agent.logs().match(/"msg":"workload api: response is over/g)).toHaveLength(1);
  });

  it('a client with the default 4 MiB limit fails with its own RESOURCE_EXHAUSTED, not a refusal by the agent', async () => {
    const small = client();
    const err = await first(small.FetchX509SVID({}, securityHeader()))
      .catch((e: ServiceError) => e)
      .finally(() => small.close());
    expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    expect((err as ServiceError).details).toMatch(/^Received message larger than max \(\d+ vs 4194304\)$/);
    expect(agent.logs()).not.toMatch(/over the 4194304-byte gRPC message limit/);
  });

  it('the agent CLI (`api fetch x509`) receives all of them', async () => {
    // The CLI shares the held stream's state (same selectors): no minting; -timeout for a loaded machine.
    const { stdout } = await execFileAsync(NODE, [AGENT_BIN, 'api', 'fetch', 'x509', '-timeout', '30s', '-socketPath', agent.socketPath], {
      timeout: 30_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(stdout).toMatch(new RegExp(`^Received ${COUNT} svid`, 'm'));
    expect(stdout.match(/^SPIFFE ID:\t+spiffe:\/\/example\.org\/bulk\//gm)).toHaveLength(COUNT);
  }, 40_000);
});
