/**
 * spire.api.server.entry.v1.Entry: registration entry administration, and the
 * authorized-entry feeds agents sync from (GetAuthorizedEntries, SyncAuthorizedEntries).
 */
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { EntryHandlers } from '../../gen/spire/api/server/entry/v1/Entry.ts';
import type { SyncAuthorizedEntriesRequest__Output } from '../../gen/spire/api/server/entry/v1/SyncAuthorizedEntriesRequest.ts';
import type { SyncAuthorizedEntriesResponse } from '../../gen/spire/api/server/entry/v1/SyncAuthorizedEntriesResponse.ts';
import type { ListEntriesRequest__Output } from '../../gen/spire/api/server/entry/v1/ListEntriesRequest.ts';
import type { Entry } from '../../gen/spire/api/types/Entry.ts';
import type { Logger } from '../../common/logger.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { toGrpcStatus } from '../../common/grpc-status.ts';
import type { AttestedAgent, RegistrationEntry } from '../datastore/types.ts';
import type { CallerResolver } from './caller.ts';
import { entryFromProto, entryToProto, idFromProto, maskEntry, type EntryFields } from './convert.ts';
import { logRpcError, unary } from './rpc.ts';

/** Entry filters, as the admin API offers them. */
export interface EntryFilter {
  bySpiffeId?: string;
  byParentId?: string;
  bySelectors?: { selectors: { type: string; value: string }[]; match: 'exact' | 'subset' | 'superset' | 'any' };
  byHint?: string;
  byDownstream?: boolean;
}

/** The per-item outcome of a batch write. */
export interface BatchItemResult {
  status: { code: number; message: string };
  entry?: RegistrationEntry;
}

/** What the Entry service needs from the datastore. */
export interface EntryStore {
  batchCreateEntries(inputs: EntryFields[]): BatchItemResult[];
  batchUpdateEntries(inputs: { id: string; fields: Partial<EntryFields> }[]): BatchItemResult[];
  deleteEntry(id: string): void;
  getEntry(id: string): RegistrationEntry | undefined;
  listEntries(filter: EntryFilter): RegistrationEntry[];
}

export interface EntryServiceDeps {
  logger: Logger;
  callers: CallerResolver;
  store: EntryStore;
  /** The entries an agent may host (index-backed). */
  authorizedEntries(agent: AttestedAgent): RegistrationEntry[];
  /** Entries per page of SyncAuthorizedEntries and ListEntries (SPIRE's default is 500). */
  pageSize?: number;
}

const MATCH_NAMES: Record<string, 'exact' | 'subset' | 'superset' | 'any'> = {
  MATCH_EXACT: 'exact',
  MATCH_SUBSET: 'subset',
  MATCH_SUPERSET: 'superset',
  MATCH_ANY: 'any',
};

function filterFromProto(f: ListEntriesRequest__Output['filter']): EntryFilter {
  if (f === null) return {};
  const filter: EntryFilter = {};
  if (f.by_spiffe_id !== null) filter.bySpiffeId = idFromProto(f.by_spiffe_id, 'spiffe ID filter');
  if (f.by_parent_id !== null) filter.byParentId = idFromProto(f.by_parent_id, 'parent ID filter');
  if (f.by_selectors !== null) {
    if (f.by_selectors.selectors.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'malformed selectors filter: empty selector set');
    filter.bySelectors = { selectors: f.by_selectors.selectors, match: MATCH_NAMES[f.by_selectors.match] ?? 'exact' };
  }
  if (f.by_hint !== null) filter.byHint = f.by_hint.value;
  if (f.by_downstream !== null) filter.byDownstream = f.by_downstream.value;
  return filter;
}

/** Entry mask fields a client may name in BatchUpdateEntry's input_mask, mapped to domain fields. */
const INPUT_MASK_FIELDS: ReadonlyArray<[string, keyof EntryFields]> = [
  ['spiffe_id', 'spiffeId'],
  ['parent_id', 'parentId'],
  ['selectors', 'selectors'],
  ['x509_svid_ttl', 'x509SvidTtl'],
  ['jwt_svid_ttl', 'jwtSvidTtl'],
  ['federates_with', 'federatesWith'],
  ['dns_names', 'dnsNames'],
  ['hint', 'hint'],
  ['admin', 'admin'],
  ['downstream', 'downstream'],
  ['store_svid', 'storeSvid'],
  ['expires_at', 'expiresAt'],
];

type SyncStream = ServerDuplexStream<SyncAuthorizedEntriesRequest__Output, SyncAuthorizedEntriesResponse>;

