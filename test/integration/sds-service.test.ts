/**
 * The SDS service inside the Workload API server (in process, over the real Unix socket, with
 * grpc-js clients): what it shares with the Workload API (attestation, per-caller limits,
 * shutdown) and what it does not (the workload.spiffe.io header), updates that change nothing
 * sent, and a bound on what a NACKing client writes to the log.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { credentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { ManualClock } from '../../src/common/clock.ts';
import { Code } from '../../src/common/errors.ts';
import { loadProtos } from '../../src/common/proto.ts';
import type { DiscoveryRequest } from '../../src/gen/envoy/service/discovery/v3/DiscoveryRequest.ts';
import type { DiscoveryResponse__Output } from '../../src/gen/envoy/service/discovery/v3/DiscoveryResponse.ts';
import type { SecretDiscoveryServiceClient } from '../../src/gen/envoy/service/secret/v3/SecretDiscoveryService.ts';
import { DEFAULT_CALLER_LIMITS } from '../../src/agent/workload-api/caller-limits.ts';
import { FakeIdentitySource, identity, snapshot, startTestWorkloadApi, unaryCall, waitFor, type TestWorkloadApi } from '../support/workload-api-fixtures.ts';

const SELF = `unix:uid:${process.geteuid?.() ?? 0}`;
const TD = 'example.org';
const TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
const Sds = loadProtos().envoy.service.secret.v3.SecretDiscoveryService;

/** A DER "certificate" the builder can split (an OCTET STRING holding `n`). */
const der = (n: number): Buffer => Buffer.from([0x04, 0x01, n]);

let api: TestWorkloadApi | undefined;
const clients: SecretDiscoveryServiceClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await api?.close();
  api = undefined;
});

function sdsClient(socketPath: string): SecretDiscoveryServiceClient {
  const c = new Sds(`unix://${socketPath}`, credentials.createInsecure());
  clients.push(c);
  return c;
}

/** A StreamSecrets stream with its responses and end queued for `next()`. */
function open(c: SecretDiscoveryServiceClient): { stream: ClientDuplexStream<DiscoveryRequest, DiscoveryResponse__Output>; next: () => Promise<DiscoveryResponse__Output | ServiceError> } {
  const stream = c.StreamSecrets();
  const queue: Array<DiscoveryResponse__Output | ServiceError> = [];
  const waiters: Array<(v: DiscoveryResponse__Output | ServiceError) => void> = [];
  const push = (v: DiscoveryResponse__Output | ServiceError): void => {
    const w = waiters.shift();
    if (w !== undefined) w(v);
    else queue.push(v);
  };
  stream.on('data', push);
  stream.on('error', push);
  return { stream, next: () => (queue.length > 0 ? Promise.resolve(queue.shift() as DiscoveryResponse__Output) : new Promise((resolve) => waiters.push(resolve))) };
}

function response(v: DiscoveryResponse__Output | ServiceError): DiscoveryResponse__Output {
  if (v instanceof Error) throw v;
  return v;
}

async function withIdentity(extra: Parameters<typeof startTestWorkloadApi>[1] = {}): Promise<TestWorkloadApi> {
  const source = new FakeIdentitySource(snapshot(TD, { x509: new Map([[TD, der(1)]]) }));
  source.setIdentities(SELF, [identity('entry-a', { certChain: der(10), privateKey: der(20) })]);
  api = await startTestWorkloadApi(source, extra);
  return api;
}

