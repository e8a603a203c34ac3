/**
 * The server CLI prints what spire-server prints (cmd/spire-server/cli, v1.13–v1.15), byte for
 * byte, for the commands scripts use: agent list|show|count (decimal serials, Go's time format
 * in the local zone, "Banned" in place of the serial), entry show|count|create (Go's time
 * format in UTC, SPIRE's sort order, a blank line after each entry, `-data` batch create),
 * bundle show -format spiffe, token generate, healthcheck, and `-output json` for them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startServerProcess, readBundlePem, NODE, SERVER_BIN, type ServerHandle } from '../support/server-process.ts';
import { connectToServer, type ServerClients } from '../../src/agent/server-client/connection.ts';
import { attestAgent } from '../../src/agent/server-client/attest.ts';
import { newKeyAndCsr } from '../../src/common/csr.ts';
import { formatGoTime } from '../../src/common/go-time.ts';

const TD = 'cli.example';
const execFileAsync = promisify(execFile);

let server: ServerHandle;
let anonymous: ServerClients;

/** Runs the CLI against the server's admin socket with `TZ` set. */
async function cli(tz: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(NODE, [SERVER_BIN, ...args, '-socketPath', server.socketPath], { env: { ...process.env, TZ: tz }, timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function attest(spiffeIdSuffix: string): Promise<{ id: string; serialDecimal: string; expiresAt: number }> {
  const out = await cli('UTC', 'token', 'generate', '-spiffeID', `spiffe://${TD}/${spiffeIdSuffix}`);
  const token = /Token: (\S+)/.exec(out.stdout)?.[1] as string;
  const { csr } = newKeyAndCsr();
  const result = await attestAgent(anonymous.agent, { type: 'join_token', payload: Buffer.from(token), csr });
  const leaf = new X509Certificate(result.certChain[0] as Buffer);
  return { id: result.spiffeId, serialDecimal: BigInt(`0x${leaf.serialNumber}`).toString(10), expiresAt: result.expiresAt };
}

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD });
  anonymous = connectToServer({ address: `127.0.0.1:${server.port}`, trustDomain: TD, rootsPem: await readBundlePem(server) });
});

afterAll(async () => {
  anonymous?.close();
  await server?.cleanup();
});

describe('agent list|show|count and token generate, as spire-server', () => {
  it('token generate warns without -spiffeID, as spire-server', async () => {
    const out = await cli('UTC', 'token', 'generate');
    expect(out.stdout).toMatch(/^Token: [0-9a-f-]{36}\nWarning: Missing SPIFFE ID\.\n$/);
    const named = await cli('UTC', 'token', 'generate', '-spiffeID', `spiffe://${TD}/named`);
    expect(named.stdout).toMatch(/^Token: [0-9a-f-]{36}\n$/);
  });

  it('prints decimal serials and Go times in the local zone; banned agents show "Banned" instead of a serial', async () => {
    const a = await attest('agent-a');
    const b = await attest('agent-b');
    const [first, second] = [a, b].sort((x, y) => (x.id < y.id ? -1 : 1)) as [typeof a, typeof a];
    // Go prints time.Unix(x, 0) in time.Local: TZ decides the zone, as for spire-server.
    const block = (agent: typeof a, tz: string): string =>
      [
        `SPIFFE ID         : ${agent.id}`,
        'Attestation type  : join_token',
        `Expiration time   : ${formatGoTime(agent.expiresAt * 1000, tz)}`,
        `Serial number     : ${agent.serialDecimal}`,
        'Can re-attest     : false',
        '',
        '',
      ].join('\n');
    expect(formatGoTime(a.expiresAt * 1000, 'America/New_York')).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} -0[45]00 E[SD]T$/);
    const listed = await cli('America/New_York', 'agent', 'list');
    expect(listed).toEqual({ code: 0, stdout: `Found 2 attested agents:\n\n${block(first, 'America/New_York')}${block(second, 'America/New_York')}`, stderr: '' });

    const shown = await cli('UTC', 'agent', 'show', '-spiffeID', a.id);
    // (join_token agents have no selectors; others get "Selectors         : type:value" lines here.)
    expect(shown.stdout).toBe(`Found an attested agent given its SPIFFE ID\n\n${block(a, 'UTC')}`);
    expect((await cli('UTC', 'agent', 'count')).stdout).toBe('2 attested agents\n');

    expect((await cli('UTC', 'agent', 'ban', '-spiffeID', b.id)).stdout).toBe('Agent banned successfully\n');
    const banned = await cli('UTC', 'agent', 'show', '-spiffeID', b.id);
    expect(banned.stdout).toBe(
      [
        'Found an attested agent given its SPIFFE ID',
        '',
        `SPIFFE ID         : ${b.id}`,
        'Attestation type  : join_token',
        `Expiration time   : ${formatGoTime(b.expiresAt * 1000, 'UTC')}`,
        'Banned            : true',
        'Can re-attest     : false',
        '',
        '',
      ].join('\n'),
    );
    await cli('UTC', 'agent', 'evict', '-spiffeID', a.id);
    await cli('UTC', 'agent', 'evict', '-spiffeID', b.id);
    expect((await cli('UTC', 'agent', 'list')).stdout).toBe('No attested agents found\n');
    expect((await cli('UTC', 'agent', 'count')).stdout).toBe('0 attested agents\n');
  });
});

