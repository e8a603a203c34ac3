/**
 * The real `spire-agent` v1.13.3 against our server (`bin/spiffe-server.js`): join_token
 * attestation, X.509 and JWT fetches through `spire-agent api` on spire-agent's own socket,
 * rotation and entry deletion; and the real `spire-server` CLI against our admin socket
 * (`entry create|show|count|delete`, `agent list`, `bundle show`), outputs compared exactly.
 * Then a second, small pair: our server with RSA keys (`ca_key_type` and `jwt_key_type`
 * `rsa-2048`, as the AWS setups use) and a second spire-agent: attest, fetch, validate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { generateJoinToken, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { eventually } from '../support/eventually.ts';
import { runBinary, spireBinaries, startSpireAgent, type CliResult, type SpireAgentHandle } from './support/spire-processes.ts';
import { workloadClient } from '../support/workload-api-fixtures.ts';
import { watchX509, type X509Watch } from './support/workload.ts';
import type { WorkloadApiClient } from '../../src/common/proto.ts';

const TD = 'example.org';
const UID = process.getuid?.() ?? 0;
const WORKLOAD = `spiffe://${TD}/workload`;
const X509_TTL_S = 30;
const SYNC_INTERVAL_MS = 1_000;

let server: ServerHandle;
let spireAgent: SpireAgentHandle;
let spireServerBin: string;
let agentId: string;
let entryId: string;
let bundlePath: string;
let client: WorkloadApiClient;
let watch: X509Watch | undefined;
/** The agent SVID serial our server listed first. */
let firstSerial: string;

/** The real `spire-server` CLI against our admin socket (TZ=UTC: it prints local times). */
function spireServerCli(...args: string[]): Promise<CliResult> {
  return runBinary(spireServerBin, [...args, '-socketPath', server.socketPath], 20_000, { TZ: 'UTC' });
}

