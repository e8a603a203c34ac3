/**
 * The Workload API server over a real Unix socket with real grpc-js clients: security header,
 * FetchX509SVID, the bundle streams, socket ownership and shutdown. The caller is this test
 * process (uid 0 in CI), attested as `unix:uid:<euid>` from /proc; identities come from a
 * small map-driven identity source. JWT RPCs: workload-api-jwt.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { Code } from '../../src/common/errors.ts';
import { HealthClient, WorkloadApiClient } from '../../src/common/proto.ts';
import type { X509SVIDResponse__Output } from '../../src/gen/X509SVIDResponse.ts';
import type { X509BundlesResponse__Output } from '../../src/gen/X509BundlesResponse.ts';
import { createLogger } from '../../src/common/logger.ts';
import { startWorkloadApi, type WorkloadApiServer } from '../../src/agent/workload-api/workload-api.ts';
import {
  FakeIdentitySource,
  first,
  identity,
  record,
  securityHeader,
  snapshot,
  startTestWorkloadApi,
  uidAttestor,
  unaryCall,
  waitFor,
  workloadClient,
  type TestWorkloadApi,
} from '../support/workload-api-fixtures.ts';

const TD = 'example.org';
const SELF = `unix:uid:${process.geteuid?.() ?? 0}`;

let api: TestWorkloadApi;
let dir: string;
let socketPath: string;
let source: FakeIdentitySource;
let server: WorkloadApiServer;
let client: WorkloadApiClient;
const unary = unaryCall;
const silent = pino({ level: 'silent' });

beforeEach(async () => {
  source = new FakeIdentitySource(
    snapshot(TD, {
      x509: new Map([
        [TD, Buffer.from('own-roots')],
        ['fed.org', Buffer.from('fed-roots')],
        ['unrelated.org', Buffer.from('unrelated-roots')],
      ]),
    }),
  );
  api = await startTestWorkloadApi(source);
  ({ dir, socketPath, server, client } = api);
});

afterEach(async () => {
  await api.close();
});

describe('security header', () => {
  const headers: Array<[string, (md: Metadata) => void]> = [
    ['missing', () => undefined],
    ['false', (md) => md.set('workload.spiffe.io', 'false')],
    ['given twice', (md) => { md.add('workload.spiffe.io', 'true'); md.add('workload.spiffe.io', 'true'); }],
  ];
  for (const [name, setHeader] of headers) {
    it(`rejects every Workload API method with InvalidArgument when the header is ${name}`, async () => {
      const md = (): Metadata => {
        const m = new Metadata();
        setHeader(m);
        return m;
      };
      const streams = [
        client.FetchX509SVID({}, md()),
        client.FetchX509Bundles({}, md()),
        client.FetchJWTBundles({}, md()),
        client.FetchWITSVID({}, md()),
        client.FetchWITBundles({}, md()),
      ].map((s) => first(s).then(() => undefined, (e: ServiceError) => e));
      const unaries = [
        unary((cb) => client.FetchJWTSVID({ audience: ['a'] }, md(), cb)).then(() => undefined, (e: ServiceError) => e),
        unary((cb) => client.ValidateJWTSVID({ audience: 'a', svid: 'x' }, md(), cb)).then(() => undefined, (e: ServiceError) => e),
      ];
      for (const err of await Promise.all([...streams, ...unaries])) {
        expect(err?.code).toBe(Code.INVALID_ARGUMENT);
        expect(err?.details).toBe('security header missing from request');
      }
    });
  }

  it('does not require the header on grpc.health.v1.Health', async () => {
    const health = new HealthClient(`unix://${socketPath}`, credentials.createInsecure());
    const res = await unary<{ status: string }>((cb) => health.Check({ service: '' }, cb));
    expect(res.status).toBe('SERVING');
    health.close();
  });
});

describe('FetchX509SVID', () => {
  it('sends hint-filtered SVIDs ordered by entry ID, with own roots and federated bundles', async () => {
    source.setIdentities(SELF, [
      identity('entry-d', { hint: 'external', federatesWith: ['other-unknown.org'] }),
      identity('entry-b', { hint: 'internal', createdAt: 2000 }),
      identity('entry-a', { hint: 'internal', createdAt: 1000 }),
      identity('entry-c', { federatesWith: ['spiffe://fed.org'] }),
    ]);
    const res = await first(client.FetchX509SVID({}, securityHeader()));
    expect(res.svids.map((s) => s.spiffe_id)).toEqual([
      `spiffe://${TD}/entry-a`,
      `spiffe://${TD}/entry-c`,
      `spiffe://${TD}/entry-d`,
    ]);
    expect(res.svids.map((s) => s.hint)).toEqual(['internal', '', 'external']);
    const a = res.svids[0];
    expect(a?.x509_svid.toString()).toBe('chain-entry-a');
    expect(a?.x509_svid_key.toString()).toBe('key-entry-a');
    expect(a?.bundle.toString()).toBe('own-roots');
    expect(Object.keys(res.federated_bundles)).toEqual(['spiffe://fed.org']);
    expect(res.federated_bundles['spiffe://fed.org']?.toString()).toBe('fed-roots');
  });

  it('ends with PermissionDenied "no identity issued" when the caller has no entry', async () => {
    const err = await first(client.FetchX509SVID({}, securityHeader())).catch((e: ServiceError) => e);
    expect(err).toMatchObject({ code: Code.PERMISSION_DENIED, details: 'no identity issued' });
  });

  it('pushes every update (no de-duplication) and ends with PermissionDenied once the identity is removed', async () => {
    source.setIdentities(SELF, [identity('entry-a')]);
    const log = record(client.FetchX509SVID({}, securityHeader()));
    await waitFor(() => log.messages.length === 1, 5_000, 'first message');
    source.setIdentities(SELF, [identity('entry-a', { certChain: Buffer.from('rotated') })]);
    await waitFor(() => log.messages.length === 2, 5_000, 'rotation');
    expect(log.messages[1]?.svids[0]?.x509_svid.toString()).toBe('rotated');
    source.poke();
    await waitFor(() => log.messages.length === 3, 5_000, 'spurious update');
    source.setIdentities(SELF, []);
    await waitFor(() => log.error !== undefined, 5_000, 'stream end');
    expect(log.error).toMatchObject({ code: Code.PERMISSION_DENIED, details: 'no identity issued' });
    await waitFor(() => server.streamCount() === 0 && source.subscriberCount === 0, 5_000, 'cleanup');
  });

  it('unsubscribes when the client cancels', async () => {
    source.setIdentities(SELF, [identity('entry-a')]);
    await first(client.FetchX509SVID({}, securityHeader()));
    await waitFor(() => server.streamCount() === 0 && source.subscriberCount === 0, 5_000, 'cleanup');
  });

  it('sends a response over 4 MiB: a client with a raised receive limit gets it, a default client fails on its own limit', async () => {
    const chain = Buffer.alloc(4 * 1024 * 1024 + 1, 7);
    source.setIdentities(SELF, [identity('entry-a', { certChain: chain })]);
    const big = new WorkloadApiClient(`unix://${socketPath}`, credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
    const res = await first<X509SVIDResponse__Output>(big.FetchX509SVID({}, securityHeader())).finally(() => big.close());
    expect(res.svids[0]?.x509_svid.equals(chain)).toBe(true);
    const err = await first(client.FetchX509SVID({}, securityHeader())).catch((e: ServiceError) => e);
    expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    // grpc-js's own client-side message, not a refusal by the agent.
    expect((err as ServiceError).details).toMatch(/Received message larger than max \(\d+ vs 4194304\)/);
  });

  it('answers Unavailable while the identity source has not synced', async () => {
    const unsynced = new FakeIdentitySource();
    const path2 = join(dir, 'unsynced.sock');
    const server2 = await startWorkloadApi({ socketPath: path2, source: unsynced, attestor: uidAttestor(), logger: silent });
    const client2 = workloadClient(path2);
    const err = await first(client2.FetchX509SVID({}, securityHeader())).catch((e: ServiceError) => e);
    expect(err).toMatchObject({ code: Code.UNAVAILABLE });
    const health = new HealthClient(`unix://${path2}`, credentials.createInsecure());
    expect(await unary<{ status: string }>((cb) => health.Check({ service: '' }, cb))).toEqual({ status: 'NOT_SERVING' });
    health.close();
    client2.close();
    await server2.close();
  });
});

describe('bundle streams', () => {
  it('sends bundles over 4 MiB to a client with a raised receive limit, and warns with the bundle count', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const roots = Buffer.alloc(4 * 1024 * 1024 + 1, 3);
    const big = new FakeIdentitySource(snapshot(TD, { x509: new Map([[TD, roots]]) }));
    big.setIdentities(SELF, [identity('entry-a')]);
    const bigApi = await startTestWorkloadApi(big, { logger: createLogger({ name: 'test', level: 'warn', destination }) });
    const raised = new WorkloadApiClient(`unix://${bigApi.socketPath}`, credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
    try {
      const res = await first<X509BundlesResponse__Output>(raised.FetchX509Bundles({}, securityHeader()));
      expect(res.bundles[`spiffe://${TD}`]?.equals(roots)).toBe(true);
    } finally {
      raised.close();
      await bigApi.close();
    }
    expect(lines).toEqual([expect.objectContaining({ level: 'warn', method: 'FetchX509Bundles', caller_pid: process.pid, bundles: 1 })]);
  });

  it('X509 bundles: own trust domain always, federated ones the caller federates with, sent only on change', async () => {
    source.setIdentities(SELF, [identity('entry-a', { federatesWith: ['fed.org'] })]);
    const log = record(client.FetchX509Bundles({}, securityHeader()));
    await waitFor(() => log.messages.length === 1, 5_000, 'first message');
    expect(Object.keys(log.messages[0]?.bundles ?? {})).toEqual([`spiffe://${TD}`, 'spiffe://fed.org']);
    source.poke();
    source.poke();
    source.setBundles(snapshot(TD, { x509: new Map([[TD, Buffer.from('new-roots')], ['fed.org', Buffer.from('fed-roots')]]) }));
    await waitFor(() => log.messages.length === 2, 5_000, 'changed bundle');
    expect(log.messages[1]?.bundles[`spiffe://${TD}`]?.toString()).toBe('new-roots');
    await new Promise((r) => setTimeout(r, 50));
    expect(log.messages).toHaveLength(2);
  });

  it('JWT bundles are JWKS bytes, {"keys":[]} when a trust domain has no JWT keys', async () => {
    source.setIdentities(SELF, [identity('entry-a')]);
    const res = await first(client.FetchJWTBundles({}, securityHeader()));
    expect(Object.keys(res.bundles)).toEqual([`spiffe://${TD}`]);
    expect(res.bundles[`spiffe://${TD}`]?.toString()).toBe('{"keys":[]}');
  });

  it('deny callers without an identity, at the start and mid-stream', async () => {
    const denied = await first(client.FetchJWTBundles({}, securityHeader())).catch((e: ServiceError) => e);
    expect(denied).toMatchObject({ code: Code.PERMISSION_DENIED, details: 'no identity issued' });
    source.setIdentities(SELF, [identity('entry-a')]);
    const log = record(client.FetchX509Bundles({}, securityHeader()));
    await waitFor(() => log.messages.length === 1, 5_000, 'first message');
    source.setIdentities(SELF, []);
    await waitFor(() => log.error !== undefined, 5_000, 'denial');
    expect(log.error).toMatchObject({ code: Code.PERMISSION_DENIED, details: 'no identity issued' });
  });
});

describe('socket ownership and shutdown', () => {
  it('creates the socket with mode 0777', async () => {
    expect((await lstat(socketPath)).mode & 0o777).toBe(0o777);
  });

  it('replaces a stale socket but refuses to delete a regular file', async () => {
    const stalePath = join(dir, 'stale.sock');
    // A listener killed with SIGKILL leaves its socket file behind, as a crashed agent does.
    const crash = `require('net').createServer().listen(${JSON.stringify(stalePath)}, () => process.kill(process.pid, 'SIGKILL'))`;
    spawnSync(process.execPath, ['-e', crash]);
    expect((await lstat(stalePath)).isSocket()).toBe(true);
    const replaced = await startWorkloadApi({ socketPath: stalePath, source, attestor: uidAttestor(), logger: silent });
    expect((await lstat(stalePath)).isSocket()).toBe(true);
    await replaced.close();

    const filePath = join(dir, 'not-a-socket');
    await writeFile(filePath, 'precious');
    await expect(startWorkloadApi({ socketPath: filePath, source, attestor: uidAttestor(), logger: silent })).rejects.toThrow(
      /exists and is not a socket; move it away or choose another socket_path/,
    );
    expect(existsSync(filePath)).toBe(true);
  });

  it('ends open streams with UNAVAILABLE (never OK) on close and removes the socket file', async () => {
    source.setIdentities(SELF, [identity('entry-a')]);
    const svids = record(client.FetchX509SVID({}, securityHeader()));
    const bundles = record(client.FetchJWTBundles({}, securityHeader()));
    await waitFor(() => svids.messages.length === 1 && bundles.messages.length === 1, 5_000, 'first messages');
    expect(server.streamCount()).toBe(2);
    expect(server.connectionCount()).toBe(1);
    await server.close();
    await waitFor(() => svids.error !== undefined && bundles.error !== undefined, 5_000, 'stream ends');
    expect(svids.error?.code).toBe(Code.UNAVAILABLE);
    expect(bundles.error?.code).toBe(Code.UNAVAILABLE);
    expect(existsSync(socketPath)).toBe(false);
    expect(server.connectionCount()).toBe(0);
  });
});
