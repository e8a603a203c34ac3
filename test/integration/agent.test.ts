/**
 * The real server and the real agent as processes; workloads are real grpc-js clients on the
 * agent's socket, in this process (uid of the test) or in child processes with other uids.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, createPrivateKey, createPublicKey, randomInt } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { SignJWT, createLocalJWKSet, importPKCS8, jwtVerify, type JSONWebKeySet } from 'jose';
import { startServerProcess, readBundlePem, NODE, REPO, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { checkX509SvidProfile, splitDerCertificates } from '../support/svid-profile.ts';
import { decodePemCertificates } from '../../src/common/pem.ts';
import { WorkloadApiClient } from '../../src/common/proto.ts';
import type { X509SVIDResponse__Output } from '../../src/gen/X509SVIDResponse.ts';
import type { JWTBundlesResponse__Output } from '../../src/gen/JWTBundlesResponse.ts';
import { eventually } from '../support/eventually.ts';

const TD = 'example.org';
const UID = process.getuid?.() ?? 0;

let server: ServerHandle;
let agent: AgentHandle;
let agentId: string;
let client: WorkloadApiClient;
const children: ChildProcess[] = [];

function header(): Metadata {
  const md = new Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

function newClient(): WorkloadApiClient {
  return new WorkloadApiClient(`unix://${agent.socketPath}`, credentials.createInsecure());
}

/** Reads the first FetchX509SVID message (or the error). */
function fetchX509(c = client, md = header()): Promise<X509SVIDResponse__Output> {
  return new Promise((resolve, reject) => {
    const stream = c.FetchX509SVID({}, md);
    stream.once('data', (res: X509SVIDResponse__Output) => {
      resolve(res);
      stream.cancel();
    });
    stream.on('error', (err: ServiceError) => {
      if (err.code !== 1) reject(err);
    });
  });
}

function unary<Res>(fn: (cb: (err: ServiceError | null, res?: Res) => void) => void): Promise<Res> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res as Res))));
}

async function createEntry(...args: string[]): Promise<string> {
  const out = await server.cli('entry', 'create', ...args);
  expect(out.stderr).toBe('');
  return /Entry ID\s+: (\S+)/.exec(out.stdout)?.[1] as string;
}

/** A workload child process running as `uid`; resolves events as they are printed. */
function workload(uid: number, mode: 'fetch' | 'watch'): { events: Record<string, unknown>[]; next: (pred: (e: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>; proc: ChildProcess } {
  const proc = spawn(NODE, [join(REPO, 'test/support/workload-child.ts'), agent.socketPath, mode], { uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  const events: Record<string, unknown>[] = [];
  let buffer = '';
  let errText = '';
  proc.stderr?.on('data', (d: Buffer) => (errText += d.toString()));
  proc.stdout?.on('data', (d: Buffer) => {
    buffer += d.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>);
      buffer = buffer.slice(nl + 1);
    }
  });
  const next = async (pred: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const found = events.find(pred);
      if (found !== undefined) return found;
      if (events.some((e) => e['event'] === 'status')) break; // the stream is over
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`workload (uid ${uid}) never printed the expected event; got ${JSON.stringify(events)} ${errText}`);
  };
  return { events, next, proc };
}

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD });
  const token = /Token: (\S+)/.exec((await server.cli('token', 'generate')).stdout)?.[1] as string;
  agent = await startAgentProcess({ server, joinToken: token });
  agentId = (await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/))[1] as string;
  await createEntry('-parentID', agentId, '-spiffeID', `spiffe://${TD}/me`, '-selector', `unix:uid:${UID}`);
  client = newClient();
  await eventually(async () => {
    const res = await fetchX509();
    if (res.svids.length === 0) throw new Error('no svids yet');
  });
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  client?.close();
  await agent?.cleanup();
  await server?.cleanup();
});

