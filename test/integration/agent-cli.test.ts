/**
 * The agent's `api` and `healthcheck` commands, run in-process through runCommands against a
 * small Workload API server started here on a temporary Unix socket. The server checks the
 * security header and serves canned SVIDs made with @peculiar/x509, so the files the CLI
 * writes can be checked with openssl.
 */
import 'reflect-metadata';

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as x509 from '@peculiar/x509';
import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Server, ServerCredentials, status, type Metadata, type ServerWritableStream } from '@grpc/grpc-js';

import { makeTestCa, tempDir, type TestCa } from '../support/ca-fixtures.ts';
import { runCommands, type CommandIo } from '../../src/common/command.ts';
import { ManualClock } from '../../src/common/clock.ts';
import { certificatesToPem } from '../../src/common/pem.ts';
import { HealthService, WorkloadApiService } from '../../src/common/proto.ts';
import { createAgentApiCommands } from '../../src/agent/cli/api-commands.ts';
import { createHealthcheckCommand } from '../../src/agent/cli/healthcheck-command.ts';
import type { AgentCliOptions } from '../../src/agent/cli/api-common.ts';
import { createWorkloadClient } from '../../src/agent/workload-client/index.ts';
import type { SpiffeWorkloadAPIHandlers } from '../../src/gen/SpiffeWorkloadAPI.ts';
import type { HealthHandlers } from '../../src/gen/grpc/health/v1/Health.ts';
import type { X509SVIDRequest__Output } from '../../src/gen/X509SVIDRequest.ts';
import type { X509SVIDResponse } from '../../src/gen/X509SVIDResponse.ts';

const run = promisify(execFile);

const NOW = Date.UTC(2026, 0, 1, 0, 1, 0);
const HOUR = 3_600_000;
const WORKLOAD_ID = 'spiffe://example.org/workload';
const DB_ID = 'spiffe://example.org/db';
const TOKEN = 'eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy93b3JrbG9hZCJ9.c2lnbmF0dXJl';
const JWKS = '{\n    "keys": [\n        {\n            "kty": "EC",\n            "kid": "k1",\n            "crv": "P-256",\n            "x": "eA",\n            "y": "eQ"\n        }\n    ]\n}';

// ---------------------------------------------------------------------------------------------
// Certificates

interface Leaf {
  cert: x509.X509Certificate;
  der: Buffer;
  key: KeyObject;
}

async function makeLeaf(issuer: TestCa, spiffeId: string, notBefore: number, notAfter: number): Promise<Leaf> {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicKey = new x509.PublicKey(pair.publicKey.export({ format: 'der', type: 'spki' }));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '0a1b2c',
    subject: 'O=SPIRE, C=US',
    issuer: issuer.cert.subject,
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    publicKey,
    signingKey: issuer.pair.privateKey.toCryptoKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']) as unknown as CryptoKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
    ],
  });
  return { cert, der: Buffer.from(cert.rawData), key: pair.privateKey };
}

interface Fixtures {
  root: TestCa;
  intermediate: TestCa;
  federatedDomain: TestCa;
  federatedAnother: TestCa;
  workload: Leaf;
  db: Leaf;
}

let fx: Fixtures;

function pkcs8(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'pkcs8' });
}

/** The canned response: two SVIDs and two federated bundles (deliberately not in sorted order). */
function x509Response(): X509SVIDResponse {
  return {
    svids: [
      {
        spiffe_id: WORKLOAD_ID,
        x509_svid: Buffer.concat([fx.workload.der, fx.intermediate.der]),
        x509_svid_key: pkcs8(fx.workload.key),
        bundle: fx.root.der,
        hint: 'external',
      },
      { spiffe_id: DB_ID, x509_svid: fx.db.der, x509_svid_key: pkcs8(fx.db.key), bundle: fx.root.der },
    ],
    federated_bundles: { 'spiffe://domain.test': fx.federatedDomain.der, 'spiffe://another.test': fx.federatedAnother.der },
  };
}

// ---------------------------------------------------------------------------------------------
// The Workload API server

