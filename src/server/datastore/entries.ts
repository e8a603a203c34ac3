/**
 * Registration entry writes: create (single and batch), update and delete. Every write of an
 * entry and its child rows happens in one transaction, so a crash or an error never leaves a
 * half-written entry.
 */
import { randomUUID } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import type { Clock } from '../../common/clock.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { buildEntryWhere, loadEntries, loadEntry } from './entry-queries.ts';
import { selectorSetKey } from './selectors.ts';
import { prepare, withSavepoint, withTransaction } from './sqlite.ts';
import type { BatchEntryResult, EntryFilter, EntryInput, EntryPage, EntryPatch, RegistrationEntry } from './types.ts';
import { entryValidationMessage, validateEntry, type ValidEntry } from './validate.ts';

/** SPIRE's status message for a create that matches an existing entry. */
export const SIMILAR_ENTRY_MESSAGE = 'similar entry already exists';

/** Registration entry operations over an open database. */
export class EntryStore {
  readonly #db: DatabaseSync;
  readonly #trustDomain: string;
  readonly #clock: Clock;

  constructor(db: DatabaseSync, trustDomain: string, clock: Clock) {
    this.#db = db;
    this.#trustDomain = trustDomain;
    this.#clock = clock;
  }

  /**
   * Validates and stores a new entry. Throws INVALID_ARGUMENT (validation, with SPIRE's
   * message), ALREADY_EXISTS (a similar entry, or a caller-chosen ID already in use),
   * FAILED_PRECONDITION (a federated trust domain without a stored bundle).
   */
  create(input: EntryInput): RegistrationEntry {
    const valid = this.#validate(input, 'create');
    return withTransaction(this.#db, () => {
      const result = this.#insert(valid);
      if ('existing' in result) {
        throw new ApiError(
          Code.ALREADY_EXISTS,
          `${SIMILAR_ENTRY_MESSAGE}: entry ID ${JSON.stringify(result.existing.id)}`,
          { entryId: result.existing.id },
        );
      }
      return result.entry;
    });
  }

  /**
   * Creates each entry independently, as SPIRE's BatchCreateEntry: one failed item does not
   * affect the others. Results are index-aligned with the inputs. A similar existing entry
   * gives ALREADY_EXISTS "similar entry already exists" together with that entry.
   * All items commit together (one fsync), each item in its own savepoint.
   */
  batchCreate(inputs: readonly EntryInput[]): BatchEntryResult[] {
    return withTransaction(this.#db, () =>
      inputs.map((input): BatchEntryResult => {
        try {
          const valid = this.#validate(input, 'create');
          const result = withSavepoint(this.#db, () => this.#insert(valid));
          if ('existing' in result) {
            return { status: { code: Code.ALREADY_EXISTS, message: SIMILAR_ENTRY_MESSAGE }, entry: result.existing };
          }
          return { status: { code: Code.OK, message: 'OK' }, entry: result.entry };
        } catch (err) {
          // An item's own failure is its status. If SQLite itself has abandoned the
          // transaction, nothing can be committed: fail the whole batch instead.
          if (!(err instanceof ApiError) || !this.#db.isTransaction) throw err;
          const message = err.code === Code.INTERNAL ? `failed to create entry: ${err.message}` : err.message;
          return { status: { code: err.code, message } };
        }
      }),
    );
  }

  /**
   * Applies `patch` to the entry `id`, validates the result and bumps its revision number.
   * Throws NOT_FOUND "entry not found", INVALID_ARGUMENT, ALREADY_EXISTS (the update would
   * make it similar to another entry), FAILED_PRECONDITION (unknown federated trust domain).
   */
  update(id: string, patch: EntryPatch): RegistrationEntry {
    return withTransaction(this.#db, () => this.#update(id, patch));
  }

  /**
   * Updates each entry independently, as SPIRE's BatchUpdateEntry; results are index-aligned.
   * Statuses: OK with the entry; INVALID_ARGUMENT "failed to convert entry: …" or
   * "failed to update entry: datastore-validation: …"; NOT_FOUND "failed to update entry"
   * (SPIRE hides the detail); others "failed to update entry: <reason>".
   */
  batchUpdate(items: readonly { readonly id: string; readonly fields: EntryPatch }[]): BatchEntryResult[] {
    return withTransaction(this.#db, () =>
      items.map((item): BatchEntryResult => {
        try {
          const entry = withSavepoint(this.#db, () => this.#update(item.id, item.fields));
          return { status: { code: Code.OK, message: 'OK' }, entry };
        } catch (err) {
          if (!(err instanceof ApiError) || !this.#db.isTransaction) throw err;
          if (err.code === Code.NOT_FOUND) return { status: { code: Code.NOT_FOUND, message: 'failed to update entry' } };
          const message = err.message.startsWith('failed to ') ? err.message : `failed to update entry: ${err.message}`;
          return { status: { code: err.code, message } };
        }
      }),
    );
  }

  #update(id: string, patch: EntryPatch): RegistrationEntry {
    const current = loadEntry(this.#db, id);
    if (current === undefined) throw new ApiError(Code.NOT_FOUND, 'entry not found');
    const merged: EntryInput = {
      id: current.id,
      spiffeId: patch.spiffeId ?? current.spiffeId,
      parentId: patch.parentId ?? current.parentId,
      selectors: patch.selectors ?? current.selectors,
      x509SvidTtl: patch.x509SvidTtl ?? current.x509SvidTtl,
      jwtSvidTtl: patch.jwtSvidTtl ?? current.jwtSvidTtl,
      federatesWith: patch.federatesWith ?? current.federatesWith,
      dnsNames: patch.dnsNames ?? current.dnsNames,
      hint: patch.hint ?? current.hint,
      admin: patch.admin ?? current.admin,
      downstream: patch.downstream ?? current.downstream,
      storeSvid: patch.storeSvid ?? current.storeSvid,
      expiresAt: patch.expiresAt ?? current.expiresAt,
    };
    const valid = this.#validate(merged, 'update');
    const similar = this.#findSimilar(valid);
    if (similar !== undefined && similar !== id) {
      throw new ApiError(Code.ALREADY_EXISTS, `${SIMILAR_ENTRY_MESSAGE}: entry ID ${JSON.stringify(similar)}`, {
        entryId: similar,
      });
    }
    prepare(
      this.#db,
      `UPDATE entries SET spiffe_id = ?, parent_id = ?, selectors_key = ?, x509_svid_ttl = ?, jwt_svid_ttl = ?,
         hint = ?, admin = ?, downstream = ?, store_svid = ?, expires_at = ?, revision_number = revision_number + 1
       WHERE id = ?`,
    ).run(...this.#columnValues(valid), id);
    for (const table of ['entry_selectors', 'entry_dns_names', 'entry_federates_with']) {
      prepare(this.#db, `DELETE FROM ${table} WHERE entry_id = ?`).run(id);
    }
    this.#insertChildren(id, valid, 'update');
    bumpEntriesGeneration(this.#db);
    return { ...valid, id, revisionNumber: current.revisionNumber + 1, createdAt: current.createdAt };
  }

  /** Deletes the entry `id` and returns it; NOT_FOUND "entry not found" if absent. */
  delete(id: string): RegistrationEntry {
    return withTransaction(this.#db, () => {
      const current = loadEntry(this.#db, id);
      if (current === undefined) throw new ApiError(Code.NOT_FOUND, 'entry not found');
      prepare(this.#db, 'DELETE FROM entries WHERE id = ?').run(id);
      bumpEntriesGeneration(this.#db);
      return current;
    });
  }

  /** Returns the entry `id`, or undefined. */
  get(id: string): RegistrationEntry | undefined {
    return loadEntry(this.#db, id);
  }

  /** Returns the entries matching every given filter, ordered by ID. */
  list(filter?: EntryFilter): RegistrationEntry[] {
    return loadEntries(this.#db, buildEntryWhere(filter));
  }

  /** Returns one page of matching entries, ordered by ID; `pageSize` 0 means all. */
  listPage(filter: EntryFilter | undefined, page: { pageSize: number; pageToken?: string }): EntryPage {
    if (!Number.isInteger(page.pageSize) || page.pageSize < 0) {
      throw new ApiError(Code.INVALID_ARGUMENT, 'datastore: page size must be a non-negative integer');
    }
    const entries = loadEntries(this.#db, buildEntryWhere(filter, page.pageToken), page.pageSize);
    const last = entries[entries.length - 1];
    const full = page.pageSize > 0 && entries.length === page.pageSize;
    return { entries, nextPageToken: full && last !== undefined ? last.id : '' };
  }

  /** Counts the entries matching every given filter. */
  count(filter?: EntryFilter): number {
    const where = buildEntryWhere(filter);
    const row = prepare(this.#db, `SELECT COUNT(*) AS n FROM entries e ${where.sql}`).get(...where.params);
    return Number(row?.n ?? 0);
  }

  /** A counter bumped by every committed entry change (see `Datastore.entriesGeneration`). */
  generation(): number {
    const row = prepare(this.#db, "SELECT value FROM meta WHERE key = 'entries_generation'").get();
    return Number(row?.value ?? 0);
  }

  #validate(input: EntryInput, operation: 'create' | 'update'): ValidEntry {
    const result = validateEntry(input, this.#trustDomain);
    if (!result.ok) throw new ApiError(Code.INVALID_ARGUMENT, entryValidationMessage(result, operation));
    return result.value;
  }

  #findSimilar(valid: ValidEntry): string | undefined {
    const row = prepare(this.#db, 'SELECT id FROM entries WHERE spiffe_id = ? AND parent_id = ? AND selectors_key = ?').get(
      valid.spiffeId,
      valid.parentId,
      selectorSetKey(valid.selectors),
    );
    return row === undefined ? undefined : String(row.id);
  }

  /** Inserts an entry inside the caller's transaction, or returns the similar one found. */
  #insert(valid: ValidEntry): { entry: RegistrationEntry } | { existing: RegistrationEntry } {
    const similar = this.#findSimilar(valid);
    if (similar !== undefined) return { existing: this.#mustLoad(similar) };
    let id = valid.id;
    if (id === '') id = randomUUID();
    else if (prepare(this.#db, 'SELECT 1 FROM entries WHERE id = ?').get(id) !== undefined) {
      throw new ApiError(Code.ALREADY_EXISTS, `datastore: entry ID ${JSON.stringify(id)} is already in use`);
    }
    const createdAt = Math.floor(this.#clock.now() / 1000);
    prepare(
      this.#db,
      `INSERT INTO entries (spiffe_id, parent_id, selectors_key, x509_svid_ttl, jwt_svid_ttl, hint, admin, downstream,
         store_svid, expires_at, id, revision_number, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
    ).run(...this.#columnValues(valid), id, createdAt);
    this.#insertChildren(id, valid, 'create');
    bumpEntriesGeneration(this.#db);
    // Built from what was written (already normalised) rather than read back.
    return { entry: { ...valid, id, revisionNumber: 0, createdAt } };
  }

  #columnValues(valid: ValidEntry): [string, string, string, number, number, string, number, number, number, number] {
    return [
      valid.spiffeId,
      valid.parentId,
      selectorSetKey(valid.selectors),
      valid.x509SvidTtl,
      valid.jwtSvidTtl,
      valid.hint,
      valid.admin ? 1 : 0,
      valid.downstream ? 1 : 0,
      valid.storeSvid ? 1 : 0,
      valid.expiresAt,
    ];
  }

  #insertChildren(id: string, valid: ValidEntry, operation: 'create' | 'update'): void {
    const selector = prepare(this.#db, 'INSERT INTO entry_selectors (entry_id, type, value) VALUES (?, ?, ?)');
    for (const s of valid.selectors) selector.run(id, s.type, s.value);
    const dns = prepare(this.#db, 'INSERT INTO entry_dns_names (entry_id, position, name) VALUES (?, ?, ?)');
    valid.dnsNames.forEach((name, i) => dns.run(id, i, name));
    // Written last, as SPIRE does: a missing bundle fails the whole transaction after the
    // entry row exists, and the rollback removes everything written so far.
    const bundleExists = prepare(this.#db, 'SELECT 1 FROM federated_bundles WHERE trust_domain = ?');
    const federates = prepare(this.#db, 'INSERT INTO entry_federates_with (entry_id, trust_domain) VALUES (?, ?)');
    for (const td of valid.federatesWith) {
      if (td !== this.#trustDomain && bundleExists.get(td) === undefined) {
        throw new ApiError(
          Code.FAILED_PRECONDITION,
          `failed to ${operation} entry: unable to find federated bundle ${JSON.stringify(`spiffe://${td}`)}`,
        );
      }
      federates.run(id, td);
    }
  }

  #mustLoad(id: string): RegistrationEntry {
    const entry = loadEntry(this.#db, id);
    if (entry === undefined) throw new ApiError(Code.INTERNAL, `datastore: entry ${JSON.stringify(id)} vanished`);
    return entry;
  }
}

/** Bumps the entries generation counter; call inside the transaction that changed entries. */
export function bumpEntriesGeneration(db: DatabaseSync): void {
  prepare(db, "UPDATE meta SET value = value + 1 WHERE key = 'entries_generation'").run();
}