describe('entry show|count|create, as spire-server', () => {
  it('shows entries sorted as SPIRE, expiry in Go format (UTC), a blank line after each', async () => {
    const create = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => cli('Asia/Tokyo', 'entry', 'create', '-parentID', `spiffe://${TD}/parent`, ...args);
    // Created out of order; the second has two selectors given out of order.
    const z = await create('-spiffeID', `spiffe://${TD}/z`, '-selector', 'unix:uid:1');
    const y = await create('-spiffeID', `spiffe://${TD}/y`, '-selector', 'unix:uid:2', '-selector', 'k8s:ns:a', '-entryExpiry', '1893456000', '-x509SVIDTTL', '60');
    const idOf = (out: { stdout: string }): string => /Entry ID\s+: (\S+)/.exec(out.stdout)?.[1] as string;
    expect(y.stdout).toBe(
      [
        `Entry ID         : ${idOf(y)}`,
        `SPIFFE ID        : spiffe://${TD}/y`,
        `Parent ID        : spiffe://${TD}/parent`,
        'Revision         : 0',
        'X509-SVID TTL    : 60',
        'JWT-SVID TTL     : default',
        'Expiration time  : 2030-01-01 00:00:00 +0000 UTC',
        'Selector         : k8s:ns:a',
        'Selector         : unix:uid:2',
        '',
        '',
      ].join('\n'),
    );
    const shown = await cli('Asia/Tokyo', 'entry', 'show', '-parentID', `spiffe://${TD}/parent`);
    expect(shown.stdout).toBe(
      [
        'Found 2 entries',
        `Entry ID         : ${idOf(y)}`,
        `SPIFFE ID        : spiffe://${TD}/y`,
        `Parent ID        : spiffe://${TD}/parent`,
        'Revision         : 0',
        'X509-SVID TTL    : 60',
        'JWT-SVID TTL     : default',
        'Expiration time  : 2030-01-01 00:00:00 +0000 UTC',
        'Selector         : k8s:ns:a',
        'Selector         : unix:uid:2',
        '',
        `Entry ID         : ${idOf(z)}`,
        `SPIFFE ID        : spiffe://${TD}/z`,
        `Parent ID        : spiffe://${TD}/parent`,
        'Revision         : 0',
        'X509-SVID TTL    : default',
        'JWT-SVID TTL     : default',
        'Selector         : unix:uid:1',
        '',
        '',
      ].join('\n'),
    );
    expect((await cli('UTC', 'entry', 'show', '-spiffeID', `spiffe://${TD}/none`)).stdout).toBe('Found 0 entries\n');
    // Tokens generated with -spiffeID above made entries too.
    const all = Number(/^Found (\d+) entries\n/.exec((await cli('UTC', 'entry', 'show')).stdout)?.[1]);
    expect((await cli('UTC', 'entry', 'count')).stdout).toBe(`${all} registration entries\n`);
  });

  it('entry create -data creates a batch from SPIRE JSON and reports failures as spire-server', async () => {
    const file = join(server.dir, 'entries.json');
    await writeFile(
      file,
      JSON.stringify({
        entries: [
          { selectors: [{ type: 'unix', value: 'uid:1001' }], spiffe_id: `spiffe://${TD}/batch/one`, parent_id: `spiffe://${TD}/node`, x509_svid_ttl: 300, dns_names: ['one.example'] },
          { selectors: [{ type: 'unix', value: 'uid:1002' }], spiffe_id: `spiffe://${TD}/batch/two`, parent_id: `spiffe://${TD}/node`, entryExpiry: 1893456000, admin: true, hint: 'h' },
        ],
      }),
    );
    const out = await cli('UTC', 'entry', 'create', '-data', file);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const ids = [...out.stdout.matchAll(/Entry ID\s+: (\S+)/g)].map((m) => m[1]);
    expect(ids).toHaveLength(2);
    expect(out.stdout).toBe(
      [
        `Entry ID         : ${ids[0]}`,
        `SPIFFE ID        : spiffe://${TD}/batch/one`,
        `Parent ID        : spiffe://${TD}/node`,
        'Revision         : 0',
        'X509-SVID TTL    : 300',
        'JWT-SVID TTL     : default',
        'Selector         : unix:uid:1001',
        'DNS name         : one.example',
        '',
        `Entry ID         : ${ids[1]}`,
        `SPIFFE ID        : spiffe://${TD}/batch/two`,
        `Parent ID        : spiffe://${TD}/node`,
        'Revision         : 0',
        'X509-SVID TTL    : default',
        'JWT-SVID TTL     : default',
        'Expiration time  : 2030-01-01 00:00:00 +0000 UTC',
        'Selector         : unix:uid:1002',
        'Admin            : true',
        'Hint             : h',
        '',
        '',
      ].join('\n'),
    );

    // The same file again: both already exist; each is printed as sent, then the error.
    const again = await cli('UTC', 'entry', 'create', '-data', file);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    const head = (n: string): string[] => [
      'Failed to create the following entry (code: AlreadyExists, msg: "similar entry already exists"):',
      'Entry ID         : (none)',
      `SPIFFE ID        : spiffe://${TD}/batch/${n}`,
      `Parent ID        : spiffe://${TD}/node`,
      'Revision         : 0',
    ];
    expect(again.stderr).toBe(
      [
        ...head('one'),
        'X509-SVID TTL    : 300',
        'JWT-SVID TTL     : default',
        'Selector         : unix:uid:1001',
        'DNS name         : one.example',
        '',
        ...head('two'),
        'X509-SVID TTL    : default',
        'JWT-SVID TTL     : default',
        'Expiration time  : 2030-01-01 00:00:00 +0000 UTC',
        'Selector         : unix:uid:1002',
        'Admin            : true',
        'Hint             : h',
        '',
        'Error: failed to create one or more entries',
        '',
      ].join('\n'),
    );

    const bad = join(server.dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ entries: [{ spiffe_id: 'not-an-id', parent_id: `spiffe://${TD}/node`, selectors: [{ type: 'unix', value: 'uid:1' }] }] }));
    const refused = await cli('UTC', 'entry', 'create', '-data', bad);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^Error: entries\[0\]: invalid SPIFFE ID: /);
  });
});

