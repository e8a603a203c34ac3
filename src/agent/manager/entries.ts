/**
 * The agent's view of its registration entries and the selector index that answers
 * "which entries does a workload with these selectors match?" (an entry matches when all
 * of its selectors are among the workload's). Immutable once built; rebuilt per sync.
 */
import type { Entry__Output } from '../../gen/spire/api/types/Entry.ts';
import { parseSpiffeId } from '../../common/spiffe-id.ts';
import { selectorKey, type Selector } from '../../common/selector.ts';

/** An authorized entry as the agent keeps it. Immutable. */
export interface CachedEntry {
  readonly id: string;
  readonly spiffeId: string;
  readonly selectors: readonly Selector[];
  /** `type:value` keys of the selectors, for set checks. */
  readonly selectorKeys: readonly string[];
  readonly federatesWith: readonly string[];
  readonly hint: string;
  /** The entry's SVID TTLs in seconds; 0: the server's default (and for entries restored from the workload cache, which does not keep them). */
  readonly x509SvidTtl: number;
  readonly jwtSvidTtl: number;
  readonly createdAt: number;
  readonly revisionNumber: number;
  /** SVIDs of store_svid entries go to an SVID store, never to the Workload API. */
  readonly storeSvid: boolean;
  /** Admin and downstream entries' SVIDs are never handed to a delegate (Delegated Identity API). Absent: false. */
  readonly admin?: boolean;
  readonly downstream?: boolean;
}

/** Converts a synced entry, or explains why it is malformed (SPIRE skips those too). */
export function toCachedEntry(e: Entry__Output): CachedEntry | string {
  if (e.id === '') return 'entry has no ID';
  if (e.spiffe_id === null) return `entry ${e.id} has no SPIFFE ID`;
  const id = parseSpiffeId(`spiffe://${e.spiffe_id.trust_domain}${e.spiffe_id.path}`);
  if (!id.ok) return `entry ${e.id}: ${id.error}`;
  if (e.selectors.length === 0) return `entry ${e.id} has no selectors`;
  for (const s of e.selectors) {
    if (s.type === '' || s.value === '' || s.type.includes(':')) return `entry ${e.id} has a malformed selector "${s.type}:${s.value}"`;
  }
  const selectors = e.selectors.map((s) => ({ type: s.type, value: s.value }));
  return {
    id: e.id,
    spiffeId: id.value.uri,
    selectors,
    selectorKeys: [...new Set(selectors.map(selectorKey))],
    federatesWith: [...e.federates_with].map((td) => td.replace(/^spiffe:\/\//, '')).sort(),
    hint: e.hint,
    x509SvidTtl: e.x509_svid_ttl,
    jwtSvidTtl: e.jwt_svid_ttl,
    createdAt: e.created_at,
    revisionNumber: e.revision_number,
    storeSvid: e.store_svid,
    admin: e.admin,
    downstream: e.downstream,
  };
}

function compareIds(a: CachedEntry, b: CachedEntry): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** All entries with an index by selector key. Invariant: every entry is indexed under each of its keys. */
export class EntrySet {
  readonly byId: ReadonlyMap<string, CachedEntry>;
  readonly #bySelector = new Map<string, CachedEntry[]>();

  constructor(entries: Iterable<CachedEntry>) {
    const byId = new Map<string, CachedEntry>();
    for (const entry of entries) {
      byId.set(entry.id, entry);
      for (const key of entry.selectorKeys) {
        let list = this.#bySelector.get(key);
        if (list === undefined) this.#bySelector.set(key, (list = []));
        list.push(entry);
      }
    }
    this.byId = byId;
  }

  get size(): number {
    return this.byId.size;
  }

  /** Entries whose selectors are all in `selectorKeys`, sorted by entry ID. */
  match(selectorKeys: ReadonlySet<string>): CachedEntry[] {
    const out: CachedEntry[] = [];
    const seen = new Set<string>();
    for (const key of selectorKeys) {
      for (const entry of this.#bySelector.get(key) ?? []) {
        if (seen.has(entry.id)) continue;
        seen.add(entry.id);
        if (entry.selectorKeys.every((k) => selectorKeys.has(k))) out.push(entry);
      }
    }
    return out.sort(compareIds);
  }
}
