/**
 * Reading registration entries: the SQL for list filters and the assembly of rows from the
 * entry table and its child tables into {@link RegistrationEntry} objects.
 */
import type { DatabaseSync, SQLInputValue, SQLOutputValue } from 'node:sqlite';
import { ApiError, Code } from '../../common/errors.ts';
import { prepare } from './sqlite.ts';
import { normalizeSelectors, selectorSetKey, sortedUnique } from './selectors.ts';
import type { EntryFilter, MatchBehavior, RegistrationEntry, Selector } from './types.ts';
import { normalizeTrustDomain, selectorsError } from './validate.ts';

/** A WHERE clause over `entries e` and its parameters. */
export interface WhereClause {
  readonly sql: string;
  readonly params: SQLInputValue[];
}

function placeholders(n: number): string {
  return `(${new Array<string>(n).fill('?').join(', ')})`;
}

function selectorCondition(selectors: readonly Selector[], match: MatchBehavior, params: SQLInputValue[]): string {
  if (selectors.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'malformed selectors filter: empty selector set');
  const error = selectorsError(selectors);
  if (error !== undefined) throw new ApiError(Code.INVALID_ARGUMENT, `malformed selectors filter: ${error}`);
  const set = normalizeSelectors(selectors);
  const values = `(VALUES ${set.map(() => '(?, ?)').join(', ')})`;
  const pushSet = (): void => {
    for (const s of set) params.push(s.type, s.value);
  };
  switch (match) {
    case 'exact':
      params.push(selectorSetKey(set));
      return 'e.selectors_key = ?';
    case 'superset':
      pushSet();
      params.push(set.length);
      return `e.id IN (SELECT entry_id FROM entry_selectors WHERE (type, value) IN ${values} GROUP BY entry_id HAVING COUNT(*) = ?)`;
    case 'any':
      pushSet();
      return `e.id IN (SELECT entry_id FROM entry_selectors WHERE (type, value) IN ${values})`;
    case 'subset':
      // Every entry has at least one selector, so "no selector outside the set" is enough.
      pushSet();
      return `NOT EXISTS (SELECT 1 FROM entry_selectors s WHERE s.entry_id = e.id AND (s.type, s.value) NOT IN ${values})`;
    default:
      throw new ApiError(Code.INVALID_ARGUMENT, `malformed selectors filter: unknown match behavior ${JSON.stringify(match)}`);
  }
}

function federatesWithCondition(trustDomains: readonly string[], match: MatchBehavior, params: SQLInputValue[]): string {
  if (trustDomains.length === 0) {
    throw new ApiError(Code.INVALID_ARGUMENT, 'malformed federates with filter: empty trust domain set');
  }
  const names: string[] = [];
  for (const td of trustDomains) {
    const parsed = normalizeTrustDomain(td);
    if (!parsed.ok) throw new ApiError(Code.INVALID_ARGUMENT, `malformed federates with filter: ${parsed.error}`);
    names.push(parsed.value);
  }
  const set = sortedUnique(names);
  const list = placeholders(set.length);
  // As SPIRE: "subset" and "exact" need at least one federated trust domain in the set.
  switch (match) {
    case 'exact':
      params.push(...set, set.length);
      return `e.id IN (SELECT entry_id FROM entry_federates_with GROUP BY entry_id HAVING SUM(trust_domain NOT IN ${list}) = 0 AND COUNT(*) = ?)`;
    case 'subset':
      params.push(...set);
      return `e.id IN (SELECT entry_id FROM entry_federates_with GROUP BY entry_id HAVING SUM(trust_domain NOT IN ${list}) = 0)`;
    case 'superset':
      params.push(...set, set.length);
      return `e.id IN (SELECT entry_id FROM entry_federates_with WHERE trust_domain IN ${list} GROUP BY entry_id HAVING COUNT(*) = ?)`;
    case 'any':
      params.push(...set);
      return `e.id IN (SELECT entry_id FROM entry_federates_with WHERE trust_domain IN ${list})`;
    default:
      throw new ApiError(Code.INVALID_ARGUMENT, `malformed federates with filter: unknown match behavior ${JSON.stringify(match)}`);
  }
}

