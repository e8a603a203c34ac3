/**
 * The admin API's pure parts: who may use the Delegated Identity API, how a request names a
 * workload, the response messages, the Debug API's verified chain and Go-formatted subjects,
 * and the admin settings' validation.
 */
import { describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.ts';
import { parseConfigText } from '../../src/common/config-file.ts';
import { ConfigReader } from '../../src/common/config-reader.ts';
import { decodePemCertificates } from '../../src/common/pem.ts';
import { parseAdminConfig } from '../../src/agent/admin/admin-config.ts';
import { authorizeDelegate, delegateTarget, requireAudience } from '../../src/agent/admin/delegate-checks.ts';
import { jwtBundlesMap, jwtSvidMessage, tokenTimes, x509BundlesMap, x509SvidsResponse } from '../../src/agent/admin/delegated-responses.ts';
import { verifiedChain } from '../../src/agent/admin/debug-service.ts';
import { goNameString } from '../../src/agent/admin/distinguished-name.ts';
import type { BundleSnapshot, X509Identity } from '../../src/agent/manager/workload-state.ts';
import { HOUR, issueTestLeaf, makeTestCa } from '../support/ca-fixtures.ts';

function thrown(fn: () => unknown): { code: Code; message: string } | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    return { code: err.code, message: err.message };
  }
}

describe('authorizeDelegate', () => {
  const authorized = new Set(['spiffe://example.org/cilium']);
  it.each([
    ['no entry', [], { ok: false, code: Code.PERMISSION_DENIED, message: 'no identity issued' }],
    ['entries, none authorized', ['spiffe://example.org/a', 'spiffe://example.org/b'], { ok: false, code: Code.PERMISSION_DENIED, message: 'caller not configured as an authorized delegate' }],
    ['an authorized entry among others', ['spiffe://example.org/a', 'spiffe://example.org/cilium'], { ok: true, delegateId: 'spiffe://example.org/cilium' }],
    ['a prefix of an authorized ID is not it', ['spiffe://example.org/cilium/x'], { ok: false, code: Code.PERMISSION_DENIED, message: 'caller not configured as an authorized delegate' }],
  ])('%s', (_name, ids, expected) => {
    const decision = authorizeDelegate(ids, authorized);
    expect(decision.ok ? { ok: true, delegateId: decision.delegateId } : { ok: false, code: decision.error.code, message: decision.error.message }).toEqual(expected);
  });

  it('names the caller’s first entry and its entry count when refusing', () => {
    const decision = authorizeDelegate(['spiffe://example.org/a', 'spiffe://example.org/b'], authorized);
    expect(decision.ok ? undefined : { entries: decision.entries, defaultId: decision.defaultId }).toEqual({ entries: 2, defaultId: 'spiffe://example.org/a' });
  });
});

describe('delegateTarget', () => {
  const XOR = { code: Code.INVALID_ARGUMENT, message: 'must provide either selectors or non-zero PID, but not both' };
  const BAD = { code: Code.INVALID_ARGUMENT, message: 'could not parse provided selectors' };
  it.each([
    ['selectors only', [{ type: 'k8s', value: 'ns:a:b' }], 0, { kind: 'selectors', selectors: [{ type: 'k8s', value: 'ns:a:b' }] }],
    ['a PID only', [], 42, { kind: 'pid', pid: 42 }],
    ['a negative PID is a PID (attestation finds nothing)', [], -1, { kind: 'pid', pid: -1 }],
  ])('%s', (_name, selectors, pid, expected) => {
    expect(delegateTarget(selectors, pid)).toEqual(expected);
  });

  it.each([
    ['both', [{ type: 'unix', value: 'uid:1' }], 7, XOR],
    ['neither', [], 0, XOR],
    ['an empty type', [{ type: '', value: 'uid:1' }], 0, BAD],
    ['a type with a colon', [{ type: 'unix:uid', value: '1' }], 0, BAD],
    ['an empty value', [{ type: 'unix', value: '' }], 0, BAD],
  ])('refuses %s', (_name, selectors, pid, expected) => {
    expect(thrown(() => delegateTarget(selectors, pid))).toEqual(expected);
  });

  it('requires an audience for FetchJWTSVIDs', () => {
    expect(thrown(() => requireAudience([]))).toEqual({ code: Code.INVALID_ARGUMENT, message: 'audience must be specified' });
    expect(thrown(() => requireAudience(['a']))).toBeUndefined();
  });
});

