/**
 * The agent side of `Entry/SyncAuthorizedEntries` (SPIRE's protocol): ask with an output
 * mask; take the full list if the server sends it, otherwise compare the paged revisions
 * with what is cached and fetch only new or changed entries, in chunks.
 */
import type { EntryClient } from '../../common/proto.ts';
import { fromGrpcError } from '../../common/grpc-status.ts';
import type { Entry__Output } from '../../gen/spire/api/types/Entry.ts';
import type { EntryMask } from '../../gen/spire/api/types/EntryMask.ts';
import type { SyncAuthorizedEntriesResponse__Output } from '../../gen/spire/api/server/entry/v1/SyncAuthorizedEntriesResponse.ts';

/** The fields the agent needs (SPIRE's agent asks for the same set). */
export const AGENT_ENTRY_MASK: EntryMask = {
  spiffe_id: true,
  selectors: true,
  federates_with: true,
  admin: true,
  downstream: true,
  revision_number: true,
  store_svid: true,
  hint: true,
  created_at: true,
  additional_attributes: true,
};

/** What the sync compares of a cached entry. */
export interface Revisioned {
  readonly revisionNumber: number;
  readonly createdAt: number;
}

/** What the caller has cached, in its own form, by entry ID. */
export type CachedRevisions<T extends Revisioned> = ReadonlyMap<string, T>;

/**
 * The complete authorized entry list: the caller's cached entries the server listed with the
 * same revision (`unchanged`, the caller's own objects, never rebuilt), and every entry the
 * server sent in full (`fetched`: new or changed ones, or all of them when the server sent the
 * whole list in its first response).
 */
export interface SyncedEntries<T extends Revisioned> {
  readonly unchanged: T[];
  readonly fetched: Entry__Output[];
}

/** Fetches the complete authorized entry list, reusing unchanged cached entries. */
export function syncAuthorizedEntries<T extends Revisioned>(client: EntryClient, cached: CachedRevisions<T>, deadlineMs = 30_000): Promise<SyncedEntries<T>> {
  return new Promise((resolve, reject) => {
    const stream = client.SyncAuthorizedEntries({ deadline: Date.now() + deadlineMs });
    const fetched = new Map<string, Entry__Output>();
    const unchanged: T[] = [];
    const revisions: { id: string; revision_number: number; created_at: number }[] = [];
    let phase: 'first' | 'revisions' | 'entries' = 'first';
    let chunks: string[][] = [];
    let chunkSize = 0;
    let done = false;
    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      if (err !== undefined) {
        stream.cancel();
        reject(fromGrpcError(err));
        return;
      }
      stream.end();
      resolve({ unchanged, fetched: [...fetched.values()] });
    };
    const requestNextChunk = (): void => {
      const next = chunks.shift();
      if (next === undefined) finish();
      else stream.write({ ids: next });
    };
    stream.on('data', (msg: SyncAuthorizedEntriesResponse__Output) => {
      if (phase === 'first' && msg.entry_revisions.length === 0) {
        for (const e of msg.entries) fetched.set(e.id, e);
        if (!msg.more) finish();
        return;
      }
      if (phase !== 'entries') {
        phase = 'revisions';
        if (chunkSize === 0) chunkSize = Math.max(1, msg.entry_revisions.length);
        revisions.push(...msg.entry_revisions);
        if (msg.more) return;
        const needed: string[] = [];
        for (const r of revisions) {
          const have = cached.get(r.id);
          if (have !== undefined && have.revisionNumber === r.revision_number && (r.created_at === 0 || have.createdAt === r.created_at)) {
            unchanged.push(have);
          } else {
            needed.push(r.id);
          }
        }
        needed.sort();
        chunks = [];
        for (let i = 0; i < needed.length; i += chunkSize) chunks.push(needed.slice(i, i + chunkSize));
        phase = 'entries';
        requestNextChunk();
        return;
      }
      for (const e of msg.entries) fetched.set(e.id, e);
      if (!msg.more) requestNextChunk();
    });
    stream.on('error', (err) => finish(err));
    stream.on('end', () => {
      if (!done) {
        if (phase === 'first' || (phase === 'entries' && chunks.length === 0)) finish();
        else finish(new Error('server-client: SyncAuthorizedEntries ended early'));
      }
    });
    stream.write({ output_mask: AGENT_ENTRY_MASK, ids: [] });
  });
}