type Mode = 'ok' | 'denied' | 'hang';

interface FakeAgent {
  mode: Mode;
  health: 'SERVING' | 'NOT_SERVING';
  /** Called after the first X509SVIDResponse of a stream: lets a test push more. */
  onX509Stream: ((call: ServerWritableStream<X509SVIDRequest__Output, X509SVIDResponse>) => void) | undefined;
  /** The security header values of every Workload API call, in order. */
  headers: string[][];
  jwtRequests: Array<{ audience: string[]; spiffe_id: string }>;
  openStreams: number;
}

const agent: FakeAgent = { mode: 'ok', health: 'SERVING', onX509Stream: undefined, headers: [], jwtRequests: [], openStreams: 0 };

const DENIED = { code: status.PERMISSION_DENIED, details: 'no identity issued' };
const NO_HEADER = { code: status.INVALID_ARGUMENT, details: 'security header missing from request' };

/** True when the call carries exactly `workload.spiffe.io: true` (records what it saw). */
function headerOk(metadata: Metadata): boolean {
  const values = metadata.get('workload.spiffe.io').map(String);
  agent.headers.push(values);
  return values.length === 1 && values[0] === 'true';
}

/** Serves a stream: an error, nothing (hang), or `message` and then stays open until cancelled. */
function serveStream<Req, Res>(call: ServerWritableStream<Req, Res>, message: () => Res, after?: () => void): void {
  if (!headerOk(call.metadata)) return void call.emit('error', NO_HEADER);
  if (agent.mode === 'denied') return void call.emit('error', DENIED);
  agent.openStreams++;
  call.on('cancelled', () => agent.openStreams--);
  if (agent.mode === 'hang') return;
  call.write(message());
  after?.();
}

const workloadHandlers: SpiffeWorkloadAPIHandlers = {
  FetchX509SVID(call) {
    serveStream(call, x509Response, () => agent.onX509Stream?.(call));
  },
  FetchX509Bundles(call) {
    serveStream(call, () => ({ bundles: { 'spiffe://example.org': fx.root.der, 'spiffe://domain.test': fx.federatedDomain.der } }));
  },
  FetchJWTBundles(call) {
    serveStream(call, () => ({ bundles: { 'spiffe://example.org': Buffer.from(JWKS) } }));
  },
  FetchJWTSVID(call, callback) {
    if (!headerOk(call.metadata)) return callback(NO_HEADER);
    if (agent.mode === 'denied') return callback(DENIED);
    agent.jwtRequests.push({ audience: call.request.audience, spiffe_id: call.request.spiffe_id });
    callback(null, { svids: [{ spiffe_id: WORKLOAD_ID, svid: TOKEN, hint: '' }] });
  },
  ValidateJWTSVID(call, callback) {
    if (!headerOk(call.metadata)) return callback(NO_HEADER);
    if (call.request.svid !== TOKEN) return callback({ code: status.INVALID_ARGUMENT, details: 'token has expired' });
    callback(null, {
      spiffe_id: WORKLOAD_ID,
      claims: {
        fields: {
          sub: { stringValue: WORKLOAD_ID },
          exp: { numberValue: 1767229260 },
          aud: { listValue: { values: [{ stringValue: call.request.audience }] } },
          iat: { numberValue: 1767225660 },
        },
      },
    });
  },
  FetchWITSVID(call) {
    call.emit('error', { code: status.UNIMPLEMENTED, details: 'not implemented' });
  },
  FetchWITBundles(call) {
    call.emit('error', { code: status.UNIMPLEMENTED, details: 'not implemented' });
  },
};

const healthHandlers: HealthHandlers = {
  Check(_call, callback) {
    callback(null, { status: agent.health });
  },
  List(_call, callback) {
    callback(null, { statuses: {} });
  },
  Watch(call) {
    call.emit('error', { code: status.UNIMPLEMENTED, details: 'not implemented' });
  },
};

let server: Server;
let dir: string;
let cleanupDir: () => Promise<void>;
let socketPath: string;
let tcpPort: number;

function bind(target: string): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(target, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
}

