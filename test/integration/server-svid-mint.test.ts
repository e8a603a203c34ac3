/**
 * MintX509SVID and MintJWTSVID on the real server process: over the admin socket (every caller
 * an administrator) with SPIRE's checks, codes and messages; refused over TLS; and the
 * `spiffe-server x509 mint` / `jwt mint` commands with spire-server's output.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { credentials } from '@grpc/grpc-js';
import { startServerProcess, readBundlePem, generateJoinToken, type ServerHandle } from '../support/server-process.ts';
import { checkX509SvidProfile } from '../support/svid-profile.ts';
import { apiErrorOf, keyPair, makeCsr } from '../support/ca-fixtures.ts';
import { connectToServer, type ServerClients } from '../../src/agent/server-client/connection.ts';
import { attestAgent } from '../../src/agent/server-client/attest.ts';
import { createCsrWithSans, newKeyAndCsr } from '../../src/common/csr.ts';
import { certificatesToPem, decodePemCertificates } from '../../src/common/pem.ts';
import { unaryCall, unixTarget } from '../../src/common/grpc-client.ts';
import { Code, type ApiError } from '../../src/common/errors.ts';
import { BundleClient, SvidClient } from '../../src/common/proto.ts';
import type { SPIFFEID } from '../../src/gen/spire/api/types/SPIFFEID.ts';

const TD = 'example.org';
let server: ServerHandle;
let rootsPem: string;
let admin: SvidClient;
let adminBundle: BundleClient;
const opened: { close(): void }[] = [];
let work: string;

const rejection = (p: Promise<unknown>): Promise<ApiError> => apiErrorOf(() => p);

/** A P-256 CSR with these SANs and an empty subject, as spire-server's CLI sends. */
function csrFor(uris: string[], dnsNames: string[] = []): Buffer {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return createCsrWithSans(privateKey, publicKey, { uris, dnsNames, emptySubject: true });
}

async function jwks(): Promise<ReturnType<typeof createLocalJWKSet>> {
  const bundle = await unaryCall(adminBundle, 'GetBundle', {});
  const keys = bundle.jwt_authorities.map((a) => ({
    ...(createPublicKey({ key: a.public_key, format: 'der', type: 'spki' }).export({ format: 'jwk' }) as JWK),
    kid: a.key_id,
  }));
  return createLocalJWKSet({ keys });
}

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD, serverBlock: '  default_x509_svid_ttl = "2h"\n  default_jwt_svid_ttl = "7m"' });
  rootsPem = await readBundlePem(server);
  admin = new SvidClient(unixTarget(server.socketPath), credentials.createInsecure());
  adminBundle = new BundleClient(unixTarget(server.socketPath), credentials.createInsecure(), { channelOverride: admin.getChannel() });
  opened.push(admin);
  work = await mkdtemp(join(tmpdir(), 'sna-mint-'));
});