describe('Workload API served by the agent', () => {
  it('FetchX509SVID returns a profile-valid SVID that chains to the bundle, with its key', async () => {
    const res = await fetchX509();
    const svid = res.svids.find((s) => s.spiffe_id === `spiffe://${TD}/me`);
    expect(svid).toBeDefined();
    const roots = decodePemCertificates(await readBundlePem(server));
    expect(checkX509SvidProfile(svid?.x509_svid as Buffer, { expectedId: `spiffe://${TD}/me`, bundleRootsDer: roots })).toEqual([]);
    expect(splitDerCertificates(svid?.bundle as Buffer).map((c) => c.toString('hex'))).toEqual(roots.map((c) => c.toString('hex')));
    const leaf = new X509Certificate(splitDerCertificates(svid?.x509_svid as Buffer)[0] as Buffer);
    const pub = createPublicKey(createPrivateKey({ key: svid?.x509_svid_key as Buffer, format: 'der', type: 'pkcs8' }));
    expect(pub.export({ format: 'der', type: 'spki' }).equals(leaf.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
  });

  it('FetchJWTSVID gives a token jose verifies with FetchJWTBundles; ValidateJWTSVID accepts it and rejects bad ones', async () => {
    const jwt = await unary<{ svids: { spiffe_id: string; svid: string }[] }>((cb) => client.FetchJWTSVID({ audience: ['aud-a', 'aud-b'] }, header(), cb));
    const token = jwt.svids.find((s) => s.spiffe_id === `spiffe://${TD}/me`)?.svid as string;
    const bundles = await new Promise<JWTBundlesResponse__Output>((resolve, reject) => {
      const stream = client.FetchJWTBundles({}, header());
      stream.once('data', (res: JWTBundlesResponse__Output) => {
        resolve(res);
        stream.cancel();
      });
      stream.on('error', (err: ServiceError) => err.code !== 1 && reject(err));
    });
    const jwks = JSON.parse((bundles.bundles[`spiffe://${TD}`] as Buffer).toString()) as JSONWebKeySet;
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { audience: 'aud-b' });
    expect(payload.sub).toBe(`spiffe://${TD}/me`);

    const ok = await unary<{ spiffe_id: string }>((cb) => client.ValidateJWTSVID({ audience: 'aud-a', svid: token }, header(), cb));
    expect(ok.spiffe_id).toBe(`spiffe://${TD}/me`);

    const wrongAudience = await unary((cb) => client.ValidateJWTSVID({ audience: 'other', svid: token }, header(), cb)).catch((e: ServiceError) => e);
    expect((wrongAudience as ServiceError).code).toBe(3);

    // An expired token signed with the server's real JWT key.
    const state = JSON.parse(await readFile(join(server.dir, 'data', 'ca', 'state.json'), 'utf8')) as { jwt: { active: { kid: string; keyFile: string } } };
    const key = await importPKCS8(await readFile(join(server.dir, 'data', 'ca', state.jwt.active.keyFile), 'utf8'), 'ES256');
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ sub: `spiffe://${TD}/me`, aud: ['aud-a'] })
      .setProtectedHeader({ alg: 'ES256', kid: state.jwt.active.kid, typ: 'JWT' })
      .setIssuedAt(now - 600)
      .setExpirationTime(now - 300)
      .sign(key);
    const expiredErr = (await unary((cb) => client.ValidateJWTSVID({ audience: 'aud-a', svid: expired }, header(), cb)).catch((e: ServiceError) => e)) as ServiceError;
    expect(expiredErr.code).toBe(3);
    expect(expiredErr.details).toMatch(/expired/);

    const { privateKey } = await import('node:crypto').then((c) => c.generateKeyPairSync('ec', { namedCurve: 'P-256' }));
    const unknown = await new SignJWT({ sub: `spiffe://${TD}/me`, aud: ['aud-a'] })
      .setProtectedHeader({ alg: 'ES256', kid: 'not-a-known-kid', typ: 'JWT' })
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(privateKey);
    const unknownErr = (await unary((cb) => client.ValidateJWTSVID({ audience: 'aud-a', svid: unknown }, header(), cb)).catch((e: ServiceError) => e)) as ServiceError;
    expect(unknownErr.code).toBe(3);
  });

  it('a call without the security header gets InvalidArgument', async () => {
    const err = (await fetchX509(client, new Metadata()).catch((e: ServiceError) => e)) as ServiceError;
    expect(err.code).toBe(3);
    expect(err.details).toBe('security header missing from request');
  });

  it('a process running as another uid gets PermissionDenied "no identity issued"', async () => {
    const w = workload(4321, 'fetch');
    const e = await w.next((ev) => ev['event'] === 'error' || ev['event'] === 'svids');
    expect(e).toEqual({ event: 'error', code: 7, details: 'no identity issued' });
  });

  it('pushes a created entry to an open stream and ends it with PermissionDenied when the entries are deleted', async () => {
    const uid = 20_000 + randomInt(10_000);
    const first = await createEntry('-parentID', agentId, '-spiffeID', `spiffe://${TD}/uid-${uid}/a`, '-selector', `unix:uid:${uid}`);
    const w = await eventually(async () => {
      const attempt = workload(uid, 'watch');
      await attempt.next((e) => e['event'] === 'svids');
      return attempt;
    });
    const second = await createEntry('-parentID', agentId, '-spiffeID', `spiffe://${TD}/uid-${uid}/b`, '-selector', `unix:uid:${uid}`);
    const both = await w.next((e) => e['event'] === 'svids' && (e['ids'] as string[]).length === 2);
    expect((both['ids'] as string[]).sort()).toEqual([`spiffe://${TD}/uid-${uid}/a`, `spiffe://${TD}/uid-${uid}/b`]);
    await server.cli('entry', 'delete', '-entryID', first);
    await server.cli('entry', 'delete', '-entryID', second);
    expect(await w.next((e) => e['event'] === 'error')).toEqual({ event: 'error', code: 7, details: 'no identity issued' });
    expect(w.events.filter((e) => e['event'] === 'status').map((e) => e['code'])).not.toContain(0);
  });

  it('rotates a short-lived SVID on an open stream before it expires', async () => {
    await createEntry('-parentID', agentId, '-spiffeID', `spiffe://${TD}/short`, '-selector', `unix:uid:${UID}`, '-x509SVIDTTL', '20');
    const stream = client.FetchX509SVID({}, header());
    const seen: { serial: string; notAfter: number; at: number }[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (res: X509SVIDResponse__Output) => {
        const s = res.svids.find((x) => x.spiffe_id === `spiffe://${TD}/short`);
        if (s === undefined) return;
        const leaf = new X509Certificate(splitDerCertificates(s.x509_svid)[0] as Buffer);
        if (seen.at(-1)?.serial !== leaf.serialNumber) seen.push({ serial: leaf.serialNumber, notAfter: Date.parse(leaf.validTo), at: Date.now() });
        if (seen.length >= 2) resolve();
      });
      stream.on('error', (err: ServiceError) => err.code !== 1 && reject(err));
    });
    await done;
    stream.cancel();
    expect(seen[1]?.at).toBeLessThan(seen[0]?.notAfter as number);
  }, 40_000);
});

