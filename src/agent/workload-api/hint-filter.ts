/**
 * SPIRE's hint filter (`pkg/agent/common/hintsfilter`) plus the Workload API's ordering:
 * among identities sharing a non-empty hint keep the oldest entry (smallest createdAt, then
 * the smaller entry ID), and return the survivors ordered by entry ID, so `svids[0]`, the
 * default identity, is stable. Pure; applies to FetchX509SVID and FetchJWTSVID only.
 */

/** What the filter needs to know about an identity. */
export interface Hinted {
  readonly entryId: string;
  readonly hint: string;
  readonly createdAt: number;
}

/** Byte-wise (code unit) string order, as Go compares entry IDs; never locale-dependent. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** True when `a` should be kept over `b` for the same hint. */
function olderThan(a: Hinted, b: Hinted): boolean {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt;
  return compareIds(a.entryId, b.entryId) < 0;
}

/** Drops duplicate-hint identities (keeping the oldest) and orders the rest by entry ID. */
export function filterByHint<T extends Hinted>(identities: readonly T[]): T[] {
  const keepByHint = new Map<string, T>();
  for (const identity of identities) {
    if (identity.hint === '') continue;
    const kept = keepByHint.get(identity.hint);
    if (kept === undefined || olderThan(identity, kept)) keepByHint.set(identity.hint, identity);
  }
  const survivors = identities.filter((identity) => identity.hint === '' || keepByHint.get(identity.hint) === identity);
  return survivors.sort((a, b) => compareIds(a.entryId, b.entryId));
}