afterAll(async () => {
  for (const c of opened) c.close();
  await server?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('MintX509SVID over the admin socket', () => {
  it('signs the CSR key for its URI SAN with its DNS names (the first one as CN), chained to the bundle, with the default TTL', async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await unaryCall(admin, 'MintX509SVID', { csr: csrFor(['spiffe://example.org/minted'], ['a.example.org', '*.b.example.org']) });
    expect(res.svid?.id).toEqual({ trust_domain: TD, path: '/minted' });
    const chain = res.svid?.cert_chain ?? [];
    expect(checkX509SvidProfile(chain, { expectedId: 'spiffe://example.org/minted', bundleRootsDer: decodePemCertificates(rootsPem) })).toEqual([]);
    const leaf = new X509Certificate(chain[0] as Buffer);
    expect(leaf.subjectAltName?.split(', ').sort()).toEqual(['DNS:*.b.example.org', 'DNS:a.example.org', 'URI:spiffe://example.org/minted']);
    expect(leaf.subject).toBe('C=US\nO=SPIRE\nCN=a.example.org');
    expect(Number(res.svid?.expires_at) - now).toBeGreaterThanOrEqual(7200 - 5);
    expect(Number(res.svid?.expires_at) - now).toBeLessThanOrEqual(7200 + 5);
  });

  it('applies the requested TTL and keeps the CSR subject', async () => {
    const now = Math.floor(Date.now() / 1000);
    const csr = await makeCsr(keyPair('P-256'), { uris: ['spiffe://example.org/ttl'] });
    const res = await unaryCall(admin, 'MintX509SVID', { csr, ttl: 90 });
    expect(Number(res.svid?.expires_at) - now).toBeGreaterThanOrEqual(85);
    expect(Number(res.svid?.expires_at) - now).toBeLessThanOrEqual(95);
    expect(new X509Certificate(res.svid?.cert_chain[0] as Buffer).subject).toBe('CN=workload');
  });

  const badSignature = (): Buffer => {
    const csr = csrFor(['spiffe://example.org/w']);
    // The last byte belongs to the ECDSA signature's s value.
    csr.writeUInt8((csr.at(-1) as number) ^ 0x01, csr.length - 1);
    return csr;
  };
  const cases: [string, () => Buffer | Promise<Buffer>, string][] = [
    ['an empty CSR', () => Buffer.alloc(0), 'missing CSR'],
    ['a CSR that is not DER', () => Buffer.from('not a csr'), 'malformed CSR: '],
    ['a CSR whose signature does not verify', badSignature, 'failed to verify CSR signature: x509: ECDSA verification failure'],
    ['a CSR without a URI SAN', () => csrFor([], ['a.example.org']), 'CSR URI SAN is required'],
    ['a CSR with two URI SANs', () => csrFor(['spiffe://example.org/a', 'spiffe://example.org/b']), 'only one URI SAN is expected'],
    ['an ID of another trust domain', () => csrFor(['spiffe://other.org/w']), 'CSR URI SAN is invalid: "spiffe://other.org/w" is not a member of trust domain "example.org"'],
    ['the trust domain ID', () => csrFor(['spiffe://example.org']), 'CSR URI SAN is invalid: "spiffe://example.org" is not a workload in trust domain "example.org"; path is empty'],
    [
      'an ID in the reserved namespace',
      () => csrFor(['spiffe://example.org/spire/agent/x']),
      'CSR URI SAN is invalid: "spiffe://example.org/spire/agent/x" is not a workload in trust domain "example.org"; path is in the reserved namespace',
    ],
    ['a DNS name with two wildcards', () => csrFor(['spiffe://example.org/w'], ['*.*.example.org']), 'CSR DNS name is invalid: too many wildcards'],
    ['a wildcard that is not the first label', () => csrFor(['spiffe://example.org/w'], ['a.*.example.org']), 'CSR DNS name is invalid: wildcard must be first label'],
    [
      'a wildcard covering another name',
      () => csrFor(['spiffe://example.org/w'], ['*.example.org', 'a.example.org']),
      'CSR DNS name contains a wildcard that covers another non-wildcard name: name "a.example.org" overlaps with an existing wildcard name in the list: wildcard overlap',
    ],
  ];
  it.each(cases)('refuses %s with INVALID_ARGUMENT', async (_name, csr, message) => {
    const err = await rejection(unaryCall(admin, 'MintX509SVID', { csr: await csr() }));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    if (message.endsWith(': ')) expect(err.message.startsWith(message)).toBe(true);
    else expect(err.message).toBe(message);
  });
});

describe('MintJWTSVID over the admin socket', () => {
  it('signs a JWT-SVID for the ID and audiences that verifies against the bundle, with the default TTL', async () => {
    const res = await unaryCall(admin, 'MintJWTSVID', { id: { trust_domain: TD, path: '/jwt' }, audience: ['aud1', 'aud2'] });
    const token = res.svid?.token as string;
    const { payload } = await jwtVerify(token, await jwks(), { audience: 'aud2' });
    expect(payload.sub).toBe('spiffe://example.org/jwt');
    expect(payload.aud).toEqual(['aud1', 'aud2']);
    expect(Number(payload.exp) - Number(payload.iat)).toBe(420);
    expect(res.svid?.id).toEqual({ trust_domain: TD, path: '/jwt' });
    expect(Number(res.svid?.issued_at)).toBe(payload.iat);
    expect(Number(res.svid?.expires_at)).toBe(payload.exp);
    expect(decodeProtectedHeader(token).typ).toBe('JWT');
  });

  it('applies the requested TTL', async () => {
    const res = await unaryCall(admin, 'MintJWTSVID', { id: { trust_domain: TD, path: '/jwt' }, audience: ['a'], ttl: 30 });
    expect(Number(res.svid?.expires_at) - Number(res.svid?.issued_at)).toBe(30);
  });

  const cases: [string, SPIFFEID | null, string[], Code, string][] = [
    ['no ID', null, ['a'], Code.INVALID_ARGUMENT, 'invalid SPIFFE ID: request must specify SPIFFE ID'],
    ['no trust domain', { trust_domain: '', path: '/w' }, ['a'], Code.INVALID_ARGUMENT, 'invalid SPIFFE ID: trust domain is missing'],
    ['a path without a leading slash', { trust_domain: TD, path: 'w' }, ['a'], Code.INVALID_ARGUMENT, 'invalid SPIFFE ID: path must have a leading slash'],
    ['another trust domain', { trust_domain: 'other.org', path: '/w' }, ['a'], Code.INVALID_ARGUMENT, 'invalid SPIFFE ID: "spiffe://other.org/w" is not a member of trust domain "example.org"'],
    ['the trust domain ID', { trust_domain: TD, path: '' }, ['a'], Code.INVALID_ARGUMENT, 'invalid SPIFFE ID: "spiffe://example.org" is not a workload in trust domain "example.org"; path is empty'],
    [
      'the reserved namespace',
      { trust_domain: TD, path: '/spire/server' },
      ['a'],
      Code.INVALID_ARGUMENT,
      'invalid SPIFFE ID: "spiffe://example.org/spire/server" is not a workload in trust domain "example.org"; path is in the reserved namespace',
    ],
    ['no audience', { trust_domain: TD, path: '/w' }, [], Code.INVALID_ARGUMENT, 'at least one audience is required'],
    ['only an empty audience', { trust_domain: TD, path: '/w' }, [''], Code.INTERNAL, 'failed to sign JWT-SVID: invalid JWT-SVID audience: cannot be empty'],
  ];
  it.each(cases)('refuses %s', async (_name, id, audience, code, message) => {
    const err = await rejection(unaryCall(admin, 'MintJWTSVID', { id, audience }));
    expect([Code[err.code], err.message]).toEqual([Code[code], message]);
  });
});

describe('minting over TLS', () => {
  let anonymous: ServerClients;
  let agent: ServerClients;
  beforeAll(async () => {
    const address = `127.0.0.1:${server.port}`;
    anonymous = connectToServer({ address, trustDomain: TD, rootsPem });
    const { privateKey, csr } = newKeyAndCsr();
    const attested = await attestAgent(anonymous.agent, { type: 'join_token', payload: Buffer.from(await generateJoinToken(server)), csr });
    agent = connectToServer({
      address,
      trustDomain: TD,
      rootsPem,
      identity: { certChainPem: certificatesToPem(attested.certChain), keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() },
    });
    opened.push(anonymous, agent);
  });

  it.each([
    ['an anonymous caller', () => anonymous],
    ['an agent', () => agent],
  ])('is refused to %s with PERMISSION_DENIED', async (_name, clients) => {
    const x509 = await rejection(unaryCall(clients().svid, 'MintX509SVID', { csr: csrFor(['spiffe://example.org/w']) }));
    const jwt = await rejection(unaryCall(clients().svid, 'MintJWTSVID', { id: { trust_domain: TD, path: '/w' }, audience: ['a'] }));
    for (const err of [x509, jwt]) {
      expect([Code[err.code], err.message]).toEqual(['PERMISSION_DENIED', 'caller is not an administrator: use the local admin socket']);
    }
  });
});

describe('spiffe-server x509 mint and jwt mint', () => {
  it('x509 mint prints the SVID, its key and the root CAs as PEM', async () => {
    const out = await server.cli('x509', 'mint', '-spiffeID', 'spiffe://example.org/cli', '-dns', 'cli.example.org', '-ttl', '10m');
    expect(out.code).toBe(0);
    // As spire-server: the whole-second expiry is always a little short of the TTL asked for.
    expect(out.stderr).toMatch(/^X509-SVID lifetime was capped shorter than specified ttl; expires "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\n$/);
    const blocks = /^X509-SVID:\n([\s\S]+?)\nPrivate key:\n([\s\S]+?)\nRoot CAs:\n([\s\S]+?)\n$/.exec(out.stdout);
    expect(blocks).not.toBeNull();
    const [, svidPem, keyPem, rootsOut] = blocks as RegExpExecArray;
    expect(rootsOut).toBe(rootsPem);
    const leaf = new X509Certificate(svidPem as string);
    expect(leaf.checkPrivateKey(createPrivateKey(keyPem as string))).toBe(true);
    expect(leaf.subjectAltName?.split(', ').sort()).toEqual(['DNS:cli.example.org', 'URI:spiffe://example.org/cli']);
    expect(leaf.subject).toBe('C=US\nO=SPIRE\nCN=cli.example.org');
    const lifetime = (Date.parse(leaf.validTo) - Date.now()) / 1000;
    expect(lifetime).toBeGreaterThan(590);
    expect(lifetime).toBeLessThanOrEqual(600);
  });

  it('x509 mint -write writes svid.pem and bundle.pem (0644) and key.pem (0600)', async () => {
    const out = await server.cli('x509', 'mint', '-spiffeID', 'spiffe://example.org/cli', '-write', work);
    expect([out.code, out.stderr]).toEqual([0, '']);
    expect(out.stdout).toBe(
      `X509-SVID written to ${join(work, 'svid.pem')}\nPrivate key written to ${join(work, 'key.pem')}\nRoot CAs written to ${join(work, 'bundle.pem')}\n`,
    );
    const modes = await Promise.all(['svid.pem', 'key.pem', 'bundle.pem'].map(async (f) => (await stat(join(work, f))).mode & 0o777));
    expect(modes).toEqual([0o644, 0o600, 0o644]);
    expect(await readFile(join(work, 'bundle.pem'), 'utf8')).toBe(rootsPem);
  });

  it('x509 mint -output json prints a list of one result with the DER values in base64, in spire-server field order', async () => {
    const out = await server.cli('x509', 'mint', '-spiffeID', 'spiffe://example.org/cli', '-output', 'json');
    expect(out.code).toBe(0);
    const [parsed] = JSON.parse(out.stdout) as [{ root_cas: string[] }];
    expect(Object.keys(parsed)).toEqual(['x509_svid', 'private_key', 'root_cas']);
    expect(parsed.root_cas.map((b) => Buffer.from(b, 'base64'))).toEqual(decodePemCertificates(rootsPem));
  });

  it('jwt mint prints the token; -write writes it 0600', async () => {
    const out = await server.cli('jwt', 'mint', '-spiffeID', 'spiffe://example.org/cli', '-audience', 'x', '-ttl', '1m');
    expect(out.code).toBe(0);
    expect(out.stderr).toMatch(/^JWT-SVID lifetime was capped shorter than specified ttl; expires "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\n$/);
    const { payload } = await jwtVerify(out.stdout.trim(), await jwks(), { audience: 'x' });
    expect(payload.sub).toBe('spiffe://example.org/cli');
    expect(Number(payload.exp) - Number(payload.iat)).toBe(60);
    const file = join(work, 'token');
    const written = await server.cli('jwt', 'mint', '-spiffeID', 'spiffe://example.org/cli', '-audience', 'x', '-write', file);
    expect(written.stdout).toBe(`JWT-SVID written to ${file}\n`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it.each([
    [['x509', 'mint'], 'Error: spiffeID must be specified\n'],
    [['jwt', 'mint', '-spiffeID', 'spiffe://example.org/w'], 'Error: at least one audience must be specified\n'],
    [
      ['x509', 'mint', '-spiffeID', 'spiffe://example.org/spire/x'],
      'Error: unable to mint SVID: rpc error: code = InvalidArgument desc = CSR URI SAN is invalid: "spiffe://example.org/spire/x" is not a workload in trust domain "example.org"; path is in the reserved namespace\n',
    ],
    [
      ['jwt', 'mint', '-spiffeID', 'spiffe://other.org/w', '-audience', 'a'],
      'Error: unable to mint SVID: rpc error: code = InvalidArgument desc = invalid SPIFFE ID: "spiffe://other.org/w" is not a member of trust domain "example.org"\n',
    ],
  ])('%j fails with spire-server\'s message', async (args, stderr) => {
    const out = await server.cli(...args);
    expect([out.code, out.stdout, out.stderr]).toEqual([1, '', stderr]);
  });
});