/** Builds the Entry service handlers. */
export function createEntryService(deps: EntryServiceDeps): EntryHandlers {
  const { logger, store, callers } = deps;
  const pageSize = deps.pageSize ?? 500;

  /** Serves one SyncAuthorizedEntries stream with SPIRE's paging protocol. */
  function sync(stream: SyncStream): void {
    let entries: Entry[] | undefined;
    let byId: Map<string, Entry> | undefined;
    const fail = (err: unknown): void => {
      logRpcError(logger, 'SyncAuthorizedEntries', err);
      stream.emit('error', toGrpcStatus(err));
    };
    stream.on('data', (req: SyncAuthorizedEntriesRequest__Output) => {
      try {
        if (entries === undefined) {
          const caller = callers.requireAgent(stream);
          if (req.ids.length > 0) throw new ApiError(Code.INVALID_ARGUMENT, 'specifying IDs on initial request is not supported');
          if (req.output_mask !== null && !req.output_mask.revision_number) {
            throw new ApiError(Code.INVALID_ARGUMENT, 'revision number cannot be masked');
          }
          entries = deps
            .authorizedEntries(caller.agent)
            .map((e) => maskEntry(entryToProto(e), req.output_mask));
          if (entries.length <= pageSize) {
            stream.write({ entries, entry_revisions: [], more: false });
            stream.end();
            return;
          }
          for (let i = 0; i < entries.length; i += pageSize) {
            const page = entries.slice(i, i + pageSize);
            stream.write({
              entry_revisions: page.map((e) => ({ id: e.id, revision_number: e.revision_number, created_at: e.created_at })),
              entries: [],
              more: i + pageSize < entries.length,
            });
          }
          return;
        }
        byId ??= new Map(entries.map((e) => [e.id as string, e]));
        // Each request is answered completely, in pages, before the next one is read.
        let page: Entry[] = [];
        for (const id of [...req.ids].sort()) {
          const entry = byId.get(id);
          if (entry === undefined) continue;
          if (page.length === pageSize) {
            stream.write({ entries: page, entry_revisions: [], more: true });
            page = [];
          }
          page.push(entry);
        }
        stream.write({ entries: page, entry_revisions: [], more: false });
      } catch (err) {
        fail(err);
      }
    });
    stream.on('end', () => {
      if (entries !== undefined && entries.length > pageSize) stream.end();
    });
    stream.on('error', () => undefined);
  }

  return {
    SyncAuthorizedEntries: sync,

    GetAuthorizedEntries: unary(logger, 'GetAuthorizedEntries', (req, call) => {
      const caller = callers.requireAgent(call);
      return { entries: deps.authorizedEntries(caller.agent).map((e) => maskEntry(entryToProto(e), req.output_mask)) };
    }),

    CountEntries: unary(logger, 'CountEntries', (req, call) => {
      callers.requireAdmin(call);
      return { count: store.listEntries(filterFromProto(req.filter)).length };
    }),

    ListEntries: unary(logger, 'ListEntries', (req, call) => {
      callers.requireAdmin(call);
      if (req.page_size < 0) throw new ApiError(Code.INVALID_ARGUMENT, 'page size must not be negative');
      const all = store.listEntries(filterFromProto(req.filter)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const start = req.page_token === '' ? 0 : all.findIndex((e) => e.id > req.page_token);
      const from = start === -1 ? all.length : start;
      const size = req.page_size === 0 ? all.length : req.page_size;
      const page = all.slice(from, from + size);
      const next = from + size < all.length ? (page[page.length - 1]?.id ?? '') : '';
      return { entries: page.map((e) => maskEntry(entryToProto(e), req.output_mask)), next_page_token: next };
    }),

    GetEntry: unary(logger, 'GetEntry', (req, call) => {
      callers.requireAdmin(call);
      if (req.id === '') throw new ApiError(Code.INVALID_ARGUMENT, 'missing ID');
      const entry = store.getEntry(req.id);
      if (entry === undefined) throw new ApiError(Code.NOT_FOUND, 'entry not found');
      return maskEntry(entryToProto(entry), req.output_mask);
    }),

    BatchCreateEntry: unary(logger, 'BatchCreateEntry', (req, call) => {
      callers.requireAdmin(call);
      const results = store.batchCreateEntries(req.entries.map(entryFromProto));
      for (const r of results) {
        if (r.status.code === Code.OK && r.entry !== undefined) {
          logger.info({ method: 'BatchCreateEntry', entry_id: r.entry.id, spiffe_id: r.entry.spiffeId }, 'entry created');
        }
      }
      return {
        results: results.map((r) => ({
          status: r.status,
          entry: r.entry === undefined ? null : maskEntry(entryToProto(r.entry), req.output_mask),
        })),
      };
    }),

    BatchUpdateEntry: unary(logger, 'BatchUpdateEntry', (req, call) => {
      callers.requireAdmin(call);
      const mask = req.input_mask;
      const inputs = req.entries.map((p) => {
        const all = entryFromProto(p);
        const fields: Partial<EntryFields> = {};
        for (const [maskName, key] of INPUT_MASK_FIELDS) {
          if (mask === null || (mask as unknown as Record<string, boolean>)[maskName] === true) {
            (fields as Record<string, unknown>)[key] = all[key];
          }
        }
        return { id: p.id, fields };
      });
      const results = store.batchUpdateEntries(inputs);
      return {
        results: results.map((r) => ({
          status: r.status,
          entry: r.entry === undefined ? null : maskEntry(entryToProto(r.entry), req.output_mask),
        })),
      };
    }),

    BatchDeleteEntry: unary(logger, 'BatchDeleteEntry', (req, call) => {
      callers.requireAdmin(call);
      return {
        results: req.ids.map((id) => {
          try {
            if (id === '') throw new ApiError(Code.INVALID_ARGUMENT, 'missing entry ID');
            store.deleteEntry(id);
            logger.info({ method: 'BatchDeleteEntry', entry_id: id }, 'entry deleted');
            return { id, status: { code: Code.OK, message: 'OK' } };
          } catch (err) {
            const status = toGrpcStatus(err);
            return { id, status: { code: status.code, message: status.details } };
          }
        }),
      };
    }),
  };
}
