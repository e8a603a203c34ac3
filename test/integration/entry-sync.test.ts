/**
 * SPIRE's SyncAuthorizedEntries paging, end to end over a real gRPC connection: the Entry
 * service with a small page size against the agent-side sync client.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, credentials } from '@grpc/grpc-js';
import { pino } from 'pino';
import { EntryClient, EntryService } from '../../src/common/proto.ts';
import { createEntryService } from '../../src/server/api/entry-service.ts';
import type { CallerResolver } from '../../src/server/api/caller.ts';
import type { AttestedAgent, RegistrationEntry } from '../../src/server/datastore/types.ts';
import { syncAuthorizedEntries } from '../../src/agent/server-client/sync-entries.ts';
import type { Entry__Output } from '../../src/gen/spire/api/types/Entry.ts';

const agent: AttestedAgent = {
  spiffeId: 'spiffe://td/spire/agent/join_token/t',
  attestationType: 'join_token',
  serialNumber: '1',
  newSerialNumber: '',
  expiresAt: 0,
  banned: false,
  canReattest: false,
  selectors: [],
};

const callers: CallerResolver = {
  resolve: () => ({ kind: 'agent', agentId: agent.spiffeId, agent, promoteNewSerial: false }),
  requireAgent: () => ({ kind: 'agent', agentId: agent.spiffeId, agent, promoteNewSerial: false }),
  requireAdmin: () => {
    throw new Error('not admin');
  },
};

function entry(i: number, revision = 0): RegistrationEntry {
  return {
    id: `entry-${String(i).padStart(3, '0')}`,
    spiffeId: `spiffe://td/w${i}`,
    parentId: agent.spiffeId,
    selectors: [{ type: 'unix', value: `uid:${i}` }],
    x509SvidTtl: 0,
    jwtSvidTtl: 0,
    federatesWith: [],
    dnsNames: [],
    hint: '',
    admin: false,
    downstream: false,
    storeSvid: false,
    expiresAt: 0,
    revisionNumber: revision,
    createdAt: 1000 + i,
  };
}

let entries: RegistrationEntry[] = [];
let dir: string;
let server: Server;
let client: EntryClient;
const requests: string[][] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sna-sync-'));
  server = new Server();
  const service = createEntryService({
    logger: pino({ level: 'silent' }),
    callers,
    pageSize: 3,
    authorizedEntries: () => entries,
    store: {
      batchCreateEntries: () => [],
      batchUpdateEntries: () => [],
      deleteEntry: () => undefined,
      getEntry: () => undefined,
      listEntries: () => [],
    },
  });
  const sync = service.SyncAuthorizedEntries;
  service.SyncAuthorizedEntries = (stream) => {
    stream.on('data', (req: { ids: string[] }) => requests.push(req.ids));
    sync(stream);
  };
  server.addService(EntryService, service);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${join(dir, 'sock')}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  client = new EntryClient(`unix://${join(dir, 'sock')}`, credentials.createInsecure());
});

afterAll(async () => {
  client.close();
  server.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

const ids = (list: Entry__Output[]): string[] => list.map((e) => e.id).sort();

describe('SyncAuthorizedEntries', () => {
  it('sends the full list at once when it fits in one page', async () => {
    entries = [entry(1), entry(2), entry(3)];
    requests.length = 0;
    const got = await syncAuthorizedEntries(client, new Map());
    expect(ids(got.fetched)).toEqual(['entry-001', 'entry-002', 'entry-003']);
    expect(got.unchanged).toEqual([]);
    expect(requests).toEqual([[]]);
  });

  it('pages revisions and fetches every entry in page-sized chunks when nothing is cached', async () => {
    entries = Array.from({ length: 8 }, (_, i) => entry(i));
    requests.length = 0;
    const got = await syncAuthorizedEntries(client, new Map());
    expect(ids(got.fetched)).toEqual(entries.map((e) => e.id));
    expect(got.unchanged).toEqual([]);
    expect(requests).toEqual([[], ['entry-000', 'entry-001', 'entry-002'], ['entry-003', 'entry-004', 'entry-005'], ['entry-006', 'entry-007']]);
    expect(got.fetched.find((e) => e.id === 'entry-004')?.spiffe_id).toEqual({ trust_domain: 'td', path: '/w4' });
  });

  it('asks only for new or changed entries and drops the ones the server no longer lists', async () => {
    entries = Array.from({ length: 8 }, (_, i) => entry(i));
    const first = await syncAuthorizedEntries(client, new Map());
    // The caller's own objects for cached entries: they come back as they are, never rebuilt.
    const mine = new Map(first.fetched.map((e) => [e.id, { id: e.id, revisionNumber: e.revision_number, createdAt: e.created_at }]));
    entries = [...entries.filter((e) => e.id !== 'entry-000'), entry(9)];
    entries[2] = entry(3, 5);
    requests.length = 0;
    const got = await syncAuthorizedEntries(client, mine);
    expect(requests).toEqual([[], ['entry-003', 'entry-009']]);
    expect(ids(got.fetched)).toEqual(['entry-003', 'entry-009']);
    expect(got.fetched.find((e) => e.id === 'entry-003')?.revision_number).toBe(5);
    expect(got.unchanged.map((e) => e.id).sort()).toEqual(['entry-001', 'entry-002', 'entry-004', 'entry-005', 'entry-006', 'entry-007']);
    for (const e of got.unchanged) expect(e).toBe(mine.get(e.id));
  });

  it('refuses a mask that hides revision numbers', async () => {
    entries = [entry(1)];
    const stream = client.SyncAuthorizedEntries();
    const error = new Promise<{ code: number; details: string }>((resolve) => stream.on('error', resolve));
    stream.on('data', () => undefined);
    stream.write({ output_mask: { spiffe_id: true }, ids: [] });
    expect(await error).toMatchObject({ code: 3, details: 'revision number cannot be masked' });
  });
});
