/**
 * The admin API server in process, on a real Unix socket with a real grpc-js client, over a
 * fake identity source: it is not a weaker door than the Workload API (the connection gate,
 * per-process connection and call limits), a delegate's streams are re-authorized on every
 * update, admin and downstream SVIDs are withheld, shutdown ends streams with UNAVAILABLE and
 * removes the socket, and GetInfo keeps its answer 5 s as SPIRE.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type Client, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { ManualClock } from '../../src/common/clock.ts';
import { Code } from '../../src/common/errors.ts';
import { loadProtos } from '../../src/common/proto.ts';
import { selectorKey, type Selector } from '../../src/common/selector.ts';
import { adminCallerLimits, startAdminApi, type AdminApiServer } from '../../src/agent/admin/admin-server.ts';
import { delegatedIdentityService, type DelegateEntry, type DelegatedIdentitySource } from '../../src/agent/admin/delegated-identity.ts';
import { debugService, type DebugFacts } from '../../src/agent/admin/debug-service.ts';
import { DEFAULT_CALLER_LIMITS, type CallerLimits } from '../../src/agent/workload-api/caller-limits.ts';
import type { BundleSnapshot, JwtIdentity, WorkloadState, X509Identity } from '../../src/agent/manager/workload-state.ts';
import type { SubscribeToX509SVIDsResponse__Output } from '../../src/gen/spire/api/agent/delegatedidentity/v1/SubscribeToX509SVIDsResponse.ts';
import type { GetInfoResponse__Output } from '../../src/gen/spire/agent/debug/v1/GetInfoResponse.ts';
import { identity, snapshot, uidAttestor, unaryCall } from '../support/workload-api-fixtures.ts';
import { SETTINGS, SETTINGS_ACK } from '../support/http2-bytes.ts';
import { HOUR, makeTestCa } from '../support/ca-fixtures.ts';

const SELF = `unix:uid:${process.geteuid?.() ?? 0}`;
const DELEGATE = 'spiffe://example.org/delegate';
const WORKLOAD = 'unix:uid:4242';
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Entries by selector set, identities by entry ID; a change is pushed with push(). */
class FakeDelegateSource implements DelegatedIdentitySource {
  entries: Array<DelegateEntry & { selectors: string[] }> = [];
  readonly identities = new Map<string, X509Identity>();
  bundles: BundleSnapshot = snapshot('example.org');
  synced = true;
  readonly #listeners = new Map<(s: WorkloadState) => void, readonly Selector[]>();
  readonly #bundleListeners = new Set<(b: BundleSnapshot) => void>();