describe('delegated responses', () => {
  const der = (n: number): Buffer => Buffer.from([0x30, 0x01, n]);
  const bundles: BundleSnapshot = {
    trustDomain: 'example.org',
    x509: new Map([
      ['example.org', Buffer.concat([der(1), der(2)])],
      ['other.org', der(3)],
    ]),
    jwks: new Map([
      ['example.org', Buffer.from('{"keys":[]}')],
      ['other.org', Buffer.from('{"keys":[{"kid":"k"}]}')],
    ]),
    jwtKeys: new Map(),
  };
  const identity = (entryId: string, spiffeId: string, federatesWith: string[]): X509Identity => ({
    entryId,
    spiffeId,
    hint: `hint-${entryId}`,
    createdAt: 1,
    certChain: Buffer.concat([der(10), der(11)]),
    privateKey: Buffer.from('pkcs8'),
    expiresAt: 1_900_000_000,
    federatesWith,
  });

  it('X509-SVIDs: each chain split into certificates, withheld entries left out, federated trust domains with a bundle, sorted', () => {
    const state = {
      identities: [identity('a', 'spiffe://example.org/web', ['zzz.org', 'other.org']), identity('b', 'spiffe://example.org/admin', ['other.org'])],
      bundles,
    };
    expect(x509SvidsResponse(state, new Set(['b']))).toEqual({
      x509_svids: [
        {
          x509_svid: { cert_chain: [der(10), der(11)], id: { trust_domain: 'example.org', path: '/web' }, expires_at: 1_900_000_000, hint: 'hint-a' },
          x509_svid_key: Buffer.from('pkcs8'),
        },
      ],
      federates_with: ['spiffe://other.org'],
    });
  });

  it('bundle maps are keyed by trust domain ID', () => {
    expect(x509BundlesMap(bundles)).toEqual({ 'spiffe://example.org': Buffer.concat([der(1), der(2)]), 'spiffe://other.org': der(3) });
    expect(Object.fromEntries(Object.entries(jwtBundlesMap(bundles)).map(([k, v]) => [k, v.toString()]))).toEqual({
      'spiffe://example.org': '{"keys":[]}',
      'spiffe://other.org': '{"keys":[{"kid":"k"}]}',
    });
  });

  it('a JWT-SVID message carries the token’s exp and iat', () => {
    const claims = Buffer.from(JSON.stringify({ sub: 'spiffe://example.org/web', exp: 1_800_000_300, iat: 1_800_000_000 })).toString('base64url');
    const token = `eyJhbGciOiJFUzI1NiJ9.${claims}.sig`;
    expect(jwtSvidMessage({ entryId: 'a', spiffeId: 'spiffe://example.org/web', hint: 'h', createdAt: 1, token })).toEqual({
      token,
      id: { trust_domain: 'example.org', path: '/web' },
      expires_at: 1_800_000_300,
      issued_at: 1_800_000_000,
      hint: 'h',
    });
    expect(tokenTimes('not-a-jwt')).toEqual({ expiresAt: 0, issuedAt: 0 });
  });
});

describe('goNameString (Go pkix.Name.String(), vectors printed by Go 1.26)', () => {
  it.each([
    ['301d310b3009060355040613025553310e300c060355040a13055350495245', 'O=SPIRE,C=US'],
    ['302d310b3009060355040613025553310f300d060355040a1306535049464645310d300b060355042d130461316232', 'O=SPIFFE,C=US,2.5.4.45=#130461316232'],
    ['301d311b301906035504030c12206c656164232c202278222b793b3c7a3e20', 'CN=\\ lead#\\, \\"x\\"\\+y\\;\\<z\\>\\ '],
    ['3044310a3008060355040a130142310b3009060355040613024445310a3008060355040a130141310e300c060355040313056669727374310d300b060355040313046c617374', 'CN=last,O=B+O=A,C=DE'],
    ['3021310f300d06035504030c0668c3a96c6c6f310e300c06032a03040c05785f79407a', 'CN=héllo,1.2.3.4=#0c05785f79407a'],
    ['3000', ''],
  ])('%s', (hex, expected) => {
    expect(goNameString(Buffer.from(hex, 'hex'))).toBe(expected);
  });
});

