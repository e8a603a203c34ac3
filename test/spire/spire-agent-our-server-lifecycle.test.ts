/**
 * The real `spire-agent` v1.13.3 against our server over the server's lifecycle: a federated
 * bundle set on our server served by spire-agent for an entry that federates with it, and
 * our server's restart (spire-agent serves from its cache meanwhile and syncs again after).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTestCa } from '../support/ca-fixtures.ts';
import { eventually } from '../support/eventually.ts';
import { generateJoinToken, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { startSpireAgent, type CliResult, type SpireAgentHandle } from './support/spire-processes.ts';

const TD = 'example.org';
const OTHER = 'spiffe://other.org';
const UID = process.getuid?.() ?? 0;
const WORKLOAD = `spiffe://${TD}/workload`;

let server: ServerHandle;
let spireAgent: SpireAgentHandle;
let agentId: string;
let otherRoot: X509Certificate;

function spireAgentApi(...args: string[]): Promise<CliResult> {
  return spireAgent.cli('api', ...args, '-socketPath', spireAgent.socketPath);
}

interface X509Json {
  svids: { spiffe_id: string }[];
  federated_bundles?: Record<string, string>;
}

/** `spire-agent api fetch x509 -output json`, retried until `ok` holds. */
function fetchUntil(ok: (r: X509Json) => boolean, timeoutMs: number): Promise<X509Json> {
  return eventually(async () => {
    const r = await spireAgentApi('fetch', 'x509', '-output', 'json');
    if (r.code !== 0) throw new Error(r.stderr);
    const json = JSON.parse(r.stdout) as X509Json;
    if (!ok(json)) throw new Error(`not yet: ${r.stdout.slice(0, 300)}`);
    return json;
  }, timeoutMs, 250);
}

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD });
  const now = Date.now();
  const ca = await makeTestCa({ name: 'C=US, O=Other, CN=other.org root', notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) });
  otherRoot = new X509Certificate(ca.der);
  const pem = join(server.dir, 'other-org.pem');
  await writeFile(pem, ca.pem);
  const set = await server.cli('bundle', 'set', '-id', OTHER, '-path', pem);
  if (set.code !== 0) throw new Error(`bundle set: ${set.stdout}${set.stderr}`);
  const token = await generateJoinToken(server);
  agentId = `spiffe://${TD}/spire/agent/join_token/${token}`;
  spireAgent = await startSpireAgent({ server, joinToken: token, trustBundlePath: join(server.dir, 'data', 'ca', 'bundle.pem') });
  const created = await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', WORKLOAD, '-selector', `unix:uid:${UID}`, '-federatesWith', OTHER);
  if (created.code !== 0) throw new Error(`entry create: ${created.stdout}${created.stderr}`);
});

afterAll(async () => {
  await spireAgent?.cleanup();
  await server?.cleanup();
});

describe('the real spire-agent against our server: federation, restart', () => {
  it('serves the federated bundle our server holds for an entry that federates with it', async () => {
    const json = await fetchUntil((j) => j.svids.length > 0 && j.federated_bundles !== undefined, 20_000);
    expect(json.svids.map((s) => s.spiffe_id)).toEqual([WORKLOAD]);
    expect(Object.keys(json.federated_bundles ?? {})).toEqual([OTHER]);
    expect(Buffer.from(json.federated_bundles?.[OTHER] as string, 'base64').equals(otherRoot.raw)).toBe(true);
  });

  it('keeps serving while our server is down, and syncs again after its restart', async () => {
    expect(await server.stop()).toBe(0);
    const during = await spireAgentApi('fetch', 'x509', '-output', 'json');
    expect(during.code, during.stderr).toBe(0);
    expect((JSON.parse(during.stdout) as X509Json).svids.map((s) => s.spiffe_id)).toEqual([WORKLOAD]);
    await new Promise((r) => setTimeout(r, 2_000));

    await server.restart();
    const restartedAt = performance.now();
    const later = `spiffe://${TD}/after-restart`;
    const created = await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', later, '-selector', `unix:uid:${UID}`);
    expect(created.code, created.stderr).toBe(0);
    // spire-agent backs off after failed syncs (x1.5 per failure from its 1 s interval).
    const json = await fetchUntil((j) => j.svids.some((s) => s.spiffe_id === later), 30_000);
    console.log(`spire-agent served an entry created after our server's restart ${((performance.now() - restartedAt) / 1000).toFixed(1)} s after the restart`);
    expect(json.svids.map((s) => s.spiffe_id).sort()).toEqual([later, WORKLOAD].sort());
  });
});