describe('SDS on the Workload API socket', () => {
  it('needs no workload.spiffe.io header, while the Workload API still does', async () => {
    const { socketPath, client } = await withIdentity();
    const { stream, next } = open(sdsClient(socketPath));
    stream.write({ resource_names: ['default'], type_url: TYPE_URL });
    const first = response(await next());
    expect({ version: first.version_info, type: first.type_url, count: first.resources.length }).toEqual({ version: '1', type: TYPE_URL, count: 1 });
    const refused = await unaryCall((cb) => client.FetchJWTSVID({ audience: ['a'] }, cb)).catch((e: ServiceError) => e);
    expect(refused).toMatchObject({ code: Code.INVALID_ARGUMENT, details: 'security header missing from request' });
  });

  it('answers Unavailable before the agent has synced, on both calls', async () => {
    api = await startTestWorkloadApi(new FakeIdentitySource());
    const c = sdsClient(api.socketPath);
    const { stream, next } = open(c);
    stream.write({ resource_names: ['default'] });
    expect(await next()).toMatchObject({ code: Code.UNAVAILABLE, details: 'cache: agent has not synced yet' });
    const fetched = await unaryCall((cb) => c.FetchSecrets({ resource_names: ['default'] }, cb)).catch((e: ServiceError) => e);
    expect(fetched).toMatchObject({ code: Code.UNAVAILABLE, details: 'cache: agent has not synced yet' });
  });

  it('counts SDS streams against the caller’s calls and ends them with Unavailable at shutdown', async () => {
    const { socketPath, server } = await withIdentity({ limits: { ...DEFAULT_CALLER_LIMITS, callsPerCaller: 2 } });
    const c = sdsClient(socketPath);
    const streams = [open(c), open(c)];
    for (const s of streams) {
      s.stream.write({ resource_names: ['default'] });
      expect(response(await s.next()).version_info).toBe('1');
    }
    expect(server.streamCount()).toBe(2);
    const third = open(c);
    third.stream.write({ resource_names: ['default'] });
    expect(await third.next()).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, details: 'workload api: too many calls in progress from this process (2); one stream per source is enough' });
    await server.close();
    for (const s of streams) expect(await s.next()).toMatchObject({ code: Code.UNAVAILABLE, details: 'workload api: the agent is shutting down' });
  });

  it('sends nothing for an update that changes nothing asked for, and the next version for one that does', async () => {
    const { socketPath, source } = await withIdentity();
    const { stream, next } = open(sdsClient(socketPath));
    stream.write({ resource_names: ['default'] });
    const first = response(await next());
    stream.write({ version_info: '1', response_nonce: first.nonce, resource_names: ['default'] });
    // A spurious update and a bundle change the client did not ask for.
    source.poke();
    source.setBundles(snapshot(TD, { x509: new Map([[TD, der(2)]]) }));
    // Had either been sent, it would come before the answer to this subscription change.
    stream.write({ version_info: '1', response_nonce: first.nonce, resource_names: ['default', 'ROOTCA'] });
    const second = response(await next());
    expect({ version: second.version_info, count: second.resources.length }).toEqual({ version: '1', count: 2 });
    source.setIdentities(SELF, [identity('entry-a', { certChain: der(11), privateKey: der(21) })]);
    expect(response(await next()).version_info).toBe('2');
  });

  it('logs a NACKing client once per 10 s, saying how many were held back', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    const clock = new ManualClock(1_000_000);
    const { socketPath } = await withIdentity({ logger: pino({ level: 'info' }, sink), clock });
    const { stream, next } = open(sdsClient(socketPath));
    stream.write({ resource_names: ['default'] });
    const first = response(await next());
    for (let i = 0; i < 20; i++) stream.write({ version_info: '', response_nonce: first.nonce, resource_names: ['default'], error_detail: { code: 3, message: `bad ${i}` } });
    // A subscription change after the flood: once it is answered, every NACK was handled.
    stream.write({ version_info: '', response_nonce: first.nonce, resource_names: ['default', 'ROOTCA'] });
    const second = response(await next());
    clock.advance(10_000);
    stream.write({ version_info: '', response_nonce: second.nonce, resource_names: ['default', 'ROOTCA'], error_detail: { code: 3, message: 'bad again' } });
    await waitFor(() => lines.filter((l) => l['msg'] === 'sds client reported errors applying secrets').length === 2);
    const nacks = lines.filter((l) => l['msg'] === 'sds client reported errors applying secrets').map(({ level, error, suppressed_since_last }) => ({ level, error, suppressed_since_last }));
    expect(nacks).toEqual([
      { level: 40, error: 'bad 0', suppressed_since_last: undefined },
      { level: 40, error: 'bad again', suppressed_since_last: 19 },
    ]);
  });
});