describe('verifiedChain (GetInfo svid_chain)', () => {
  it('is the SVID’s chain up to the root that signed it, then that root; undefined for another root', async () => {
    const now = Date.now();
    const root = await makeTestCa({ name: 'C=US, O=SPIFFE', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
    const intermediate = await makeTestCa({ name: 'C=US, O=SPIFFE, CN=intermediate', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR), issuer: root });
    const other = await makeTestCa({ name: 'C=US, O=Other', notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
    const leaf = decodePemCertificates((await issueTestLeaf(intermediate, { cn: 'agent', usage: 'client' })).certPem)[0] as Buffer;

    const chain = verifiedChain([leaf, intermediate.der], [other.der, root.der]);
    expect(chain?.map((c) => goNameString(c.subjectDer))).toEqual(['CN=agent', 'CN=intermediate,O=SPIFFE,C=US', 'O=SPIFFE,C=US']);
    // A chain that carries the root is not given it twice.
    expect(verifiedChain([leaf, intermediate.der, root.der], [root.der])?.length).toBe(3);
    expect(verifiedChain([leaf, intermediate.der], [other.der])).toBeUndefined();
  });
});

describe('parseAdminConfig', () => {
  async function read(agentBlock: string): Promise<{ config?: unknown; error?: string; warnings: string[] }> {
    const tree = await parseConfigText('agent.conf', `agent {\n${agentBlock}\n}`);
    const warnings: string[] = [];
    try {
      const agent = new ConfigReader(tree, '').block('agent');
      return { config: parseAdminConfig(agent, 'example.org', '/run/spire/agent-sockets/api.sock', '/w', warnings), warnings };
    } catch (err) {
      return { error: (err as Error).message, warnings };
    }
  }

  it.each([
    ['off by default', '', { config: { adminSocketPath: undefined, authorizedDelegates: [] }, warnings: [] }],
    [
      'a path in another directory, relative to the working directory',
      'admin_socket_path = "admin/admin.sock"\nauthorized_delegates = ["spiffe://example.org/cilium"]',
      { config: { adminSocketPath: '/w/admin/admin.sock', authorizedDelegates: ['spiffe://example.org/cilium'] }, warnings: [] },
    ],
    [
      'delegates without a socket: a warning',
      'authorized_delegates = ["spiffe://example.org/cilium"]',
      { config: { adminSocketPath: undefined, authorizedDelegates: ['spiffe://example.org/cilium'] }, warnings: ['agent.authorized_delegates has no effect without agent.admin_socket_path: the Delegated Identity API is not served'] },
    ],
    [
      'the Workload API socket’s directory',
      'admin_socket_path = "/run/spire/agent-sockets/admin.sock"',
      { error: 'config: agent.admin_socket_path: admin socket cannot be in the same directory or a subdirectory as that containing the Workload API socket', warnings: [] },
    ],
    [
      'a subdirectory of it',
      'admin_socket_path = "/run/spire/agent-sockets/private/admin.sock"',
      { error: 'config: agent.admin_socket_path: admin socket cannot be in the same directory or a subdirectory as that containing the Workload API socket', warnings: [] },
    ],
    [
      'a sibling directory whose name starts the same',
      'admin_socket_path = "/run/spire/agent-sockets-admin/admin.sock"',
      { config: { adminSocketPath: '/run/spire/agent-sockets-admin/admin.sock', authorizedDelegates: [] }, warnings: [] },
    ],
    [
      'a delegate of another trust domain',
      'admin_socket_path = "/run/admin.sock"\nauthorized_delegates = ["spiffe://other.org/cilium"]',
      { error: 'config: agent.authorized_delegates: error validating authorized delegate: SPIFFE ID "spiffe://other.org/cilium" is not a member of trust domain "example.org"', warnings: [] },
    ],
    [
      'a delegate that is not a SPIFFE ID',
      'admin_socket_path = "/run/admin.sock"\nauthorized_delegates = ["cilium"]',
      { error: 'config: agent.authorized_delegates: error validating authorized delegate: SPIFFE ID "cilium" must use the spiffe scheme', warnings: [] },
    ],
  ])('%s', async (_name, block, expected) => {
    expect(await read(block)).toEqual(expected);
  });
});