async function spireServerJson<T>(...args: string[]): Promise<T> {
  const r = await spireServerCli(...args, '-output', 'json');
  if (r.code !== 0) throw new Error(`spire-server ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

function spireAgentApi(...args: string[]): Promise<CliResult> {
  return spireAgent.cli('api', ...args, '-socketPath', spireAgent.socketPath);
}

interface SpireId {
  trust_domain: string;
  path: string;
}
const idString = (id: SpireId): string => `spiffe://${id.trust_domain}${id.path}`;

beforeAll(async () => {
  spireServerBin = (await spireBinaries()).server;
  // agent_ttl 60s: spire-agent renews its own SVID (RenewAgent) while the suite runs.
  server = await startServerProcess({ trustDomain: TD, serverBlock: '  agent_ttl = "60s"' });
  bundlePath = join(server.dir, 'data', 'ca', 'bundle.pem');
  const token = await generateJoinToken(server);
  agentId = `spiffe://${TD}/spire/agent/join_token/${token}`;
  spireAgent = await startSpireAgent({ server, joinToken: token, trustBundlePath: bundlePath, syncInterval: `${SYNC_INTERVAL_MS}ms` });
  client = workloadClient(spireAgent.socketPath);
});

afterAll(async () => {
  watch?.close();
  client?.close();
  await spireAgent?.cleanup();
  await server?.cleanup();
});

describe('the real spire-agent against our server', () => {
  it('attests with join_token; spire-server agent list (on our admin socket) shows exactly that agent', async () => {
    expect(spireAgent.logs()).toMatch(new RegExp(`msg="Node attestation was successful"[^\\n]*spiffe_id="${agentId}"`));
    const json = await spireServerJson<{ agents: { id: SpireId; attestation_type: string; x509svid_serial_number: string; x509svid_expires_at: string; banned: boolean; can_reattest: boolean }[] }>('agent', 'list');
    expect(json.agents.map((a) => [idString(a.id), a.attestation_type, a.banned, a.can_reattest])).toEqual([[agentId, 'join_token', false, false]]);
    const a = json.agents[0] as (typeof json.agents)[number];
    firstSerial = a.x509svid_serial_number;
    const expires = Number(a.x509svid_expires_at);
    expect(expires * 1000).toBeGreaterThan(Date.now());
    const pretty = await spireServerCli('agent', 'list');
    expect(pretty.code, pretty.stderr).toBe(0);
    expect(pretty.stdout).toBe(
      'Found 1 attested agent:\n\n' +
        `SPIFFE ID         : ${agentId}\n` +
        'Attestation type  : join_token\n' +
        `Expiration time   : ${goTimeUtc(expires)}\n` +
        `Serial number     : ${a.x509svid_serial_number}\n` +
        'Can re-attest     : false\n\n',
    );
  });

  it('spire-server entry create, show and count on our admin socket', async () => {
    const created = await spireServerJson<{ results: { status: { code: number }; entry: { id: string } }[] }>(
      'entry', 'create', '-parentID', agentId, '-spiffeID', WORKLOAD, '-selector', `unix:uid:${UID}`, '-x509SVIDTTL', String(X509_TTL_S),
    );
    expect(created.results.map((r) => r.status.code)).toEqual([0]);
    entryId = created.results[0]?.entry.id as string;

    const count = await spireServerCli('entry', 'count');
    expect([count.code, count.stdout]).toEqual([0, '1 registration entry\n']);
    const show = await spireServerCli('entry', 'show');
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toBe(
      'Found 1 entry\n' +
        `Entry ID         : ${entryId}\n` +
        `SPIFFE ID        : ${WORKLOAD}\n` +
        `Parent ID        : ${agentId}\n` +
        'Revision         : 0\n' +
        `X509-SVID TTL    : ${X509_TTL_S}\n` +
        'JWT-SVID TTL     : default\n' +
        `Selector         : unix:uid:${UID}\n\n`,
    );
  });

  it('spire-server bundle show on our admin socket prints our CA bundle', async () => {
    const show = await spireServerCli('bundle', 'show');
    expect(show.code, show.stderr).toBe(0);
    const ours = new X509Certificate(await readFile(bundlePath));
    expect(new X509Certificate(show.stdout).raw.equals(ours.raw)).toBe(true);
    expect(show.stdout).toBe(ours.toString());
  });

  it('spire-agent api fetch x509 on its socket gets the X509-SVID our server signed', async () => {
    const r = await eventually(async () => {
      const out = await spireAgentApi('fetch', 'x509', '-output', 'json');
      if (out.code !== 0) throw new Error(out.stderr);
      return out;
    }, 20_000);
    const svids = (JSON.parse(r.stdout) as { svids: { spiffe_id: string; x509_svid: string; bundle: string }[] }).svids;
    expect(svids.map((s) => s.spiffe_id)).toEqual([WORKLOAD]);
    const leaf = new X509Certificate(Buffer.from(svids[0]?.x509_svid as string, 'base64'));
    const root = new X509Certificate(await readFile(bundlePath));
    expect(leaf.checkIssued(root) && leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe(`URI:${WORKLOAD}`);
  });

  it('spire-agent api fetch jwt gets a JWT-SVID our bundle verifies; api validate jwt accepts it', async () => {
    const r = await spireAgentApi('fetch', 'jwt', '-audience', 'x');
    expect(r.code, r.stderr).toBe(0);
    const token = new RegExp(`^token\\(${WORKLOAD}\\):\\n\\t(\\S+)\\n`).exec(r.stdout)?.[1];
    expect(token, r.stdout).toBeDefined();
    const spiffeBundle = await spireServerCli('bundle', 'show', '-format', 'spiffe');
    const jwks = JSON.parse(spiffeBundle.stdout) as JSONWebKeySet;
    const jwtKeys = jwks.keys.filter((k) => k.use === 'jwt-svid').map(({ use: _use, ...k }) => k);
    expect(jwtKeys.length).toBeGreaterThan(0);
    const { payload } = await jwtVerify(token as string, createLocalJWKSet({ keys: jwtKeys }), { audience: 'x' });
    expect(payload.sub).toBe(WORKLOAD);
    const valid = await spireAgentApi('validate', 'jwt', '-audience', 'x', '-svid', token as string);
    expect(valid.code, valid.stderr).toBe(0);
    expect(valid.stdout).toMatch(new RegExp(`^SVID is valid\\.\\nSPIFFE ID : ${WORKLOAD}\\n`));
  });

  it(`spire-agent rotates the ${X509_TTL_S}s X509-SVID our server signs: a stream on its socket gets a new one`, async () => {
    watch = watchX509(client);
    const first = await watch.waitFor((u) => u.svids.length > 0, 10_000);
    const old = first.svids[0] as { serial: string; notAfter: number };
    const rotated = await watch.waitFor((u) => u.svids.some((s) => s.spiffeId === WORKLOAD && s.serial !== old.serial), (X509_TTL_S + 15) * 1000);
    expect((rotated.svids[0] as { notAfter: number }).notAfter).toBeGreaterThan(old.notAfter);
  });

  it('spire-agent renews its agent SVID with our server (RenewAgent, agent_ttl 60s): agent list shows the new serial', async () => {
    await eventually(async () => {
      if (!/"Successfully rotated agent SVID"|msg="Successfully rotated agent SVID"/.test(spireAgent.logs())) throw new Error('not rotated yet');
    }, 45_000, 500);
    expect(spireAgent.logs()).toMatch(new RegExp(`msg="Successfully rotated agent SVID"[^\n]*spiffe_id="${agentId}"`));
    // The server records the new serial at RenewAgent and makes it the agent's current one
    // when the agent first presents it (its next sync), as SPIRE does.
    const json = await eventually(async () => {
      const j = await spireServerJson<{ agents: { id: SpireId; x509svid_serial_number: string }[] }>('agent', 'list');
      if (j.agents[0]?.x509svid_serial_number === firstSerial) throw new Error(`agent list still shows serial ${firstSerial}`);
      return j;
    }, 10_000, 250);
    expect(json.agents.map((a) => idString(a.id))).toEqual([agentId]);
    expect(json.agents[0]?.x509svid_serial_number).toMatch(/^[1-9]\d*$/);
  });

  it('spire-agent restarts on its stored SVID (no second attestation: the token is spent) and serves again', async () => {
    expect(await spireAgent.stop()).toBe(0);
    const from = spireAgent.logs().length;
    await spireAgent.start();
    const out = await eventually(async () => {
      const r = await spireAgentApi('fetch', 'x509', '-output', 'json');
      if (r.code !== 0) throw new Error(r.stderr);
      return r;
    }, 20_000);
    expect((JSON.parse(out.stdout) as { svids: { spiffe_id: string }[] }).svids.map((s) => s.spiffe_id)).toEqual([WORKLOAD]);
    expect(spireAgent.logs().slice(from)).toMatch(new RegExp(`msg="SVID loaded"[^\\n]*spiffe_id="${agentId}"`));
    expect(spireAgent.logs().slice(from)).not.toMatch(/Node attestation was successful/);
    const json = await spireServerJson<{ agents: { id: SpireId }[] }>('agent', 'list');
    expect(json.agents.map((a) => idString(a.id))).toEqual([agentId]);
    watch?.close();
    watch = undefined;
  });

  it('spire-server entry delete on our admin socket: spire-agent stops serving the identity', async () => {
    const del = await spireServerJson<{ results: { status: { code: number }; id: string }[] }>('entry', 'delete', '-entryID', entryId);
    expect(del.results.map((r) => [r.status.code, r.id])).toEqual([[0, entryId]]);
    const deletedAt = performance.now();
    const denied = await eventually(async () => {
      const out = await spireAgentApi('fetch', 'x509');
      if (out.code === 0) throw new Error('still served');
      return out;
    }, 15_000, 100);
    console.log(`spire-agent refused the deleted identity after ${(performance.now() - deletedAt).toFixed(0)} ms (its sync interval ${SYNC_INTERVAL_MS} ms)`);
    expect(denied.stderr).toMatch(/rpc error: code = PermissionDenied desc = no identity issued/);
    const count = await spireServerCli('entry', 'count');
    expect(count.stdout).toBe('0 registration entries\n');
  });

  it('spire-server agent ban on our admin socket: spire-agent removes its SVID and shuts down', async () => {
    const from = spireAgent.logs().length;
    const exited = spireAgent.exited();
    const ban = await spireServerCli('agent', 'ban', '-spiffeID', agentId);
    expect([ban.code, ban.stdout]).toEqual([0, 'Agent banned successfully\n']);
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 20_000))]);
    expect(code).not.toBe('still running');
    expect(code).not.toBe(0);
    const line = /[^\n]*Agent is banned: removing SVID and shutting down[^\n]*/.exec(spireAgent.logs().slice(from))?.[0];
    expect(line, spireAgent.logs().slice(from).slice(-3000)).toBeDefined();
    console.log(`spire-agent after the ban (exit ${String(code)}): ${line}`);
    // Our server's refusal carries PermissionDeniedDetails{reason: AGENT_BANNED}, which is what spire-agent acts on.
    expect(line).toMatch(/error="[^"]*PermissionDenied/);
    const json = await spireServerJson<{ agents: { id: SpireId; banned: boolean }[] }>('agent', 'list');
    expect(json.agents.map((a) => [idString(a.id), a.banned])).toEqual([[agentId, true]]);
  });
});

