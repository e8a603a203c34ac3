/**
 * Selectors: `type:value` facts about a workload or node (`unix:uid:1000`, `k8s:ns:default`).
 * The type never contains ':'; the value may.
 */
import type { Parsed } from './spiffe-id.ts';

/** A selector. */
export interface Selector {
  readonly type: string;
  readonly value: string;
}

/** The canonical `type:value` string of a selector (a set key). */
export function selectorKey(s: Selector): string {
  return `${s.type}:${s.value}`;
}

/** Parses `type:value` (split at the first ':'). */
export function parseSelector(text: string): Parsed<Selector> {
  const colon = text.indexOf(':');
  if (colon <= 0 || colon === text.length - 1) return { ok: false, error: `selector "${text}" must be formatted as type:value` };
  return { ok: true, value: { type: text.slice(0, colon), value: text.slice(colon + 1) } };
}