describe('outages and restarts', () => {
  it('keeps serving cached SVIDs while the server is down, and syncs again when it returns', async () => {
    expect(await server.stop()).toBe(0);
    const res = await fetchX509();
    expect(res.svids.map((s) => s.spiffe_id)).toContain(`spiffe://${TD}/me`);
    await server.restart();
    const uid = 30_000 + randomInt(10_000);
    await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', `spiffe://${TD}/after-restart`, '-selector', `unix:uid:${uid}`);
    const w = await eventually(async () => {
      const attempt = workload(uid, 'fetch');
      await attempt.next((e) => e['event'] === 'svids');
      return attempt;
    }, 40_000);
    expect((await w.next((e) => e['event'] === 'svids'))['ids']).toEqual([`spiffe://${TD}/after-restart`]);
  }, 60_000);

  it('restarts on its stored identity without a new join token, and survives kill -9', async () => {
    expect(await agent.stop()).toBe(0);
    const mode = (await stat(join(agent.dataDir, 'agent-data.json'))).mode & 0o777;
    expect(mode).toBe(0o600);
    for (let i = 0; i < 3; i++) {
      await agent.start();
      await new Promise((r) => setTimeout(r, 100 + randomInt(400)));
      await agent.kill();
    }
    const from = agent.logs().length;
    await agent.start();
    await agent.waitForLog(/reusing stored agent SVID/, 20_000, from);
    client.close();
    client = newClient();
    const res = await eventually(() => fetchX509());
    expect(res.svids.map((s) => s.spiffe_id)).toContain(`spiffe://${TD}/me`);
    expect(agent.logs().slice(from)).not.toMatch(/"msg":"node attested"/);
  }, 60_000);
});
