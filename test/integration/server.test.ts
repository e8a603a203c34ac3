/**
 * The real server process, driven over mTLS by real grpc-js clients generated from proto/,
 * and over its admin socket by the real CLI.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, decodeProtectedHeader, type JWK } from 'jose';
import { startServerProcess, readBundlePem, NODE, SERVER_BIN, type ServerHandle } from '../support/server-process.ts';
import { checkX509SvidProfile } from '../support/svid-profile.ts';
import { makeCsr } from '../support/ca-fixtures.ts';
import { connectToServer, type ServerClients } from '../../src/agent/server-client/connection.ts';
import { attestAgent } from '../../src/agent/server-client/attest.ts';
import { syncAuthorizedEntries } from '../../src/agent/server-client/sync-entries.ts';
import { newKeyAndCsr } from '../../src/common/csr.ts';
import { certificatesToPem, decodePemCertificates } from '../../src/common/pem.ts';
import { unaryCall } from '../../src/common/grpc-client.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { openDatastore } from '../../src/server/datastore/datastore.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const TD = 'example.org';

interface Agent {
  id: string;
  key: KeyObject;
  chain: Buffer[];
  clients: ServerClients;
}

let server: ServerHandle;
let rootsPem: string;
let anonymous: ServerClients;
const opened: ServerClients[] = [];

function address(): string {
  return `127.0.0.1:${server.port}`;
}

function mtls(chain: Buffer[], key: KeyObject): ServerClients {
  const clients = connectToServer({
    address: address(),
    trustDomain: TD,
    rootsPem,
    identity: { certChainPem: certificatesToPem(chain), keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString() },
  });
  opened.push(clients);
  return clients;
}

async function token(): Promise<string> {
  const out = await server.cli('token', 'generate', '-ttl', '600');
  expect(out.code).toBe(0);
  return /Token: (\S+)/.exec(out.stdout)?.[1] as string;
}

async function attest(joinToken: string): Promise<Agent> {
  const { privateKey, csr } = newKeyAndCsr();
  const result = await attestAgent(anonymous.agent, { type: 'join_token', payload: Buffer.from(joinToken), csr });
  return { id: result.spiffeId, key: privateKey, chain: result.certChain, clients: mtls(result.certChain, privateKey) };
}

async function createEntry(...args: string[]): Promise<string> {
  const out = await server.cli('entry', 'create', ...args);
  expect(out.stderr).toBe('');
  expect(out.code).toBe(0);
  return /Entry ID\s+: (\S+)/.exec(out.stdout)?.[1] as string;
}

async function entryCount(): Promise<number> {
  const out = await server.cli('entry', 'count');
  return Number(/^(\d+)/.exec(out.stdout)?.[1]);
}

async function rejection(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

function bundleRoots(): Buffer[] {
  return decodePemCertificates(rootsPem);
}

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD });
  rootsPem = await readBundlePem(server);
  anonymous = connectToServer({ address: address(), trustDomain: TD, rootsPem });
  opened.push(anonymous);
});

afterAll(async () => {
  for (const c of opened) c.close();
  await server?.cleanup();
});

describe('join_token node attestation', () => {
  it('issues an agent SVID for the join token agent ID that passes the X509-SVID profile', async () => {
    const t = await token();
    const agent = await attest(t);
    expect(agent.id).toBe(`spiffe://${TD}/spire/agent/join_token/${t}`);
    expect(checkX509SvidProfile(agent.chain, { expectedId: agent.id, bundleRootsDer: bundleRoots() })).toEqual([]);
    const shown = await server.cli('agent', 'show', '-spiffeID', agent.id);
    expect(shown.stdout).toContain('Attestation type  : join_token');
  });

  it('refuses a reused join token', async () => {
    const t = await token();
    await attest(t);
    const err = await rejection(attest(t));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toBe('failed to attest: join token does not exist or has already been used');
  });

  it('refuses an expired join token', async () => {
    const out = await server.cli('token', 'generate', '-ttl', '1');
    const t = /Token: (\S+)/.exec(out.stdout)?.[1] as string;
    await new Promise((r) => setTimeout(r, 2100));
    const err = await rejection(attest(t));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toBe('join token expired');
  });

  it('refuses an unknown attestation type', async () => {
    const err = await rejection(attestAgent(anonymous.agent, { type: 'aws_iid', payload: Buffer.from('x'), csr: newKeyAndCsr().csr }));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toBe('failed to attest: could not find node attestor type "aws_iid"');
  });

  it('refuses a CSR whose signature does not match its public key', async () => {
    const { csr } = newKeyAndCsr();
    const tampered = Buffer.from(csr);
    tampered[tampered.length - 5] = (tampered[tampered.length - 5] as number) ^ 0xff;
    const err = await rejection(attestAgent(anonymous.agent, { type: 'join_token', payload: Buffer.from(await token()), csr: tampered }));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toMatch(/^invalid CSR signature: /);
  });
});

describe('authorized entries', () => {
  let agent: Agent;
  let other: Agent;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    agent = await attest(await token());
    other = await attest(await token());
    // The agent's node selectors would come from k8s_psat; join_token has none, so the test
    // sets them in the datastore (the server shares it through SQLite WAL).
    const ds = openDatastore({ path: join(server.dir, 'data', 'datastore.sqlite3'), trustDomain: TD });
    ds.setAgentSelectors(agent.id, [{ type: 'k8s_psat', value: 'cluster:c1' }, { type: 'k8s_psat', value: 'agent_ns:spire' }]);
    ds.close();
    ids.child = await createEntry('-spiffeID', `spiffe://${TD}/child`, '-parentID', agent.id, '-selector', 'unix:uid:1000');
    ids.grandchild = await createEntry('-spiffeID', `spiffe://${TD}/grandchild`, '-parentID', `spiffe://${TD}/child`, '-selector', 'unix:uid:1001');
    ids.alias = await createEntry('-node', '-spiffeID', `spiffe://${TD}/cluster/c1`, '-selector', 'k8s_psat:cluster:c1');
    ids.viaAlias = await createEntry('-spiffeID', `spiffe://${TD}/via-alias`, '-parentID', `spiffe://${TD}/cluster/c1`, '-selector', 'k8s:ns:default');
    ids.nestedAlias = await createEntry('-spiffeID', `spiffe://${TD}/via-alias/nested`, '-parentID', `spiffe://${TD}/via-alias`, '-selector', 'k8s:sa:x');
    ids.strictAlias = await createEntry('-node', '-spiffeID', `spiffe://${TD}/cluster/c2`, '-selector', 'k8s_psat:cluster:c1', '-selector', 'k8s_psat:cluster:c2');
    ids.viaStrict = await createEntry('-spiffeID', `spiffe://${TD}/via-strict`, '-parentID', `spiffe://${TD}/cluster/c2`, '-selector', 'k8s:ns:x');
    ids.others = await createEntry('-spiffeID', `spiffe://${TD}/others`, '-parentID', other.id, '-selector', 'unix:uid:5');
  });

  const expected = (): string[] => [ids.child, ids.grandchild, ids.viaAlias, ids.nestedAlias].map(String).sort();

  it('GetAuthorizedEntries returns children, descendants and node-alias descendants only', async () => {
    const res = await unaryCall(agent.clients.entry, 'GetAuthorizedEntries', {});
    expect(res.entries.map((e) => e.id).sort()).toEqual(expected());
  });

  it('SyncAuthorizedEntries returns the same set', async () => {
    const { fetched: entries, unchanged } = await syncAuthorizedEntries(agent.clients.entry, new Map());
    expect(unchanged).toEqual([]);
    expect(entries.map((e) => e.id).sort()).toEqual(expected());
    const child = entries.find((e) => e.id === ids.child);
    expect(child?.spiffe_id).toEqual({ trust_domain: TD, path: '/child' });
    expect(child?.selectors).toEqual([{ type: 'unix', value: 'uid:1000' }]);
  });

  it('another agent sees only its own entries', async () => {
    const res = await unaryCall(other.clients.entry, 'GetAuthorizedEntries', {});
    expect(res.entries.map((e) => e.id)).toEqual([ids.others]);
  });

  it('a caller without an agent SVID is refused with AGENT_NOT_ATTESTED', async () => {
    const err = await rejection(unaryCall(anonymous.entry, 'GetAuthorizedEntries', {}));
    expect(err.code).toBe(Code.PERMISSION_DENIED);
    expect(err.details).toEqual({ reason: 'AGENT_NOT_ATTESTED' });
  });

  describe('BatchNewX509SVID', () => {
    it('signs an authorized entry and refuses an unauthorized one, index-aligned', async () => {
      const { privateKey, csr } = newKeyAndCsr(`spiffe://${TD}/via-alias`);
      const res = await unaryCall(agent.clients.svid, 'BatchNewX509SVID', {
        params: [
          { entry_id: ids.viaAlias, csr },
          { entry_id: ids.others, csr: newKeyAndCsr().csr },
          { entry_id: 'no-such-entry', csr: newKeyAndCsr().csr },
        ],
      });
      expect(res.results.map((r) => r.status?.code)).toEqual([Code.OK, Code.NOT_FOUND, Code.NOT_FOUND]);
      expect(res.results[1]?.status?.message).toBe('entry not found or not authorized');
      const svid = res.results[0]?.svid;
      expect(svid?.id).toEqual({ trust_domain: TD, path: '/via-alias' });
      const chain = svid?.cert_chain ?? [];
      expect(checkX509SvidProfile(chain, { expectedId: `spiffe://${TD}/via-alias`, bundleRootsDer: bundleRoots() })).toEqual([]);
      const leafKey = new X509Certificate(chain[0] as Buffer).publicKey.export({ format: 'der', type: 'spki' });
      expect(leafKey.equals(createPublicKey(privateKey).export({ format: 'der', type: 'spki' }))).toBe(true);
      expect(svid?.expires_at).toBe(Math.floor(new Date(new X509Certificate(chain[0] as Buffer).validTo).getTime() / 1000));
    });

    it('applies the entry TTL', async () => {
      const id = await createEntry('-spiffeID', `spiffe://${TD}/short`, '-parentID', agent.id, '-selector', 'unix:uid:7', '-x509SVIDTTL', '120');
      const res = await unaryCall(agent.clients.svid, 'BatchNewX509SVID', { params: [{ entry_id: id, csr: newKeyAndCsr().csr }] });
      const leaf = new X509Certificate(res.results[0]?.svid?.cert_chain[0] as Buffer);
      const lifetime = (Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 1000;
      expect(lifetime).toBeGreaterThanOrEqual(120);
      expect(lifetime).toBeLessThanOrEqual(130); // backdated by a few seconds, like SPIRE
    });

    const csrCases: Array<[string, () => Promise<Buffer>, string | RegExp]> = [
      ['a CSR whose URI SAN is not the entry\'s', async () => newKeyAndCsr(`spiffe://${TD}/someone-else`).csr, `CSR URI SAN "spiffe://${TD}/someone-else" does not match the expected SPIFFE ID "spiffe://${TD}/child"`],
      ['a CSR that is not DER', async () => Buffer.from('not a csr'), /^malformed CSR: /],
      [
        'a CSR signed by a different key than the one it carries',
        async () => {
          const good = await makeCsr(generateKeyPairSync('ec', { namedCurve: 'P-256' }));
          const tampered = Buffer.from(good);
          tampered[tampered.length - 3] = (tampered[tampered.length - 3] as number) ^ 0x01;
          return tampered;
        },
        /^invalid CSR signature: /,
      ],
    ];
    for (const [name, makeBadCsr, message] of csrCases) {
      it(`refuses ${name} with INVALID_ARGUMENT`, async () => {
        const res = await unaryCall(agent.clients.svid, 'BatchNewX509SVID', { params: [{ entry_id: ids.child, csr: await makeBadCsr() }] });
        expect(res.results[0]?.status?.code).toBe(Code.INVALID_ARGUMENT);
        expect(res.results[0]?.status?.message).toMatch(message);
        expect(res.results[0]?.svid).toBeNull();
      });
    }
  });

  describe('NewJWTSVID', () => {
    it('signs a JWT-SVID that jose verifies against the JWKS built from GetBundle', async () => {
      const res = await unaryCall(agent.clients.svid, 'NewJWTSVID', { entry_id: ids.child, audience: ['aud-1', 'aud-2'] });
      const token = res.svid?.token as string;
      const bundle = await unaryCall(anonymous.bundle, 'GetBundle', {});
      const keys: JWK[] = bundle.jwt_authorities.map((k) => ({
        ...createPublicKey({ key: k.public_key, format: 'der', type: 'spki' }).export({ format: 'jwk' }),
        kid: k.key_id,
      }));
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet({ keys }), { audience: 'aud-2' });
      expect(Object.keys(protectedHeader).sort()).toEqual(['alg', 'kid', 'typ']);
      expect(protectedHeader.alg).toBe('ES256');
      expect(protectedHeader.typ).toBe('JWT');
      expect(Object.keys(payload).sort()).toEqual(['aud', 'exp', 'iat', 'sub']);
      expect(payload.sub).toBe(`spiffe://${TD}/child`);
      expect(payload.aud).toEqual(['aud-1', 'aud-2']);
      expect(res.svid?.expires_at).toBe(payload.exp);
      expect(bundle.jwt_authorities.map((k) => k.key_id)).toContain(decodeProtectedHeader(token).kid);
    });

    it('refuses an empty audience', async () => {
      const err = await rejection(unaryCall(agent.clients.svid, 'NewJWTSVID', { entry_id: ids.child, audience: [] }));
      expect(err.code).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toBe('at least one audience is required');
    });

    it('refuses an entry the agent is not authorized for', async () => {
      const err = await rejection(unaryCall(agent.clients.svid, 'NewJWTSVID', { entry_id: ids.others, audience: ['a'] }));
      expect(err.code).toBe(Code.NOT_FOUND);
    });
  });
});

describe('agent SVID renewal', () => {
  it('RenewAgent issues a new SVID; using it makes the old one AGENT_NOT_ACTIVE', async () => {
    const agent = await attest(await token());
    const { privateKey, csr } = newKeyAndCsr();
    const res = await unaryCall(agent.clients.agent, 'RenewAgent', { params: { csr } });
    const newChain = res.svid?.cert_chain as Buffer[];
    expect(checkX509SvidProfile(newChain, { expectedId: agent.id, bundleRootsDer: bundleRoots() })).toEqual([]);

    // Until the new SVID is used, the old one still works.
    await unaryCall(agent.clients.entry, 'GetAuthorizedEntries', {});
    const renewed = mtls(newChain, privateKey);
    await unaryCall(renewed.entry, 'GetAuthorizedEntries', {});
    const err = await rejection(unaryCall(agent.clients.entry, 'GetAuthorizedEntries', {}));
    expect(err.code).toBe(Code.PERMISSION_DENIED);
    expect(err.message).toBe('agent is not active');
    expect(err.details).toEqual({ reason: 'AGENT_NOT_ACTIVE' });
  });

  it('a banned agent gets AGENT_BANNED and cannot attest again', async () => {
    const agent = await attest(await token());
    expect((await server.cli('agent', 'ban', '-spiffeID', agent.id)).stdout).toContain('Agent banned successfully');
    const err = await rejection(unaryCall(agent.clients.entry, 'GetAuthorizedEntries', {}));
    expect(err.details).toEqual({ reason: 'AGENT_BANNED' });
  });

  it('an evicted agent gets AGENT_NOT_ATTESTED', async () => {
    const agent = await attest(await token());
    expect((await server.cli('agent', 'evict', '-spiffeID', agent.id)).code).toBe(0);
    const err = await rejection(unaryCall(agent.clients.svid, 'NewJWTSVID', { entry_id: 'x', audience: ['a'] }));
    expect(err.details).toEqual({ reason: 'AGENT_NOT_ATTESTED' });
  });
});

describe('registration entries through the CLI', () => {
  const bad: Array<[string, string[], RegExp | string]> = [
    ['an invalid SPIFFE ID', ['-spiffeID', 'http://example.org/x', '-parentID', `spiffe://${TD}/p`, '-selector', 'unix:uid:1'], '-spiffeID: SPIFFE ID "http://example.org/x" must use the spiffe scheme'],
    ['no selectors', ['-spiffeID', `spiffe://${TD}/x`, '-parentID', `spiffe://${TD}/p`], 'at least one selector is required (-selector type:value)'],
    ['a malformed selector', ['-spiffeID', `spiffe://${TD}/x`, '-parentID', `spiffe://${TD}/p`, '-selector', 'nocolon'], 'selector "nocolon" must be formatted as type:value'],
    ['a SPIFFE ID in another trust domain', ['-spiffeID', 'spiffe://other.org/x', '-parentID', `spiffe://${TD}/p`, '-selector', 'unix:uid:1'], /other\.org/],
  ];
  for (const [name, args, message] of bad) {
    it(`refuses ${name} and leaves the datastore unchanged`, async () => {
      const before = await entryCount();
      const out = await server.cli('entry', 'create', ...args);
      expect(out.code).not.toBe(0);
      expect(out.stderr).toMatch(typeof message === 'string' ? new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : message);
      expect(await entryCount()).toBe(before);
    });
  }

  it('refuses a duplicate entry and leaves the datastore unchanged', async () => {
    const args = ['-spiffeID', `spiffe://${TD}/dup`, '-parentID', `spiffe://${TD}/p`, '-selector', 'unix:uid:9'];
    await createEntry(...args);
    const before = await entryCount();
    const out = await server.cli('entry', 'create', ...args);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('Failed to create the following entry (code: AlreadyExists, msg: ');
    expect(await entryCount()).toBe(before);
  });

  it('updates and deletes an entry', async () => {
    const id = await createEntry('-spiffeID', `spiffe://${TD}/upd`, '-parentID', `spiffe://${TD}/p`, '-selector', 'unix:uid:10');
    const updated = await server.cli('entry', 'update', '-entryID', id, '-spiffeID', `spiffe://${TD}/upd`, '-parentID', `spiffe://${TD}/p`, '-selector', 'unix:uid:11', '-hint', 'h');
    expect(updated.stdout).toContain('Revision         : 1');
    expect(updated.stdout).toContain('Selector         : unix:uid:11');
    expect((await server.cli('entry', 'delete', '-entryID', id)).stdout).toBe(`Deleted entry with ID: ${id}\n`);
    const gone = await server.cli('entry', 'show', '-entryID', id);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe('Error: entry not found (NOT_FOUND)\n');
  });
});

describe('bundles', () => {
  it('bundle show prints the same roots the data dir holds, in PEM and SPIFFE formats', async () => {
    const pem = await server.cli('bundle', 'show');
    expect(decodePemCertificates(pem.stdout).map((c) => c.toString('hex'))).toEqual(bundleRoots().map((c) => c.toString('hex')));
    const spiffe = JSON.parse((await server.cli('bundle', 'show', '-format', 'spiffe')).stdout) as { keys: { use: string }[] };
    expect(spiffe.keys.map((k) => k.use).sort()).toEqual(['jwt-svid', 'x509-svid']);
  });

  it('bundle set stores a federated bundle that agents can read', async () => {
    const federated = await startServerProcess({ trustDomain: 'federated.org' });
    try {
      const file = join(server.dir, 'federated.json');
      await writeFile(file, (await federated.cli('bundle', 'show', '-format', 'spiffe')).stdout);
      const set = await server.cli('bundle', 'set', '-id', 'spiffe://federated.org', '-path', file, '-format', 'spiffe');
      expect(set.stdout).toBe('bundle set.\n');
      const agent = await attest(await token());
      const b = await unaryCall(agent.clients.bundle, 'GetFederatedBundle', { trust_domain: 'federated.org' });
      expect(b.trust_domain).toBe('federated.org');
      expect(certificatesToPem(b.x509_authorities.map((c) => c.asn1))).toBe(await readBundlePem(federated));
      const missing = await rejection(unaryCall(agent.clients.bundle, 'GetFederatedBundle', { trust_domain: 'nowhere.org' }));
      expect(missing.code).toBe(Code.NOT_FOUND);
    } finally {
      await federated.cleanup();
    }
  });
});

describe('server process', () => {
  it('restarts on the same data dir with the same CA, entries and agents', async () => {
    const agent = await attest(await token());
    const before = await entryCount();
    expect(await server.stop()).toBe(0);
    await server.restart();
    expect(await readBundlePem(server)).toBe(rootsPem);
    expect(await entryCount()).toBe(before);
    const again = mtls(agent.chain, agent.key);
    await unaryCall(again.entry, 'GetAuthorizedEntries', {});
  });

  it('exits non-zero naming the field for a malformed config', async () => {
    const file = join(server.dir, 'bad.conf');
    await writeFile(file, 'server {\n trust_domain = "example.org"\n data_dir = "x"\n bind_prot = 1\n}\n');
    const run = promisify(execFile);
    const err = await run(NODE, [SERVER_BIN, 'run', '-config', file]).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toContain('config: server.bind_prot: unknown key (did you mean "bind_port"?)');
  });
});