describe('the real spire-agent against our server with RSA keys (ca_key_type and jwt_key_type rsa-2048)', () => {
  let rsaServer: ServerHandle;
  let rsaAgent: SpireAgentHandle;
  let rsaBundlePath: string;
  const api = (...args: string[]): Promise<CliResult> => rsaAgent.cli('api', ...args, '-socketPath', rsaAgent.socketPath);

  beforeAll(async () => {
    rsaServer = await startServerProcess({ trustDomain: TD, serverBlock: '  ca_key_type = "rsa-2048"\n  jwt_key_type = "rsa-2048"' });
    rsaBundlePath = join(rsaServer.dir, 'data', 'ca', 'bundle.pem');
    const token = await generateJoinToken(rsaServer);
    rsaAgent = await startSpireAgent({ server: rsaServer, joinToken: token, trustBundlePath: rsaBundlePath, syncInterval: `${SYNC_INTERVAL_MS}ms` });
    const created = await runBinary(
      spireServerBin,
      ['entry', 'create', '-parentID', `spiffe://${TD}/spire/agent/join_token/${token}`, '-spiffeID', WORKLOAD, '-selector', `unix:uid:${UID}`, '-socketPath', rsaServer.socketPath],
    );
    if (created.code !== 0) throw new Error(`entry create: ${created.stdout}${created.stderr}`);
  });

  afterAll(async () => {
    await rsaAgent?.cleanup();
    await rsaServer?.cleanup();
  });

  it('attests with join_token to the RSA CA; api fetch x509 gets an X509-SVID whose chain verifies against the RSA root', async () => {
    expect(rsaAgent.logs()).toMatch(/msg="Node attestation was successful"/);
    const root = new X509Certificate(await readFile(rsaBundlePath));
    expect([root.publicKey.asymmetricKeyType, root.publicKey.asymmetricKeyDetails?.modulusLength]).toEqual(['rsa', 2048]);
    const r = await eventually(async () => {
      const out = await api('fetch', 'x509', '-output', 'json');
      if (out.code !== 0) throw new Error(out.stderr);
      return out;
    }, 20_000);
    const svids = (JSON.parse(r.stdout) as { svids: { spiffe_id: string; x509_svid: string; bundle: string }[] }).svids;
    expect(svids.map((s) => s.spiffe_id)).toEqual([WORKLOAD]);
    const leaf = new X509Certificate(Buffer.from(svids[0]?.x509_svid as string, 'base64'));
    expect(leaf.checkIssued(root) && leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe(`URI:${WORKLOAD}`);
    expect(Buffer.from(svids[0]?.bundle as string, 'base64').equals(root.raw)).toBe(true);
  });

  it('api fetch jwt gets an RS256 JWT-SVID that our JWKS verifies; api validate jwt accepts it', async () => {
    const r = await api('fetch', 'jwt', '-audience', 'sts.amazonaws.com');
    expect(r.code, r.stderr).toBe(0);
    const token = new RegExp(`^token\\(${WORKLOAD}\\):\\n\\t(\\S+)\\n`).exec(r.stdout)?.[1] as string;
    expect(token, r.stdout).toBeDefined();
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    const doc = JSON.parse((await runBinary(spireServerBin, ['bundle', 'show', '-format', 'spiffe', '-socketPath', rsaServer.socketPath])).stdout) as JSONWebKeySet;
    const jwtKeys = doc.keys.filter((k) => k.use === 'jwt-svid').map(({ use: _use, ...k }) => k);
    expect(jwtKeys.map((k) => k.kty)).toEqual(['RSA']);
    const { payload } = await jwtVerify(token, createLocalJWKSet({ keys: jwtKeys }), { audience: 'sts.amazonaws.com', algorithms: ['RS256'] });
    expect(payload.sub).toBe(WORKLOAD);
    const valid = await api('validate', 'jwt', '-audience', 'sts.amazonaws.com', '-svid', token);
    expect(valid.code, valid.stderr).toBe(0);
    expect(valid.stdout).toMatch(new RegExp(`^SVID is valid\\.\\nSPIFFE ID : ${WORKLOAD}\\n`));
  });
});

/** Go's time.Time.String() in UTC for a Unix time in seconds: `2006-01-02 15:04:05 +0000 UTC`. */
function goTimeUtc(unixSeconds: number): string {
  return `${new Date(unixSeconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} +0000 UTC`;
}