describe('-output json, as spire-server (protojson with proto names and unpopulated fields, keys sorted, nulls dropped)', () => {
  it('prints agent, entry, token and bundle responses as spire-server does', async () => {
    const token = JSON.parse((await cli('UTC', 'token', 'generate', '-output', 'json')).stdout) as Record<string, unknown>;
    expect(Object.keys(token)).toEqual(['expires_at', 'value']);
    expect(token['expires_at']).toMatch(/^\d+$/);

    const a = await attest('json-agent');
    const show = await cli('UTC', 'agent', 'show', '-spiffeID', a.id, '-output', 'json');
    const [td, path] = [TD, a.id.slice(`spiffe://${TD}`.length)];
    expect(show.stdout).toBe(
      `{"agent_version":"","attestation_type":"join_token","banned":false,"can_reattest":false,"id":{"path":"${path}","trust_domain":"${td}"},"selectors":[],"x509svid_expires_at":"${a.expiresAt}","x509svid_serial_number":"${a.serialDecimal}"}\n`,
    );
    const list = JSON.parse((await cli('UTC', 'agent', 'list', '-output', 'json')).stdout) as { agents: unknown[]; next_page_token: string };
    expect(list.next_page_token).toBe('');
    expect(list.agents).toContainEqual(JSON.parse(show.stdout));
    expect((await cli('UTC', 'agent', 'count', '-output', 'json')).stdout).toMatch(/^\{"count":\d+\}\n$/);
    await cli('UTC', 'agent', 'evict', '-spiffeID', a.id);

    const created = await cli('UTC', 'entry', 'create', '-spiffeID', `spiffe://${TD}/json`, '-parentID', `spiffe://${TD}/p`, '-selector', 'unix:uid:7', '-selector', 'a:b', '-hint', '<&>', '-output', 'json');
    expect(created.stdout).toMatch(/^\{"results":\[\{"entry":\{"admin":false,"created_at":"\d+","dns_names":\[\],"downstream":false,"expires_at":"0","federates_with":\[\],"hint":"\\u003c\\u0026\\u003e","id":"[^"]+","jwt_svid_ttl":0,"parent_id":\{"path":"\/p","trust_domain":"cli.example"\},"revision_number":"0","selectors":\[\{"type":"a","value":"b"\},\{"type":"unix","value":"uid:7"\}\],"spiffe_id":\{"path":"\/json","trust_domain":"cli.example"\},"store_svid":false,"x509_svid_ttl":0\},"status":\{"code":0,"message":"OK"\}\}\]\}\n$/);
    const shown = await cli('UTC', 'entry', 'show', '-spiffeID', `spiffe://${TD}/json`, '-output', 'json');
    const doc = JSON.parse(shown.stdout) as { entries: { selectors: unknown[] }[]; next_page_token: string };
    expect(doc.next_page_token).toBe('');
    // Sorted as spire-server sorts them before printing.
    expect(doc.entries[0]?.selectors).toEqual([{ type: 'a', value: 'b' }, { type: 'unix', value: 'uid:7' }]);
    expect((await cli('UTC', 'entry', 'count', '-output', 'json')).stdout).toMatch(/^\{"count":\d+\}\n$/);

    const bundle = JSON.parse((await cli('UTC', 'bundle', 'show', '-output', 'json')).stdout) as Record<string, unknown>;
    expect(Object.keys(bundle)).toEqual(['jwt_authorities', 'refresh_hint', 'sequence_number', 'trust_domain', 'wit_authorities', 'x509_authorities']);
    expect(bundle['trust_domain']).toBe(TD);

    const bad = await cli('UTC', 'agent', 'count', '-output', 'yaml');
    expect(bad.code).not.toBe(0);
  });
});

describe('bundle show, as spire-server', () => {
  it('prints SPIFFE JSON with 4-space indent and go-jose member order', async () => {
    const out = await cli('UTC', 'bundle', 'show', '-format', 'spiffe');
    expect(out.stdout.startsWith('{\n    "keys": [\n        {\n            "use": "x509-svid",\n            "kty": "EC",\n            "crv": "P-256",\n            "x": "')).toBe(true);
    const doc = JSON.parse(out.stdout) as { keys: Record<string, unknown>[] };
    const orders = doc.keys.map((k) => Object.keys(k).join(','));
    expect(orders).toContain('use,kty,crv,x,y,x5c');
    expect(orders).toContain('use,kty,kid,crv,x,y');
    expect(out.stdout.endsWith('}\n')).toBe(true);
  });
});

describe('healthcheck, as spire-server', () => {
  it('prints "Server is healthy." and, failing, spire-server\'s error on stderr', async () => {
    expect(await cli('UTC', 'healthcheck')).toEqual({ code: 0, stdout: 'Server is healthy.\n', stderr: '' });
    expect((await cli('UTC', 'healthcheck', '-verbose')).stdout).toBe('Checking server health...\nServer is healthy.\n');
    const { stdout, stderr } = await execFileAsync(NODE, [SERVER_BIN, 'healthcheck', '-socketPath', join(server.dir, 'nowhere.sock')]).catch((e: { stdout: string; stderr: string }) => e);
    expect([stdout, stderr]).toEqual(['', 'Error: server is unhealthy: unable to determine health\n']);
  });
});
