/**
 * Envoy SDS v3 on the real agent's Workload API socket, spoken by a Go client built from
 * go-control-plane's generated protos (test/support/go/sds-client) exactly as Envoy speaks it:
 * no workload.spiffe.io header, real peer credentials (each client runs as its own uid), the
 * full ACK/NACK cycle, subscription changes, a bundle change and an SVID rotation pushed,
 * FetchSecrets, DeltaSecrets refused, and two clients doing mTLS with the secrets they got.
 *
 * The agent runs with `sds { default_all_bundles_name = "ALL_TRUST_DOMAINS" }`, so that the
 * config block is shown to be acted on; the other names keep SPIRE's defaults.
 *
 * Needs Go (the client is built once and cached): in CI a missing toolchain fails the suite,
 * elsewhere it is skipped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomInt } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateJoinToken, readBundlePem, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { eventually } from '../support/eventually.ts';
import { detectGo } from '../support/interop-builds.ts';
import { makeTestCa, type TestCa } from '../support/ca-fixtures.ts';
import { buildSdsClient, SdsClient, type SdsEvent, type SdsResource } from '../support/sds-client.ts';
import { decodePemCertificates } from '../../src/common/pem.ts';

const TD = 'example.org';
const FED = 'fed.org';
const ALL = 'ALL_TRUST_DOMAINS';
const IN_CI = process.env['CI'] === 'true';
const GO = detectGo();
if (!IN_CI && !GO.ok) console.warn(`[sds] skipped: ${GO.reason}`);

const base = 40_000 + randomInt(10_000);
const UID = { a: base, b: base + 1, rotating: base + 2, nobody: base + 3 };
const ID = { a: `spiffe://${TD}/sds/a`, b: `spiffe://${TD}/sds/b`, rotating: `spiffe://${TD}/sds/rotating` };

let server: ServerHandle;
let agent: AgentHandle;
let bin: string;
let ownRoots: string[];
let fedCa: TestCa;
const clients: SdsClient[] = [];

const fingerprint = (der: Buffer): string => createHash('sha256').update(der).digest('hex');
const hour = 3_600_000;

async function setFederatedBundle(): Promise<TestCa> {
  const ca = await makeTestCa({ name: `CN=${FED} root ${randomInt(1e9)}`, notBefore: new Date(Date.now() - hour), notAfter: new Date(Date.now() + 24 * hour) });
  const file = join(server.dir, `fed-${randomInt(1e9)}.pem`);
  await writeFile(file, ca.pem);
  const out = await server.cli('bundle', 'set', '-id', `spiffe://${FED}`, '-path', file);
  expect(out.stdout + out.stderr).toBe('bundle set.\n');
  return ca;
}

async function client(uid: number): Promise<SdsClient> {
  const c = await SdsClient.start(bin, agent.socketPath, { uid, gid: uid });
  clients.push(c);
  return c;
}

function resources(e: SdsEvent): SdsResource[] {
  if (e.event !== 'response' && e.event !== 'fetched') throw new Error(`expected a response, got ${JSON.stringify(e)}`);
  return e['resources'] as SdsResource[];
}

/** What a validation context over these trust domains looks like to the client. */
function validator(name: string, domains: Array<[string, string[]]>): SdsResource {
  return { name, kind: 'spiffe_validator', validator: 'envoy.tls.cert_validator.spiffe', trust_domains: domains.map(([td, roots]) => ({ name: td, roots })) };
}

function tls(name: string, id: string): SdsResource {
  return { name, kind: 'tls_certificate', spiffe_ids: [id], serial: expect.any(String) as unknown as string, chain: 1, key_type: 'PRIVATE KEY' };
}

