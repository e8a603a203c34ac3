/**
 * Why a caller gets (or does not get) an identity: which registration entries its selectors
 * match, and which entries it misses by one or two selectors, naming for each missing
 * selector what the caller has instead (`k8s:sa:default` found, entry wants `k8s:sa:api`).
 *
 * An entry matches when every one of its selectors is among the caller's (the same rule as
 * {@link EntrySet.match}). A near miss is an entry that lacks at most `maxMissing` of its
 * selectors. Near misses are ranked so the likeliest intended entry comes first:
 * 1. fewer missing selectors;
 * 2. more missing selectors for which the caller has a selector of the same kind (a
 *    different service account is a likelier typo than a label it lacks altogether);
 * 3. more of the entry's selectors present (a more specific entry);
 * 4. SPIFFE ID, then entry ID (stable output).
 *
 * Pure: selectors and entries in, the explanation out.
 */
import { selectorKey, type Selector } from '../../common/selector.ts';

/** What the ranking needs of an entry (a subset of the agent's CachedEntry). */
export interface ExplainableEntry {
  readonly id: string;
  readonly spiffeId: string;
  readonly selectors: readonly Selector[];
  /** SVIDs of store_svid entries never reach the Workload API. */
  readonly storeSvid: boolean;
}

/** One selector an entry wants that the caller lacks. */
export interface MissingSelector {
  /** `type:value` the entry wants. */
  readonly wanted: string;
  /**
   * The caller's selectors of the same kind (same type and the most leading value segments in
   * common, at least the first: `k8s:sa:*` for `k8s:sa:api`, `k8s:pod-label:app:*` for
   * `k8s:pod-label:app:web`), sorted; empty when it has none of that kind.
   */
  readonly found: readonly string[];
}

/** An entry the caller misses by a few selectors. */
export interface NearMiss<E extends ExplainableEntry = ExplainableEntry> {
  readonly entry: E;
  readonly missing: readonly MissingSelector[];
  /** How many of the entry's selectors the caller has. */
  readonly present: number;
}

export interface Explanation<E extends ExplainableEntry = ExplainableEntry> {
  /** Entries whose selectors the caller all has, store_svid ones excluded, by SPIFFE ID then ID. */
  readonly matched: readonly E[];
  /** store_svid entries the caller matches: they never give it an identity. */
  readonly matchedStoreSvid: readonly E[];
  readonly nearMisses: readonly NearMiss<E>[];
  /** Near misses beyond `limit`, not listed. */
  readonly moreNearMisses: number;
}

export interface ExplainOptions {
  /** Most selectors an entry may lack and still be listed. Default 2. */
  readonly maxMissing?: number;
  /** Most near misses listed. Default 5. */
  readonly limit?: number;
}

/** The `:`-separated segments of a selector value (a label value keeps its own colons out of the kind). */
function segments(s: Selector): string[] {
  return s.value.split(':');
}

/** How many leading value segments two selectors of one type share, leaving out the last of `wanted`. */
function sharedKind(wanted: Selector, have: Selector): number {
  if (wanted.type !== have.type) return 0;
  const w = segments(wanted);
  const h = segments(have);
  let n = 0;
  while (n < w.length - 1 && n < h.length - 1 && w[n] === h[n]) n++;
  return n;
}

/** The caller's selectors of the same kind as `wanted` (see {@link MissingSelector.found}). */
function sameKind(wanted: Selector, caller: readonly Selector[]): string[] {
  let best = 0;
  let out: string[] = [];
  for (const have of caller) {
    const n = sharedKind(wanted, have);
    if (n === 0 || n < best) continue;
    if (n > best) {
      best = n;
      out = [];
    }
    out.push(selectorKey(have));
  }
  return out.sort();
}

function byIdentity(a: ExplainableEntry, b: ExplainableEntry): number {
  if (a.spiffeId !== b.spiffeId) return a.spiffeId < b.spiffeId ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Explains which entries `callerSelectors` match and which they nearly match. */
export function explainSelectors<E extends ExplainableEntry>(callerSelectors: readonly Selector[], entries: Iterable<E>, options: ExplainOptions = {}): Explanation<E> {
  const maxMissing = options.maxMissing ?? 2;
  const limit = options.limit ?? 5;
  const have = new Set(callerSelectors.map(selectorKey));
  const matched: E[] = [];
  const matchedStoreSvid: E[] = [];
  const misses: Array<NearMiss<E> & { readonly sameKindCount: number }> = [];
  for (const entry of entries) {
    const lacking = [...new Map(entry.selectors.filter((s) => !have.has(selectorKey(s))).map((s) => [selectorKey(s), s])).values()];
    if (lacking.length === 0) {
      (entry.storeSvid ? matchedStoreSvid : matched).push(entry);
      continue;
    }
    if (lacking.length > maxMissing || entry.storeSvid) continue;
    const missing = lacking.map((s) => ({ wanted: selectorKey(s), found: sameKind(s, callerSelectors) }));
    const present = new Set(entry.selectors.map(selectorKey)).size - lacking.length;
    misses.push({ entry, missing, present, sameKindCount: missing.filter((m) => m.found.length > 0).length });
  }
  misses.sort(
    (a, b) =>
      a.missing.length - b.missing.length ||
      b.sameKindCount - a.sameKindCount ||
      b.present - a.present ||
      byIdentity(a.entry, b.entry),
  );
  return {
    matched: matched.sort(byIdentity),
    matchedStoreSvid: matchedStoreSvid.sort(byIdentity),
    nearMisses: misses.slice(0, limit).map(({ entry, missing, present }) => ({ entry, missing, present })),
    moreNearMisses: Math.max(0, misses.length - limit),
  };
}

/** One line naming a near miss, e.g. `spiffe://td/api: k8s:sa:default found, entry wants k8s:sa:api`. */
export function describeNearMiss(miss: NearMiss): string {
  const parts = miss.missing.map((m) => (m.found.length === 0 ? `no ${m.wanted.slice(0, m.wanted.lastIndexOf(':'))}:… selector, entry wants ${m.wanted}` : `${m.found.join(', ')} found, entry wants ${m.wanted}`));
  return `${miss.entry.spiffeId}: ${parts.join('; ')}`;
}