  matchingEntries(selectors: readonly Selector[]): readonly DelegateEntry[] {
    const keys = new Set(selectors.map(selectorKey));
    return this.entries.filter((e) => e.selectors.every((k) => keys.has(k)));
  }
  #state(selectors: readonly Selector[]): WorkloadState {
    const ids = this.matchingEntries(selectors).map((e) => this.identities.get(e.id)).filter((i): i is X509Identity => i !== undefined);
    return { identities: ids, bundles: this.bundles };
  }
  subscribe(selectors: readonly Selector[], listener: (state: WorkloadState) => void): () => void {
    this.#listeners.set(listener, selectors);
    queueMicrotask(() => listener(this.#state(selectors)));
    return () => this.#listeners.delete(listener);
  }
  subscribeBundles(listener: (bundles: BundleSnapshot) => void): () => void {
    this.#bundleListeners.add(listener);
    queueMicrotask(() => listener(this.bundles));
    return () => this.#bundleListeners.delete(listener);
  }
  async fetchJwtSvids(selectors: readonly Selector[]): Promise<JwtIdentity[]> {
    return this.matchingEntries(selectors).map((e) => ({ entryId: e.id, spiffeId: e.spiffeId, hint: '', createdAt: 1, token: 'a.e30.c' }));
  }
  push(): void {
    for (const [listener, selectors] of this.#listeners) listener(this.#state(selectors));
    for (const listener of this.#bundleListeners) listener(this.bundles);
  }
  get listenerCount(): number {
    return this.#listeners.size + this.#bundleListeners.size;
  }
}

const protos = loadProtos();
type Delegated = Client & Record<string, (...args: unknown[]) => ClientReadableStream<unknown>>;
type Debug = Client & { GetInfo(req: object, cb: (err: ServiceError | null, res?: GetInfoResponse__Output) => void): void };

let dir: string;
let socketPath: string;
let source: FakeDelegateSource;
let server: AdminApiServer;
let clock: ManualClock;
let facts: { chain: Buffer[] | undefined; roots: Buffer | undefined; x509: number };
/** Finished calls as recorded for admin_api_rpcs_total, by `method status`. */
let rpcs: Map<string, number>;
const clients: Client[] = [];

/** A client with a connection of its own. */
function delegated(): Delegated {
  const c = new protos.spire.api.agent.delegatedidentity.v1.DelegatedIdentity(`unix://${socketPath}`, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Delegated;
  clients.push(c);
  return c;
}
function debug(): Debug {
  const c = new protos.spire.agent.debug.v1.Debug(`unix://${socketPath}`, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Debug;
  clients.push(c);
  return c;
}

/** Collects a stream's messages and its end. */
function collect<T>(stream: ClientReadableStream<unknown>): { messages: T[]; ended: Promise<ServiceError> } {
  const messages: T[] = [];
  stream.on('data', (m: T) => messages.push(m));
  return { messages, ended: new Promise((resolve) => stream.on('error', resolve)) };
}

async function start(limits?: CallerLimits): Promise<void> {
  server = await startAdminApi({
    socketPath,
    logger: pino({ level: 'silent' }),
    clock,
    limits,
    firstRequestDeadlineMs: 300,
    metrics: { rpc: (method) => ({ inc: (code) => void rpcs.set(`${method} ${Code[code]}`, (rpcs.get(`${method} ${Code[code]}`) ?? 0) + 1) }) },
    services: [
      delegatedIdentityService({ source, attestor: uidAttestor(), authorizedDelegates: [DELEGATE], logger: pino({ level: 'silent' }) }),
      debugService({
        clock,
        logger: pino({ level: 'silent' }),
        facts: {
          agentSvidChain: () => facts.chain,
          ownRoots: () => facts.roots,
          cacheCounts: () => ({ x509Svids: facts.x509, jwtSvids: 0 }),
          lastSyncAt: () => undefined,
          startedAt: clock.now(),
        } satisfies DebugFacts,
      }),
    ],
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'admin-api-'));
  socketPath = join(dir, 'admin', 'admin.sock');
  clock = new ManualClock(Date.now());
  facts = { chain: undefined, roots: undefined, x509: 0 };
  rpcs = new Map();
  source = new FakeDelegateSource();
  source.entries = [
    { id: 'e-delegate', spiffeId: DELEGATE, selectors: [SELF] },
    { id: 'e-web', spiffeId: 'spiffe://example.org/web', selectors: [WORKLOAD] },
    { id: 'e-admin', spiffeId: 'spiffe://example.org/admin', selectors: [WORKLOAD], admin: true },
    { id: 'e-downstream', spiffeId: 'spiffe://example.org/downstream', selectors: [WORKLOAD], downstream: true },
  ];
  for (const e of source.entries) source.identities.set(e.id, identity(e.id, { spiffeId: e.spiffeId, certChain: Buffer.from([0x30, 0x00]) }));
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('delegated streams', () => {
  beforeEach(() => start());

  it('withholds admin and downstream SVIDs', async () => {
    const stream = collect<SubscribeToX509SVIDsResponse__Output>(delegated()['SubscribeToX509SVIDs']!({ selectors: [{ type: 'unix', value: 'uid:4242' }] }));
    await expect.poll(() => stream.messages.length).toBe(1);
    expect(stream.messages[0]?.x509_svids.map((s) => s.x509_svid?.id)).toEqual([{ trust_domain: 'example.org', path: '/web' }]);
  });

  it('hands out no X509-SVID before the first sync: restored entries do not say which are admin entries', async () => {
    source.synced = false;
    const stream = collect<SubscribeToX509SVIDsResponse__Output>(delegated()['SubscribeToX509SVIDs']!({ selectors: [{ type: 'unix', value: 'uid:4242' }] }));
    const err = await stream.ended;
    expect({ code: err.code, details: err.details, messages: stream.messages.length }).toEqual({ code: Code.UNAVAILABLE, details: 'agent is not ready: it has not synchronized with the server yet', messages: 0 });
  });

  it('ends a delegate’s streams with PermissionDenied at the next update once its entry is gone', async () => {
    const svids = collect<SubscribeToX509SVIDsResponse__Output>(delegated()['SubscribeToX509SVIDs']!({ selectors: [{ type: 'unix', value: 'uid:4242' }] }));
    const bundles = collect(delegated()['SubscribeToX509Bundles']!({}));
    await expect.poll(() => svids.messages.length + bundles.messages.length).toBe(2);
    source.entries = source.entries.filter((e) => e.id !== 'e-delegate');
    source.bundles = snapshot('example.org', { x509: new Map([['example.org', Buffer.from([0x30, 0x00])]]) });
    source.push();
    for (const s of [svids, bundles]) {
      const err = await s.ended;
      expect({ code: err.code, details: err.details }).toEqual({ code: Code.PERMISSION_DENIED, details: 'no identity issued' });
    }
    expect(svids.messages.length + bundles.messages.length).toBe(2);
    await expect.poll(() => source.listenerCount).toBe(0);
    expect(Object.fromEntries(rpcs)).toEqual({ 'SubscribeToX509SVIDs PERMISSION_DENIED': 1, 'SubscribeToX509Bundles PERMISSION_DENIED': 1 });
  });

  it('ends open streams with UNAVAILABLE on close and removes the socket file', async () => {
    const stream = collect(delegated()['SubscribeToJWTBundles']!({}));
    await expect.poll(() => stream.messages.length).toBe(1);
    await server.close();
    const err = await stream.ended;
    expect({ code: err.code, details: err.details }).toEqual({ code: Code.UNAVAILABLE, details: 'admin api: the agent is shutting down' });
    expect(existsSync(socketPath)).toBe(false);
  });
});

describe('limits', () => {
  const limits: CallerLimits = { connectionsPerProcess: 2, connectionsPerPod: 4, callsPerCaller: 3, streamsPerConnection: 100 };
  beforeEach(() => start(limits));

  it('a connection that sends no request is closed at the first-request deadline', async () => {
    const socket = connect(socketPath);
    await once(socket, 'connect');
    socket.on('error', () => {});
    socket.resume();
    socket.write(Buffer.concat([PREFACE, SETTINGS, SETTINGS_ACK]));
    await once(socket, 'close');
    expect(server.connectionCount()).toBe(0);
  });

  it('a process over its connection limit gets ResourceExhausted', async () => {
    const getInfo = (c: Debug): Promise<ServiceError | undefined> => unaryCall<GetInfoResponse__Output>((cb) => c.GetInfo({}, cb)).then(() => undefined, (err: ServiceError) => err);
    const held = [debug(), debug()];
    for (const c of held) expect((await getInfo(c))?.code).toBe(Code.UNAVAILABLE); // not attested yet: served, not refused
    const err = await getInfo(debug());
    expect(err?.code).toBe(Code.RESOURCE_EXHAUSTED);
  });

  it('a caller over its call limit gets ResourceExhausted on the next stream', async () => {
    const client = delegated();
    const open = Array.from({ length: 3 }, () => collect(client['SubscribeToX509Bundles']!({})));
    await expect.poll(() => open.every((s) => s.messages.length === 1)).toBe(true);
    const err = await collect(client['SubscribeToJWTBundles']!({})).ended;
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
  });
});

describe('a delegate serving many workloads', () => {
  beforeEach(() => start(adminCallerLimits(DEFAULT_CALLER_LIMITS)));

  it('holds more streams on one connection than a workload may (150, past the Workload API’s 100)', async () => {
    const client = delegated();
    const streams = Array.from({ length: 150 }, () => collect(client['SubscribeToX509SVIDs']!({ selectors: [{ type: 'unix', value: 'uid:4242' }] })));
    await expect.poll(() => streams.filter((s) => s.messages.length === 1).length, { timeout: 10_000 }).toBe(150);
    expect(server.streamCount()).toBe(150);
  });
});

describe('Debug/GetInfo', () => {
  beforeEach(() => start());

  it('is Unavailable before the agent has attested, then answers and keeps its answer 5 s', async () => {
    const client = debug();
    const call = (): Promise<GetInfoResponse__Output> => unaryCall((cb) => client.GetInfo({}, cb));
    await expect(call()).rejects.toMatchObject({ code: Code.UNAVAILABLE, details: 'debug: the agent has not attested yet' });

    const root = await makeTestCa({ name: 'C=US, O=SPIFFE', notBefore: new Date(Date.now() - HOUR), notAfter: new Date(Date.now() + HOUR) });
    facts = { chain: [root.der], roots: root.der, x509: 3 };
    clock.advance(12_000);
    const info = await call();
    expect({ ...info, svid_chain: info.svid_chain.map((c) => c.subject) }).toMatchObject({ svid_chain: ['O=SPIFFE,C=US'], uptime: 12, cached_x509_svids_count: 3, svids_count: 3, last_sync_success: 0 });
    facts.x509 = 4;
    clock.advance(4_999);
    expect((await call()).cached_x509_svids_count).toBe(3);
    clock.advance(1);
    expect((await call()).cached_x509_svids_count).toBe(4);
  });

  it('refuses an agent SVID its bundle does not verify with SPIRE’s Internal error', async () => {
    const root = await makeTestCa({ name: 'C=US, O=A', notBefore: new Date(Date.now() - HOUR), notAfter: new Date(Date.now() + HOUR) });
    const other = await makeTestCa({ name: 'C=US, O=B', notBefore: new Date(Date.now() - HOUR), notAfter: new Date(Date.now() + HOUR) });
    facts = { chain: [root.der], roots: other.der, x509: 0 };
    const client = debug();
    await expect(unaryCall((cb) => client.GetInfo({}, cb))).rejects.toMatchObject({
      code: Code.INTERNAL,
      details: 'failed to verify agent SVID: x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority',
    });
  });
});