describe.skipIf(!IN_CI && !GO.ok)('Envoy SDS v3 on the agent socket', () => {
  beforeAll(async () => {
    bin = await buildSdsClient(GO);
    server = await startServerProcess({ trustDomain: TD });
    agent = await startAgentProcess({ server, joinToken: await generateJoinToken(server), extraAgent: `  sds {\n    default_all_bundles_name = "${ALL}"\n  }` });
    const agentId = (await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/))[1] as string;
    ownRoots = decodePemCertificates(await readBundlePem(server)).map(fingerprint);
    fedCa = await setFederatedBundle();
    const create = async (...args: string[]): Promise<void> => {
      const out = await server.cli('entry', 'create', '-parentID', agentId, ...args);
      expect(out.stderr).toBe('');
    };
    await create('-spiffeID', ID.a, '-selector', `unix:uid:${UID.a}`, '-federatesWith', `spiffe://${FED}`);
    await create('-spiffeID', ID.b, '-selector', `unix:uid:${UID.b}`);
    await create('-spiffeID', ID.rotating, '-selector', `unix:uid:${UID.rotating}`, '-x509SVIDTTL', '20');
    // Every client's SVID and the federated bundle are cached before the tests ask.
    const probe = await client(UID.a);
    await eventually(async () => {
      const e = await probe.run({ op: 'fetch', names: ['default', `spiffe://${FED}`] });
      if (e.event !== 'fetched') throw new Error(JSON.stringify(e));
    }, 30_000);
    const probeB = await client(UID.b);
    await eventually(async () => {
      const e = await probeB.run({ op: 'fetch', names: ['default'] });
      if (e.event !== 'fetched') throw new Error(JSON.stringify(e));
    }, 30_000);
  }, 600_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await agent?.cleanup();
    await server?.cleanup();
  });

  it('runs a stream as Envoy does: request, ACK, subscription change, bundle change pushed, NACK not answered, stale nonce ignored', async () => {
    const a = await client(UID.a);
    const logFrom = agent.logs().length;
    await a.send({ names: ['default'], node: { id: 'envoy-a', build_version: [1, 30, 0] } });
    const first = await a.recv();
    expect(first).toMatchObject({ event: 'response', version: '1', type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret' });
    expect(first['nonce']).toMatch(/^[0-9a-f]{8}$/);
    expect(resources(first)).toEqual([tls('default', ID.a)]);
    await a.run({ op: 'ack' });

    // More names, answered at the same version.
    await a.send({ names: ['default', ALL], version: '1', nonce: first['nonce'] as string });
    const second = await a.recv();
    expect(second).toMatchObject({ event: 'response', version: '1' });
    expect(second['nonce']).not.toBe(first['nonce']);
    // Trust domains by name: example.org before fed.org.
    expect(resources(second)).toEqual([validator(ALL, [[TD, ownRoots], [FED, [fingerprint(fedCa.der)]]]), tls('default', ID.a)]);
    await a.run({ op: 'ack' });

    // A bundle change is pushed with the next version.
    fedCa = await setFederatedBundle();
    const third = await a.recv();
    expect(third).toMatchObject({ event: 'response', version: '2' });
    expect(resources(third)).toEqual([validator(ALL, [[TD, ownRoots], [FED, [fingerprint(fedCa.der)]]]), tls('default', ID.a)]);
    expect(resources(third)[1]?.serial).toBe(resources(second)[1]?.serial);

    // NACK of version 2: the client stays on 1. The agent does not answer it; the next
    // response is the one for the next subscription change, still version 2, with the new names.
    expect(await a.run({ op: 'nack', error: 'test: secret rejected' })).toMatchObject({ event: 'sent', version: '1', nonce: third['nonce'] });
    await a.send({ names: ['default', ALL, `spiffe://${FED}`], version: '1', nonce: third['nonce'] as string });
    const fourth = await a.recv();
    expect(fourth).toMatchObject({ event: 'response', version: '2' });
    expect(resources(fourth).map((r) => r.name)).toEqual([ALL, `spiffe://${FED}`, 'default']);
    expect(resources(fourth)[1]).toEqual(validator(`spiffe://${FED}`, [[FED, [fingerprint(fedCa.der)]]]));

    // A request carrying an older nonce is ignored whole (its names too): the next change is
    // measured against the names of the fourth request.
    await a.send({ names: ['default'], version: '2', nonce: third['nonce'] as string });
    await a.send({ names: [`spiffe://${FED}`], version: '2', nonce: fourth['nonce'] as string });
    const fifth = await a.recv();
    expect(fifth).toMatchObject({ event: 'response', version: '2' });
    expect(resources(fifth).map((r) => r.name)).toEqual([`spiffe://${FED}`]);

    // The client finishing its side ends the stream with OK, as SPIRE.
    expect(await a.run({ op: 'close' })).toEqual({ event: 'end', code: 0, message: '' });

    const lines = agent
      .logs()
      .slice(logFrom)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l['caller_pid'] === a.pid);
    // The first line of each kind (repeats of a kind within 10 s are held back per caller).
    const firstOfEach = lines.filter((l, i) => l['level'] === 'warn' && lines.findIndex((m) => m['level'] === 'warn' && m['msg'] === l['msg']) === i);
    expect(firstOfEach.map(({ msg, error, version_info, expected, nonce }) => ({ msg, error, version_info, expected, nonce }))).toEqual([
      { msg: 'sds client reported errors applying secrets', error: 'test: secret rejected', version_info: undefined, expected: undefined, nonce: undefined },
      { msg: 'sds client rejected the expected version and rolled back', error: undefined, version_info: '1', expected: '2', nonce: undefined },
      { msg: 'sds request with an unexpected nonce ignored', error: undefined, version_info: undefined, expected: fourth['nonce'], nonce: third['nonce'] },
    ]);
    expect(lines.find((l) => l['msg'] === 'workload api call' && l['method'] === 'StreamSecrets')).toMatchObject({ code: 'OK' });
  }, 60_000);

  it('pushes a rotated SVID with the next version', async () => {
    const c = await client(UID.rotating);
    await c.send({ names: ['default'] });
    const first = await c.recv();
    expect(first).toMatchObject({ event: 'response', version: '1' });
    expect(resources(first)).toEqual([tls('default', ID.rotating)]);
    await c.run({ op: 'ack' });
    // A 20 s SVID is renewed at about half its life.
    const rotated = await c.recv(40_000);
    expect(rotated).toMatchObject({ event: 'response', version: '2' });
    expect(resources(rotated)).toEqual([tls('default', ID.rotating)]);
    expect(resources(rotated)[0]?.serial).not.toBe(resources(first)[0]?.serial);
    expect(await c.run({ op: 'ack' })).toMatchObject({ event: 'sent', version: '2', nonce: rotated['nonce'] });
  }, 60_000);

  it.each([
    ['the SPIFFE validator over every trust domain', ALL],
    ['the SPIFFE validator of the own trust domain', 'ROOTCA'],
  ])('two workloads do mTLS with the secrets they received (%s)', async (_name, validation) => {
    const a = await client(UID.a);
    const b = await client(UID.b);
    for (const c of [a, b]) {
      await c.send({ names: ['default', validation] });
      expect(resources(await c.recv()).map((r) => r.name)).toEqual([validation, 'default']);
      await c.run({ op: 'ack' });
    }
    const listening = await a.run({ op: 'serve', cert: 'default', validation });
    expect(listening).toMatchObject({ event: 'listening' });
    expect(await b.run({ op: 'dial', addr: listening['addr'], cert: 'default', validation })).toEqual({ event: 'dialed', peer: ID.a, reply: `hello ${ID.b}`, tls_version: 'TLS 1.3' });
    expect(await a.run({ op: 'served' })).toEqual({ event: 'served', peer: ID.b, got: 'ping' });
  }, 60_000);

  it('FetchSecrets answers once, without version or nonce', async () => {
    const a = await client(UID.a);
    const fetched = await a.run({ op: 'fetch', names: ['ROOTCA', ID.a] });
    expect(fetched).toMatchObject({ event: 'fetched', version: '', nonce: '' });
    expect(resources(fetched)).toEqual([validator('ROOTCA', [[TD, ownRoots]]), tls(ID.a, ID.a)]);
  });

  it.each([
    ['an SVID of another workload', [ID.b], `workload is not authorized for the requested identities ["${ID.b}"]`],
    ['SPIRE’s default all-bundles name, renamed in the config', ['ALL'], 'workload is not authorized for the requested identities ["ALL"]'],
    ['a trust domain the workload does not federate with', ['spiffe://elsewhere.org', 'default'], 'workload is not authorized for the requested identities ["spiffe://elsewhere.org"]'],
  ])('refuses %s with InvalidArgument, on FetchSecrets and by ending the stream', async (_name, names, message) => {
    const a = await client(UID.a);
    expect(await a.run({ op: 'fetch', names })).toEqual({ event: 'error', code: 3, message });
    await a.send({ names });
    expect(await a.recv()).toEqual({ event: 'end', code: 3, message });
  });

  it('serves a workload without an identity only the bundle, and refuses it any SVID', async () => {
    const nobody = await client(UID.nobody);
    const fetched = await nobody.run({ op: 'fetch', names: [] });
    expect(resources(fetched)).toEqual([validator(`spiffe://${TD}`, [[TD, ownRoots]])]);
    expect(await nobody.run({ op: 'fetch', names: ['default'] })).toEqual({ event: 'error', code: 3, message: 'workload is not authorized for the requested identities ["default"]' });
  });

  it.each([
    ['an Envoy older than 1.18', { id: 'old', build_version: [1, 17, 4] }],
    ['disable_spiffe_cert_validation in the node metadata', { id: 'n', metadata: { disable_spiffe_cert_validation: true } }],
  ])('sends plain trusted CA roots to %s', async (_name, node) => {
    const a = await client(UID.a);
    const fetched = await a.run({ op: 'fetch', names: ['ROOTCA', `spiffe://${FED}`], node });
    expect(resources(fetched)).toEqual([
      { name: 'ROOTCA', kind: 'trusted_ca', roots: ownRoots },
      { name: `spiffe://${FED}`, kind: 'trusted_ca', roots: [fingerprint(fedCa.der)] },
    ]);
    // The all-bundles name needs the SPIFFE validator: Internal, as SPIRE.
    expect(await a.run({ op: 'fetch', names: [ALL], node })).toEqual({ event: 'error', code: 13, message: 'unable to use "SPIFFE validator" on Envoy below 1.17' });
  });

  it('answers DeltaSecrets with Unimplemented, as SPIRE', async () => {
    const a = await client(UID.a);
    expect(await a.run({ op: 'delta', names: ['default'] })).toEqual({ event: 'end', code: 12, message: 'Method is not implemented' });
  });
});