beforeAll(async () => {
  const root = await makeTestCa({ name: 'C=US, O=SPIFFE, CN=example.org root', notBefore: new Date(Date.UTC(2025, 0, 1)), notAfter: new Date(Date.UTC(2027, 0, 1)) });
  const intermediate = await makeTestCa({ name: 'C=US, O=SPIFFE, CN=intermediate', issuer: root, notBefore: new Date(Date.UTC(2026, 0, 1)), notAfter: new Date(Date.UTC(2026, 0, 2)) });
  const federatedDomain = await makeTestCa({ name: 'CN=domain.test root', notBefore: new Date(Date.UTC(2026, 0, 1)), notAfter: new Date(Date.UTC(2026, 1, 1)) });
  const federatedAnother = await makeTestCa({ name: 'CN=another.test root', notBefore: new Date(Date.UTC(2026, 0, 1)), notAfter: new Date(Date.UTC(2026, 0, 3)) });
  const start = Date.UTC(2026, 0, 1);
  fx = {
    root,
    intermediate,
    federatedDomain,
    federatedAnother,
    workload: await makeLeaf(intermediate, WORKLOAD_ID, start, start + HOUR),
    db: await makeLeaf(root, DB_ID, start, start + 2 * HOUR),
  };
  ({ dir, cleanup: cleanupDir } = await tempDir());
  socketPath = join(dir, 'api.sock');
  server = new Server();
  server.addService(WorkloadApiService, workloadHandlers);
  server.addService(HealthService, healthHandlers);
  await bind(`unix:${socketPath}`);
  tcpPort = await bind('127.0.0.1:0');
});

afterAll(async () => {
  server?.forceShutdown();
  await cleanupDir?.();
});

beforeEach(() => {
  agent.mode = 'ok';
  agent.health = 'SERVING';
  agent.onX509Stream = undefined;
  agent.headers = [];
  agent.jwtRequests = [];
});

// ---------------------------------------------------------------------------------------------
// Running the CLI

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function capture(): { io: CommandIo; stdout: () => string; stderr: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  const line = (text: string): string => (text.endsWith('\n') ? text : `${text}\n`);
  return {
    io: { out: (t) => void out.push(line(t)), err: (t) => void err.push(line(t)) },
    stdout: () => out.join(''),
    stderr: () => err.join(''),
  };
}

function commands(options: AgentCliOptions = {}): ReturnType<typeof createAgentApiCommands> {
  const all = { env: {}, clock: new ManualClock(NOW), ...options };
  return [...createAgentApiCommands(all), createHealthcheckCommand(all)];
}