/** Builds the WHERE clause for a filter; throws INVALID_ARGUMENT for a malformed filter. */
export function buildEntryWhere(filter: EntryFilter | undefined, afterId?: string): WhereClause {
  const conditions: string[] = [];
  const params: SQLInputValue[] = [];
  if (filter?.bySpiffeId !== undefined) {
    conditions.push('e.spiffe_id = ?');
    params.push(filter.bySpiffeId);
  }
  if (filter?.byParentId !== undefined) {
    conditions.push('e.parent_id = ?');
    params.push(filter.byParentId);
  }
  if (filter?.byHint !== undefined) {
    conditions.push('e.hint = ?');
    params.push(filter.byHint);
  }
  if (filter?.byDownstream !== undefined) {
    conditions.push('e.downstream = ?');
    params.push(filter.byDownstream ? 1 : 0);
  }
  if (filter?.bySelectors !== undefined) {
    conditions.push(selectorCondition(filter.bySelectors.selectors, filter.bySelectors.match, params));
  }
  if (filter?.byFederatesWith !== undefined) {
    conditions.push(federatesWithCondition(filter.byFederatesWith.trustDomains, filter.byFederatesWith.match, params));
  }
  if (afterId !== undefined && afterId !== '') {
    conditions.push('e.id > ?');
    params.push(afterId);
  }
  return { sql: conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`, params };
}

const ENTRY_COLUMNS =
  'e.id, e.spiffe_id, e.parent_id, e.x509_svid_ttl, e.jwt_svid_ttl, e.hint, e.admin, e.downstream, ' +
  'e.store_svid, e.expires_at, e.revision_number, e.created_at';

/** Runs a query returning rows as arrays (much cheaper than objects in node:sqlite). */
function allArrays(db: DatabaseSync, sql: string, params: SQLInputValue[]): SQLOutputValue[][] {
  const stmt = prepare(db, sql);
  stmt.setReturnArrays(true);
  return stmt.all(...params) as unknown as SQLOutputValue[][];
}

/** Groups rows of `[entry_id, ...]` by entry ID. */
function groupByEntry<T>(rows: SQLOutputValue[][], map: (row: SQLOutputValue[]) => T): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const row of rows) {
    const id = String(row[0]);
    let list = out.get(id);
    if (list === undefined) out.set(id, (list = []));
    list.push(map(row));
  }
  return out;
}

/**
 * Loads the entries matching `where`, ordered by ID, at most `limit` (0 = no limit), with
 * their selectors, DNS names and federated trust domains: four queries whatever the count.
 */
export function loadEntries(db: DatabaseSync, where: WhereClause, limit = 0): RegistrationEntry[] {
  const limitSql = limit > 0 ? ` LIMIT ${Math.floor(limit)}` : '';
  const rows = allArrays(db, `SELECT ${ENTRY_COLUMNS} FROM entries e ${where.sql} ORDER BY e.id${limitSql}`, where.params);
  if (rows.length === 0) return [];
  // Unfiltered: read the child tables whole. Otherwise: only the children of the rows found.
  const everything = where.sql === '' && limitSql === '';
  const restrict = everything ? '' : 'WHERE entry_id IN (SELECT value FROM json_each(?))';
  const params: SQLInputValue[] = everything ? [] : [JSON.stringify(rows.map((r) => String(r[0])))];
  const selectors = groupByEntry(
    allArrays(db, `SELECT entry_id, type, value FROM entry_selectors ${restrict} ORDER BY entry_id, type, value`, params),
    (r): Selector => ({ type: String(r[1]), value: String(r[2]) }),
  );
  const dnsNames = groupByEntry(
    allArrays(db, `SELECT entry_id, name FROM entry_dns_names ${restrict} ORDER BY entry_id, position`, params),
    (r) => String(r[1]),
  );
  const federatesWith = groupByEntry(
    allArrays(db, `SELECT entry_id, trust_domain FROM entry_federates_with ${restrict} ORDER BY entry_id, trust_domain`, params),
    (r) => String(r[1]),
  );
  return rows.map((r): RegistrationEntry => {
    const id = String(r[0]);
    return {
      id,
      spiffeId: String(r[1]),
      parentId: String(r[2]),
      selectors: selectors.get(id) ?? [],
      x509SvidTtl: Number(r[3]),
      jwtSvidTtl: Number(r[4]),
      federatesWith: federatesWith.get(id) ?? [],
      dnsNames: dnsNames.get(id) ?? [],
      hint: String(r[5]),
      admin: r[6] === 1,
      downstream: r[7] === 1,
      storeSvid: r[8] === 1,
      expiresAt: Number(r[9]),
      revisionNumber: Number(r[10]),
      createdAt: Number(r[11]),
    };
  });
}

/** Loads one entry by ID. */
export function loadEntry(db: DatabaseSync, id: string): RegistrationEntry | undefined {
  return loadEntries(db, { sql: 'WHERE e.id = ?', params: [id] })[0];
}
