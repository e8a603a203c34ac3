/**
 * The kubelet client's connection handling over node:https against real loopback servers:
 * one kept-alive connection, rebuilt when the TLS material changes without cutting a request
 * in flight, closed after the requests in flight; and how transport failures are described.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createKubeletClient, type KubeletClient, type KubeletClientOptions, type Target } from '../../src/attestors/workload/k8s/kubelet-client.ts';
import { describeTransportError } from '../../src/attestors/workload/k8s/kubelet-errors.ts';
import type { KubeletOutcome } from '../../src/attestors/workload/k8s/metrics.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { createLogger } from '../../src/common/logger.ts';
import { eventually } from '../support/eventually.ts';
import { generateCa, issueLeaf, startFakeKubelet, type FakeKubelet } from '../support/fake-kubelet.ts';
import { failure } from '../support/api-failure.ts';

let root: string;
let caPath: string;
let tokenPath: string;
let kubelet: FakeKubelet;
let outcomes: KubeletOutcome[];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'kubelet-client-'));
  caPath = join(root, 'ca.crt');
  tokenPath = join(root, 'token');
  kubelet = await startFakeKubelet({ nodeName: 'node-a' });
  kubelet.allowedTokens.add('t');
  await writeFile(tokenPath, 't\n');
});

afterAll(async () => {
  await kubelet.close();
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  await writeFile(caPath, kubelet.caPem);
  kubelet.delayMs = 0;
  outcomes = [];
});

function client(overrides: Partial<KubeletClientOptions> = {}): KubeletClient {
  return createKubeletClient({
    host: 'node-a',
    port: 10250,
    nodeName: 'node-a',
    baseUrl: kubelet.baseUrl,
    caPath,
    skipVerification: false,
    tokenPath,
    logger: createLogger({ name: 'test', level: 'silent' }),
    metrics: { request: (outcome) => void outcomes.push(outcome) },
    ...overrides,
  });
}

const live = (): AbortSignal => new AbortController().signal;

/** Resolves once the fake kubelet has received `n` requests in all. */
const received = (n: number): Promise<void> => eventually(async () => void expect(kubelet.requests).toBeGreaterThanOrEqual(n), 5_000, 5);


describe('kubelet client connections', () => {
  it('sequential requests reuse one kept-alive connection', async () => {
    const c = client();
    const before = kubelet.connections;
    for (let i = 0; i < 3; i++) expect(JSON.parse(await c.getPodList(live()))).toMatchObject({ kind: 'PodList' });
    expect(kubelet.connections - before).toBe(1);
    await c.close();
    await eventually(async () => void expect(kubelet.openConnections).toBe(0), 5_000, 10);
    expect(outcomes).toEqual(['ok', 'ok', 'ok']);
  });

  it('concurrent requests queue for the one connection', async () => {
    const c = client();
    kubelet.delayMs = 30;
    const before = kubelet.connections;
    await Promise.all([c.getPodList(live()), c.getPodList(live()), c.getPodList(live())]);
    expect(kubelet.connections - before).toBe(1);
    expect(kubelet.maxInFlight).toBe(1);
    await c.close();
  });

  it('a changed CA file builds a new connection; the request in flight on the old one finishes, then the old one closes', async () => {
    const c = client();
    await c.getPodList(live());
    const before = kubelet.connections;
    kubelet.delayMs = 200;
    const start = kubelet.requests;
    const first = c.getPodList(live());
    await received(start + 1);
    await writeFile(caPath, `${kubelet.caPem}\n`); // same CA, different content
    kubelet.delayMs = 0;
    await c.getPodList(live());
    expect(kubelet.connections - before).toBe(1);
    expect(kubelet.openConnections).toBe(2);
    expect(JSON.parse(await first)).toMatchObject({ kind: 'PodList' });
    await eventually(async () => void expect(kubelet.openConnections).toBe(1), 5_000, 10);
    await c.close();
    await eventually(async () => void expect(kubelet.openConnections).toBe(0), 5_000, 10);
  });

  it('close() lets the request in flight finish, then closes the connection', async () => {
    const c = client();
    kubelet.delayMs = 150;
    const start = kubelet.requests;
    const inFlight = c.getPodList(live());
    await received(start + 1);
    let closed = false;
    const closing = c.close().then(() => void (closed = true));
    expect(JSON.parse(await inFlight)).toMatchObject({ kind: 'PodList' });
    await closing;
    expect(closed).toBe(true);
    await eventually(async () => void expect(kubelet.openConnections).toBe(0), 5_000, 10);
  });
});

describe('kubelet client outcome listener', () => {
  it('is told each outcome with the error message of a failed request (a 403 names nodes/proxy), then ok', async () => {
    const told: Array<[KubeletOutcome, string | undefined]> = [];
    const c = client({ onOutcome: (outcome, error) => void told.push([outcome, error]) });
    kubelet.allowedTokens.delete('t');
    try {
      const err = await failure(c.getPodList(live()));
      expect(told).toEqual([['forbidden', err.message]]);
      expect(err.message).toContain('Grant it "get" on "nodes/proxy"');
    } finally {
      kubelet.allowedTokens.add('t');
    }
    await c.getPodList(live());
    expect(told.slice(1)).toEqual([['ok', undefined]]);
    expect(outcomes).toEqual(['forbidden', 'ok']);
    await c.close();
  });
});

