/**
 * Which registration entries an agent may host (SPIRE's `pkg/server/authorizedentries`).
 *
 * An agent may host the entries parented by its own ID, their descendants (entries parented
 * by an included entry's SPIFFE ID, transitively), and the descendants of every node-alias
 * entry whose selectors are a subset of the agent's node selectors. A node alias is an entry
 * parented by the server ID `spiffe://<td>/spire/server`; its SPIFFE ID names a group of
 * agents. As in SPIRE, the alias entries themselves are not in the result (see
 * {@link matchingNodeAliases} to get them).
 *
 * Pure: no I/O. Build the index once per entry set; each lookup then costs O(result), plus
 * the alias candidates sharing a selector with the agent.
 */
import { selectorKey } from './datastore/selectors.ts';
import type { RegistrationEntry, Selector } from './datastore/types.ts';

const SERVER_ID = /^spiffe:\/\/[^/]+\/spire\/server$/;

interface AliasRecord {
  readonly entry: RegistrationEntry;
  readonly selectorKeys: readonly string[];
}

/**
 * An immutable index of all entries. Invariants: every non-alias entry is in `byParentId`
 * under its parent ID; every alias entry is in `aliasesBySelector` once per selector it has.
 */
export interface EntryIndex {
  /** Non-alias entries by parent ID, in input order. */
  readonly byParentId: ReadonlyMap<string, readonly RegistrationEntry[]>;
  /** Node-alias entries by each of their selector keys (`type:value`). */
  readonly aliasesBySelector: ReadonlyMap<string, readonly AliasRecord[]>;
  /** Every entry by ID. */
  readonly byId: ReadonlyMap<string, RegistrationEntry>;
}

/** Whether an entry is a node alias: parented by the server ID of its trust domain. */
export function isNodeAlias(entry: RegistrationEntry): boolean {
  return SERVER_ID.test(entry.parentId);
}

/** Builds the index over a complete set of entries. */
export function buildEntryIndex(entries: Iterable<RegistrationEntry>): EntryIndex {
  const byParentId = new Map<string, RegistrationEntry[]>();
  const aliasesBySelector = new Map<string, AliasRecord[]>();
  const byId = new Map<string, RegistrationEntry>();
  for (const entry of entries) {
    byId.set(entry.id, entry);
    if (isNodeAlias(entry)) {
      const record: AliasRecord = { entry, selectorKeys: [...new Set(entry.selectors.map(selectorKey))] };
      for (const key of record.selectorKeys) {
        let list = aliasesBySelector.get(key);
        if (list === undefined) aliasesBySelector.set(key, (list = []));
        list.push(record);
      }
      continue;
    }
    let children = byParentId.get(entry.parentId);
    if (children === undefined) byParentId.set(entry.parentId, (children = []));
    children.push(entry);
  }
  return { byParentId, aliasesBySelector, byId };
}

/**
 * The node-alias entries an agent belongs to: those whose selectors are all among the
 * agent's node selectors. An alias with no selectors matches no agent.
 */
export function matchingNodeAliases(index: EntryIndex, agentSelectors: readonly Selector[]): RegistrationEntry[] {
  const have = new Set(agentSelectors.map(selectorKey));
  const seen = new Set<string>();
  const out: RegistrationEntry[] = [];
  for (const key of have) {
    for (const alias of index.aliasesBySelector.get(key) ?? []) {
      if (seen.has(alias.entry.id)) continue;
      seen.add(alias.entry.id);
      if (alias.selectorKeys.every((k) => have.has(k))) out.push(alias.entry);
    }
  }
  return out;
}

/** Options of {@link authorizedEntries}. */
export interface AuthorizedEntriesOptions {
  /** Also return the matching node-alias entries themselves (SPIRE does not). */
  readonly includeNodeAliases?: boolean;
}

/**
 * Returns the entries the agent `agentId` with node selectors `agentSelectors` may host, each
 * once: its children and their descendants, then the descendants of its node aliases.
 * Cycle-safe: each parent ID is expanded at most once.
 */
export function authorizedEntries(
  index: EntryIndex,
  agentId: string,
  agentSelectors: readonly Selector[],
  options: AuthorizedEntriesOptions = {},
): RegistrationEntry[] {
  const out: RegistrationEntry[] = [];
  const expanded = new Set<string>();
  // Iterative depth-first walk: deep chains cannot overflow the stack.
  const addDescendants = (rootParentId: string): void => {
    const stack = [rootParentId];
    while (stack.length > 0) {
      const parentId = stack.pop() as string;
      if (expanded.has(parentId)) continue;
      expanded.add(parentId);
      const children = index.byParentId.get(parentId);
      if (children === undefined) continue;
      for (const child of children) {
        out.push(child);
        stack.push(child.spiffeId);
      }
    }
  };
  addDescendants(agentId);
  for (const alias of matchingNodeAliases(index, agentSelectors)) {
    if (options.includeNodeAliases === true) out.push(alias);
    addDescendants(alias.spiffeId);
  }
  return out;
}