async function cli(args: string[], options: AgentCliOptions = {}): Promise<Result> {
  const c = capture();
  const code = await runCommands('spiffe-agent', commands(options), args, c.io);
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

/** Runs a command with `-socketPath` pointing at the test server. */
function api(...args: string[]): Promise<Result> {
  return cli([...args, '-socketPath', socketPath]);
}

async function openssl(...args: string[]): Promise<string> {
  return (await run('openssl', args)).stdout;
}

// ---------------------------------------------------------------------------------------------
// The expected text

const X509_SUMMARY = [
  'Received 2 svids after 0s',
  '',
  'SPIFFE ID:\t\tspiffe://example.org/workload',
  'Hint:\t\t\texternal',
  'SVID Valid After:\t2026-01-01 00:00:00 +0000 UTC',
  'SVID Valid Until:\t2026-01-01 01:00:00 +0000 UTC',
  'Intermediate #1 Valid After:\t2026-01-01 00:00:00 +0000 UTC',
  'Intermediate #1 Valid Until:\t2026-01-02 00:00:00 +0000 UTC',
  'CA #1 Valid After:\t2025-01-01 00:00:00 +0000 UTC',
  'CA #1 Valid Until:\t2027-01-01 00:00:00 +0000 UTC',
  '[spiffe://another.test] CA #1 Valid After:\t2026-01-01 00:00:00 +0000 UTC',
  '[spiffe://another.test] CA #1 Valid Until:\t2026-01-03 00:00:00 +0000 UTC',
  '[spiffe://domain.test] CA #1 Valid After:\t2026-01-01 00:00:00 +0000 UTC',
  '[spiffe://domain.test] CA #1 Valid Until:\t2026-02-01 00:00:00 +0000 UTC',
  '',
  'SPIFFE ID:\t\tspiffe://example.org/db',
  'SVID Valid After:\t2026-01-01 00:00:00 +0000 UTC',
  'SVID Valid Until:\t2026-01-01 02:00:00 +0000 UTC',
  'CA #1 Valid After:\t2025-01-01 00:00:00 +0000 UTC',
  'CA #1 Valid Until:\t2027-01-01 00:00:00 +0000 UTC',
  '[spiffe://another.test] CA #1 Valid After:\t2026-01-01 00:00:00 +0000 UTC',
  '[spiffe://another.test] CA #1 Valid Until:\t2026-01-03 00:00:00 +0000 UTC',
  '[spiffe://domain.test] CA #1 Valid After:\t2026-01-01 00:00:00 +0000 UTC',
  '[spiffe://domain.test] CA #1 Valid Until:\t2026-02-01 00:00:00 +0000 UTC',
  '',
  '',
].join('\n');

function writeLines(out: string): string {
  return [
    `Writing SVID #0 to file ${out}/svid.0.pem.`,
    `Writing key #0 to file ${out}/svid.0.key.`,
    `Writing bundle #0 to file ${out}/bundle.0.pem.`,
    `Writing federated bundle #0 for trust domain spiffe://another.test to file ${out}/federated_bundle.0.0.pem.`,
    `Writing federated bundle #1 for trust domain spiffe://domain.test to file ${out}/federated_bundle.0.1.pem.`,
    `Writing SVID #1 to file ${out}/svid.1.pem.`,
    `Writing key #1 to file ${out}/svid.1.key.`,
    `Writing bundle #1 to file ${out}/bundle.1.pem.`,
    `Writing federated bundle #0 for trust domain spiffe://another.test to file ${out}/federated_bundle.1.0.pem.`,
    `Writing federated bundle #1 for trust domain spiffe://domain.test to file ${out}/federated_bundle.1.1.pem.`,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

describe('api fetch x509', () => {
  it('prints every SVID like spire-agent and writes its files with the right content and modes', async () => {
    const out = join(dir, 'x509-out');
    await mkdir(out);
    const res = await api('api', 'fetch', 'x509', '-write', out);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(X509_SUMMARY + writeLines(out));

    expect((await readdir(out)).sort()).toEqual([
      'bundle.0.pem',
      'bundle.1.pem',
      'federated_bundle.0.0.pem',
      'federated_bundle.0.1.pem',
      'federated_bundle.1.0.pem',
      'federated_bundle.1.1.pem',
      'svid.0.key',
      'svid.0.pem',
      'svid.1.key',
      'svid.1.pem',
    ]);
    const modes: Array<[string, number]> = [
      ['svid.0.pem', 0o644],
      ['svid.0.key', 0o600],
      ['bundle.0.pem', 0o644],
      ['federated_bundle.0.0.pem', 0o644],
      ['svid.1.key', 0o600],
    ];
    for (const [name, mode] of modes) expect([name, (await stat(join(out, name))).mode & 0o777]).toEqual([name, mode]);

    // Chain = leaf then intermediate, in @peculiar/x509's own PEM; openssl reads the leaf's URI SAN.
    const chainPem = await readFile(join(out, 'svid.0.pem'), 'utf8');
    expect(chainPem).toBe(certificatesToPem([fx.workload.der, fx.intermediate.der]));
    expect(chainPem.replace(/\n/g, '')).toBe([fx.workload.cert, fx.intermediate.cert].map((c) => c.toString('pem')).join('').replace(/\r?\n/g, ''));
    expect(await openssl('x509', '-in', join(out, 'svid.0.pem'), '-noout', '-ext', 'subjectAltName')).toContain(`URI:${WORKLOAD_ID}`);
    expect(await openssl('x509', '-in', join(out, 'bundle.0.pem'), '-noout', '-subject')).toContain('CN = example.org root');
    expect(await openssl('x509', '-in', join(out, 'federated_bundle.0.0.pem'), '-noout', '-subject')).toContain('CN = another.test root');
    expect(await openssl('x509', '-in', join(out, 'federated_bundle.1.1.pem'), '-noout', '-subject')).toContain('CN = domain.test root');

    // The key is PKCS#8 PEM and belongs to the leaf.
    const keyPem = await readFile(join(out, 'svid.0.key'), 'utf8');
    expect(keyPem.startsWith('-----BEGIN PRIVATE KEY-----\n')).toBe(true);
    const spki = (k: KeyObject): string => k.export({ format: 'der', type: 'spki' }).toString('base64');
    expect(spki(createPublicKey(createPrivateKey(keyPem)))).toBe(spki(createPublicKey(fx.workload.key)));
    expect(await openssl('pkey', '-in', join(out, 'svid.0.key'), '-noout', '-text')).toContain('NIST CURVE: P-256');

    expect(agent.headers.length).toBeGreaterThan(0);
    expect(agent.headers.every((h) => h.length === 1 && h[0] === 'true')).toBe(true);
  });

  it('-silent prints only the files it writes; "api fetch" is the same command', async () => {
    const out = join(dir, 'silent-out');
    await mkdir(out);
    const res = await api('api', 'fetch', '-silent', '-write', out);
    expect([res.code, res.stderr]).toEqual([0, '']);
    expect(res.stdout).toBe(writeLines(out));

    const plain = await api('api', 'fetch');
    expect([plain.code, plain.stdout, plain.stderr]).toEqual([0, X509_SUMMARY, '']);
  });

  it('cancels the stream after the first response', async () => {
    const res = await api('api', 'fetch', 'x509', '-silent');
    expect(res.code).toBe(0);
    await expect.poll(() => agent.openStreams).toBe(0);
  });

  it('a write into a missing directory fails with exit 1 and names the file', async () => {
    const res = await api('api', 'fetch', 'x509', '-silent', '-write', join(dir, 'nope'));
    expect(res.code).toBe(1);
    expect(res.stdout).toBe(`Writing SVID #0 to file ${join(dir, 'nope')}/svid.0.pem.\n`);
    expect(res.stderr).toMatch(/ENOENT/);
  });
});

describe('-output json, as spire-agent (protojson, keys sorted, one line)', () => {
  it('api fetch x509 prints the X509SVIDResponse', async () => {
    const res = await api('api', 'fetch', 'x509', '-output', 'json');
    expect([res.code, res.stderr]).toEqual([0, '']);
    const b64 = (b: Buffer): string => b.toString('base64');
    expect(res.stdout).toBe(
      `{"crl":[],"federated_bundles":{"spiffe://another.test":"${b64(fx.federatedAnother.der)}","spiffe://domain.test":"${b64(fx.federatedDomain.der)}"},` +
        `"svids":[{"bundle":"${b64(fx.root.der)}","hint":"external","spiffe_id":"${WORKLOAD_ID}","x509_svid":"${b64(Buffer.concat([fx.workload.der, fx.intermediate.der]))}","x509_svid_key":"${b64(pkcs8(fx.workload.key))}"},` +
        `{"bundle":"${b64(fx.root.der)}","hint":"","spiffe_id":"${DB_ID}","x509_svid":"${b64(fx.db.der)}","x509_svid_key":"${b64(pkcs8(fx.db.key))}"}]}\n`,
    );
  });

  it('api fetch jwt prints [JWTSVIDResponse, JWTBundlesResponse]', async () => {
    const res = await api('api', 'fetch', 'jwt', '-audience', 'spire-server', '-output', 'json');
    expect([res.code, res.stderr]).toEqual([0, '']);
    expect(res.stdout).toBe(`[{"svids":[{"hint":"","spiffe_id":"${WORKLOAD_ID}","svid":"${TOKEN}"}]},{"bundles":{"spiffe://example.org":"${Buffer.from(JWKS).toString('base64')}"}}]\n`);
  });

  it('api validate jwt prints the ValidateJWTSVIDResponse', async () => {
    const res = await api('api', 'validate', 'jwt', '-audience', 'spire-server', '-svid', TOKEN, '-output', 'json');
    expect([res.code, res.stderr]).toEqual([0, '']);
    expect(res.stdout).toBe(`{"claims":{"aud":["spire-server"],"exp":1767229260,"iat":1767225660,"sub":"${WORKLOAD_ID}"},"spiffe_id":"${WORKLOAD_ID}"}\n`);
  });
});

describe('api fetch jwt', () => {
  it('prints the token and the JWT bundles like spire-agent', async () => {
    const res = await api('api', 'fetch', 'jwt', '-audience', 'spire-server,other', '-spiffeID', WORKLOAD_ID);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(`token(${WORKLOAD_ID}):\n\t${TOKEN}\nbundle(spiffe://example.org):\n\t${JWKS}\n`);
    expect(agent.jwtRequests).toEqual([{ audience: ['spire-server', 'other'], spiffe_id: WORKLOAD_ID }]);
    expect(agent.headers).toEqual([['true'], ['true']]);
  });
});

describe('api validate jwt', () => {
  it('prints "SVID is valid." with the SPIFFE ID and the claims', async () => {
    const res = await api('api', 'validate', 'jwt', '-audience', 'spire-server', '-svid', TOKEN);
    expect([res.code, res.stderr]).toEqual([0, '']);
    expect(res.stdout).toBe(
      'SVID is valid.\n' +
        `SPIFFE ID : ${WORKLOAD_ID}\n` +
        `Claims    : {"aud":["spire-server"],"exp":1767229260,"iat":1767225660,"sub":"${WORKLOAD_ID}"}\n`,
    );
  });

  it('an invalid token exits 1 with the reason', async () => {
    const res = await api('api', 'validate', 'jwt', '-audience', 'spire-server', '-svid', 'not.a.token');
    expect([res.code, res.stdout, res.stderr]).toEqual([1, '', 'SVID is not valid: token has expired\n']);
  });
});

describe('failures', () => {
  const deniedCases: Array<[string, string[]]> = [
    ['api fetch x509', ['api', 'fetch', 'x509']],
    ['api fetch', ['api', 'fetch']],
    ['api fetch jwt', ['api', 'fetch', 'jwt', '-audience', 'a']],
  ];
  for (const [name, args] of deniedCases) {
    it(`${name}: PermissionDenied exits 1 with spire-agent's message`, async () => {
      agent.mode = 'denied';
      const res = await api(...args);
      expect([res.code, res.stdout, res.stderr]).toEqual([1, '', 'rpc error: code = PermissionDenied desc = no identity issued\n']);
    });
  }

  it('a missing socket exits 1 with a message naming the socket', async () => {
    const missing = join(dir, 'missing', 'api.sock');
    const expected = `cannot connect to the Workload API: socket ${missing} does not exist (is the agent running, and is this the right path?)\n`;
    for (const args of [['api', 'fetch', 'x509'], ['api', 'fetch', 'jwt', '-audience', 'a']]) {
      const res = await cli([...args, '-socketPath', missing]);
      expect([res.code, res.stdout, res.stderr]).toEqual([1, '', expected]);
    }
    const validate = await cli(['api', 'validate', 'jwt', '-audience', 'a', '-svid', TOKEN, '-socketPath', missing]);
    expect([validate.code, validate.stderr]).toEqual([1, `unable to validate JWT SVID: ${expected}`]);
  });

  it('a response that never comes fails after -timeout with DeadlineExceeded', async () => {
    agent.mode = 'hang';
    const res = await api('api', 'fetch', 'x509', '-timeout', '200ms');
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^rpc error: code = DeadlineExceeded desc = /);
  });

  const usageCases: Array<[string, string[], string]> = [
    ['an unknown flag', ['api', 'fetch', 'x509', '-bogus'], 'flag provided but not defined: -bogus'],
    ['a flag without its value', ['api', 'fetch', 'jwt', '-audience'], 'flag needs an argument: -audience'],
    ['a bad -timeout', ['api', 'fetch', 'x509', '-timeout', 'soon'], 'invalid value "soon" for flag -timeout: "soon" is not a duration'],
    ['a bad -socketPath scheme', ['api', 'fetch', 'x509', '-socketPath', 'http://127.0.0.1:1'], 'invalid value "http://127.0.0.1:1" for flag -socketPath: workload endpoint socket URI must have a "tcp" or "unix" scheme'],
    ['a -socketPath URI with an authority', ['api', 'watch', '-socketPath', 'unix://tmp/api.sock'], 'invalid value "unix://tmp/api.sock" for flag -socketPath: workload endpoint unix socket URI must not include an authority'],
    ['fetch jwt without -audience', ['api', 'fetch', 'jwt'], 'audience must be specified'],
    ['validate jwt without -audience', ['api', 'validate', 'jwt', '-svid', TOKEN], 'audience must be specified'],
    ['validate jwt without -svid', ['api', 'validate', 'jwt', '-audience', 'a'], 'svid must be specified'],
    ['an unknown command', ['api', 'fetch-all'], 'unknown command "api fetch-all"'],
  ];
  for (const [name, args, message] of usageCases) {
    it(`${name} exits 2`, async () => {
      const res = await cli(args);
      expect(res.stderr).toContain(message);
      expect([res.code, res.stdout]).toEqual([2, '']);
    });
  }

  it('a bad SPIFFE_ENDPOINT_SOCKET exits 2 and names the variable', async () => {
    const res = await cli(['api', 'fetch', 'x509'], { env: { SPIFFE_ENDPOINT_SOCKET: '/tmp/agent.sock' } });
    expect([res.code, res.stderr]).toEqual([2, 'invalid SPIFFE_ENDPOINT_SOCKET "/tmp/agent.sock": workload endpoint socket URI must have a "tcp" or "unix" scheme\n']);
  });
});

describe('finding the socket', () => {
  it('uses SPIFFE_ENDPOINT_SOCKET when -socketPath is absent', async () => {
    const res = await cli(['api', 'fetch', '-silent'], { env: { SPIFFE_ENDPOINT_SOCKET: `unix://${socketPath}` } });
    expect([res.code, res.stderr]).toEqual([0, '']);
  });

  it('resolves a relative -socketPath against the working directory, as spire-agent does', async () => {
    const res = await cli(['api', 'fetch', '-silent', '-socketPath', 'api.sock'], { cwd: dir });
    expect([res.code, res.stderr]).toEqual([0, '']);
  });

  it('falls back to /tmp/spire-agent/public/api.sock', async () => {
    const res = await cli(['healthcheck', '-verbose']);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('/tmp/spire-agent/public/api.sock');
  });

  it('dials tcp:// endpoints', async () => {
    const res = await cli(['api', 'fetch', '-silent', '-socketPath', `tcp://127.0.0.1:${tcpPort}`]);
    expect([res.code, res.stderr]).toEqual([0, '']);
  });
});

describe('api watch', () => {
  it('prints each update with the time it was received until interrupted', async () => {
    const clock = new ManualClock(NOW);
    const stop = new AbortController();
    agent.onX509Stream = (call) => {
      setTimeout(() => {
        clock.advance(30_000);
        call.write(x509Response());
      }, 20);
    };
    const c = capture();
    const running = runCommands('spiffe-agent', commands({ clock, interruptSignal: () => stop.signal }), ['api', 'watch', '-socketPath', socketPath], c.io);
    await expect.poll(() => c.stdout().match(/^Received /gm)?.length ?? 0).toBe(2);
    stop.abort();
    expect(await running).toBe(0);
    expect(c.stderr()).toBe('');

    // Watch labels federated bundles by trust domain name, as spire-agent's watch does.
    const first = X509_SUMMARY.replaceAll('[spiffe://', '[');
    const second = first.replace('Received 2 svids after 0s', 'Received 2 svids after 30s');
    expect(c.stdout()).toBe(first + second);
    await expect.poll(() => agent.openStreams).toBe(0);
  });

  it('reports stream errors on stderr and keeps retrying until interrupted', async () => {
    agent.mode = 'denied';
    const stop = new AbortController();
    const c = capture();
    const running = runCommands('spiffe-agent', commands({ interruptSignal: () => stop.signal }), ['api', 'watch', '-socketPath', socketPath], c.io);
    await expect.poll(() => c.stderr()).toBe('rpc error: code = PermissionDenied desc = no identity issued\n');
    stop.abort();
    expect(await running).toBe(0);
    expect(c.stdout()).toBe('');
  });
});

describe('healthcheck', () => {
  it('healthy: "Agent is healthy." and exit 0', async () => {
    const res = await api('healthcheck');
    expect([res.code, res.stdout, res.stderr]).toEqual([0, 'Agent is healthy.\n', '']);
    const verbose = await api('healthcheck', '-shallow', '-verbose');
    expect([verbose.code, verbose.stdout, verbose.stderr]).toEqual([0, 'Checking agent health...\nAgent is healthy.\n', '']);
  });

  it('not serving: exit 1 with the status', async () => {
    agent.health = 'NOT_SERVING';
    const res = await api('healthcheck');
    expect([res.code, res.stdout, res.stderr]).toEqual([1, '', 'Agent is unhealthy: agent returned status "NOT_SERVING"\n']);
  });

  it('unreachable: exit 1, and -verbose says why', async () => {
    const missing = join(dir, 'gone.sock');
    const res = await cli(['healthcheck', '-socketPath', missing]);
    expect([res.code, res.stdout, res.stderr]).toEqual([1, '', 'Agent is unhealthy: unable to determine health\n']);
    const verbose = await cli(['healthcheck', '-verbose', '-socketPath', missing]);
    expect(verbose.stderr).toBe(
      `Failed to check health: cannot connect to the Workload API: socket ${missing} does not exist (is the agent running, and is this the right path?)\n` +
        'Agent is unhealthy: unable to determine health\n',
    );
  });
});

describe('workload client', () => {
  it('reads X.509 and JWT bundles keyed by trust domain name, sending the security header', async () => {
    const client = createWorkloadClient({ env: { SPIFFE_ENDPOINT_SOCKET: `unix:${socketPath}` }, timeoutMs: 5000 });
    try {
      const x509Bundles = await client.fetchX509Bundles();
      expect([...x509Bundles.keys()]).toEqual(['domain.test', 'example.org']);
      expect(x509Bundles.get('example.org')).toEqual([fx.root.der]);
      const jwtBundles = await client.fetchJwtBundles();
      expect(jwtBundles.get('example.org')?.toString()).toBe(JWKS);
      const context = await client.fetchX509Context();
      expect(context.svids.map((s) => [s.spiffeId, s.certificates.length, s.hint])).toEqual([
        [WORKLOAD_ID, 2, 'external'],
        [DB_ID, 1, ''],
      ]);
      expect([...context.federatedBundles.keys()]).toEqual(['another.test', 'domain.test']);
      expect(agent.headers).toEqual([['true'], ['true'], ['true']]);
    } finally {
      client.close();
    }
  });

  it('rejects with the server status as ApiError', async () => {
    agent.mode = 'denied';
    const client = createWorkloadClient({ address: `tcp://127.0.0.1:${tcpPort}` });
    try {
      await expect(client.fetchX509Context()).rejects.toMatchObject({ name: 'ApiError', code: status.PERMISSION_DENIED, message: 'no identity issued' });
      await expect(client.fetchJwtSvids(['a'])).rejects.toMatchObject({ code: status.PERMISSION_DENIED, message: 'no identity issued' });
    } finally {
      client.close();
    }
  });

  it('without an address or SPIFFE_ENDPOINT_SOCKET, says what to set', () => {
    expect(() => createWorkloadClient({ env: {} })).toThrow('workload endpoint socket address is not configured (set SPIFFE_ENDPOINT_SOCKET)');
  });
});