describe('kubelet client transport failures', () => {
  const servers: HttpServer[] = [];
  afterAll(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  });
  async function serve(server: HttpServer): Promise<string> {
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  async function httpsServer(handler: Parameters<typeof createHttpsServer>[1]): Promise<{ baseUrl: string; caPath: string }> {
    const ca = await generateCa('special-ca');
    const leaf = await issueLeaf(ca, { cn: 'node-a', dns: ['node-a'], ips: ['127.0.0.1'], usage: 'server' });
    const path = join(root, `special-ca-${servers.length}.crt`);
    await writeFile(path, ca.certPem);
    return { baseUrl: await serve(createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, handler)), caPath: path };
  }

  it('a plain-HTTP port: a TLS failure (permanent), not an unreachable kubelet', async () => {
    const baseUrl = await serve(createHttpServer((_req, res) => res.end('plain')));
    const err = await failure(client({ baseUrl }).getPodList(live()));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toMatch(new RegExp(`^kubelet: TLS with ${baseUrl}/pods failed \\(ERR_SSL_WRONG_VERSION_NUMBER: [0-9A-F]+:error:[^ ]+:SSL routines:[^:]+:wrong version number:`));
    expect(outcomes).toEqual(['tls_error']);
  });

  it('a connection lost mid-body: Unavailable saying so', async () => {
    const target = await httpsServer((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('{"items":');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const err = await failure(client(target).getPodList(live()));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toBe(`kubelet: GET ${target.baseUrl}/pods failed: the connection closed before the whole response arrived (ECONNRESET)`);
    expect(outcomes).toEqual(['unreachable']);
  });

  it('the body is read whole as UTF-8, a leading byte order mark dropped', async () => {
    const big = 'é'.repeat(3 * 1024 * 1024);
    const target = await httpsServer((_req, res) => res.end(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(big)])));
    expect(await client(target).getPodList(live())).toBe(big);
  });
});

describe('describeTransportError', () => {
  const target: Target = { url: 'https://node-a:10250/pods', nodeName: 'node-a', caPath: '/ca.crt', skipVerification: false, auth: { kind: 'anonymous' } };
  const error = (message: string, code?: string): Error => Object.assign(new Error(message), code !== undefined ? { code } : {});
  const openssl = '40AD42D0497F0000:error:0A00010B:SSL routines:tls_validate_record_header:wrong version number:../deps/openssl/openssl/ssl/record/methods/tlsany_meth.c:77:\n';
  const cases: Array<[name: string, err: unknown, code: Code, message: string]> = [
    ['refused', error('connect ECONNREFUSED 10.0.0.1:10250', 'ECONNREFUSED'), Code.UNAVAILABLE, 'kubelet: GET https://node-a:10250/pods failed: connect ECONNREFUSED 10.0.0.1:10250 (ECONNREFUSED)'],
    ['no code', new Error('socket hang up'), Code.UNAVAILABLE, 'kubelet: GET https://node-a:10250/pods failed: socket hang up'],
    [
      'unknown CA, system-store advice dropped',
      error('unable to verify the first certificate; if the root CA is installed locally, try running Node.js with --use-system-ca', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'),
      Code.FAILED_PRECONDITION,
      'kubelet: the certificate of https://node-a:10250/pods is not signed by the kubelet CA in /ca.crt (UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate); set kubelet_ca_path to the CA that issued the kubelet serving certificates',
    ],
    ['expired', error('certificate has expired', 'CERT_HAS_EXPIRED'), Code.FAILED_PRECONDITION, 'kubelet: the certificate of https://node-a:10250/pods is not valid now (CERT_HAS_EXPIRED: certificate has expired)'],
    ['TLS alert', error(openssl, 'ERR_SSL_WRONG_VERSION_NUMBER'), Code.FAILED_PRECONDITION, `kubelet: TLS with https://node-a:10250/pods failed (ERR_SSL_WRONG_VERSION_NUMBER: ${openssl})`],
    ['the same, seen by the request write', error(`write EPROTO ${openssl}`, 'EPROTO'), Code.FAILED_PRECONDITION, `kubelet: TLS with https://node-a:10250/pods failed (ERR_SSL_WRONG_VERSION_NUMBER: ${openssl})`],
    ['EPROTO without OpenSSL text', error('write EPROTO', 'EPROTO'), Code.UNAVAILABLE, 'kubelet: GET https://node-a:10250/pods failed: write EPROTO (EPROTO)'],
  ];
  for (const [name, err, code, message] of cases) {
    it(name, () => {
      const described = describeTransportError(err, target);
      expect(described.code).toBe(code);
      expect(described.message).toBe(message);
    });
  }
});
