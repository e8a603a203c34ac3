/**
 * Selector set helpers shared by the datastore and the authorized-entries computation.
 */
import type { Selector } from './types.ts';

import { selectorKey } from '../../common/selector.ts';

export { selectorKey };

function compareSelectors(a: Selector, b: Selector): number {
  if (a.type !== b.type) return a.type < b.type ? -1 : 1;
  if (a.value !== b.value) return a.value < b.value ? -1 : 1;
  return 0;
}

/** Returns the selectors sorted by (type, value) without duplicates, as fresh plain objects. */
export function normalizeSelectors(selectors: readonly Selector[]): Selector[] {
  const sorted = selectors.map((s) => ({ type: s.type, value: s.value })).sort(compareSelectors);
  const out: Selector[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last === undefined || compareSelectors(last, s) !== 0) out.push(s);
  }
  return out;
}

/**
 * An exact-set key for normalised selectors: equal sets give equal keys. JSON keeps it
 * unambiguous whatever the values contain.
 */
export function selectorSetKey(normalized: readonly Selector[]): string {
  return JSON.stringify(normalized.map((s) => [s.type, s.value]));
}

/** Returns the strings sorted and de-duplicated. */
export function sortedUnique(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}
