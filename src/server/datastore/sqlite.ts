/**
 * The SQLite layer of the datastore: opening the file with durable settings, schema
 * migrations, and transactions. Uses Node's built-in `node:sqlite` (synchronous).
 */
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { ApiError, Code } from '../../common/errors.ts';

/** One schema step: SQL, or a function for what SQL cannot do. */
type Migration = string | ((db: DatabaseSync) => void);

/**
 * Agent SVID serials were stored as lowercase hex; SPIRE stores and reports them in decimal
 * (Go's `big.Int.String()`), so they become decimal. Every stored serial was written as hex.
 */
function agentSerialsToDecimal(db: DatabaseSync): void {
  const rows = db.prepare('SELECT spiffe_id, serial_number, new_serial_number FROM agents').all();
  const update = db.prepare('UPDATE agents SET serial_number = ?, new_serial_number = ? WHERE spiffe_id = ?');
  const decimal = (hex: unknown): string => (hex === '' ? '' : BigInt(`0x${String(hex)}`).toString(10));
  for (const r of rows) update.run(decimal(r.serial_number), decimal(r.new_serial_number), String(r.spiffe_id));
}

/**
 * Schema migrations, applied in order; index i brings the schema from version i to i + 1.
 * Append only: never edit a released step.
 */
const MIGRATIONS: readonly Migration[] = [
  `
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO meta (key, value) VALUES ('entries_generation', 0);

  CREATE TABLE entries (
    id              TEXT PRIMARY KEY,
    spiffe_id       TEXT NOT NULL,
    parent_id       TEXT NOT NULL,
    selectors_key   TEXT NOT NULL,
    x509_svid_ttl   INTEGER NOT NULL,
    jwt_svid_ttl    INTEGER NOT NULL,
    hint            TEXT NOT NULL,
    admin           INTEGER NOT NULL,
    downstream      INTEGER NOT NULL,
    store_svid      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    revision_number INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
  ) WITHOUT ROWID;
  -- SPIRE's "similar entry": same SPIFFE ID, parent ID and selector set. Enforced here too.
  CREATE UNIQUE INDEX entries_similar ON entries (spiffe_id, parent_id, selectors_key);
  CREATE INDEX entries_parent_id ON entries (parent_id);
  CREATE INDEX entries_hint ON entries (hint);

  CREATE TABLE entry_selectors (
    entry_id TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    type     TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (entry_id, type, value)
  ) WITHOUT ROWID;
  CREATE INDEX entry_selectors_type_value ON entry_selectors (type, value);

  CREATE TABLE entry_dns_names (
    entry_id TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name     TEXT NOT NULL,
    PRIMARY KEY (entry_id, position)
  ) WITHOUT ROWID;

  CREATE TABLE federated_bundles (
    trust_domain    TEXT PRIMARY KEY,
    content         TEXT NOT NULL,
    refresh_hint    INTEGER NOT NULL,
    sequence_number INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE entry_federates_with (
    entry_id     TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    -- No foreign key: like SPIRE, an entry may federate with the server's own trust domain,
    -- whose bundle is not a federated bundle. Existence is checked when the entry is written.
    trust_domain TEXT NOT NULL,
    PRIMARY KEY (entry_id, trust_domain)
  ) WITHOUT ROWID;
  CREATE INDEX entry_federates_with_trust_domain ON entry_federates_with (trust_domain);

  CREATE TABLE agents (
    spiffe_id         TEXT PRIMARY KEY,
    attestation_type  TEXT NOT NULL,
    serial_number     TEXT NOT NULL,
    new_serial_number TEXT NOT NULL,
    expires_at        INTEGER NOT NULL,
    banned            INTEGER NOT NULL,
    can_reattest      INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE agent_selectors (
    agent_id TEXT NOT NULL REFERENCES agents (spiffe_id) ON DELETE CASCADE,
    type     TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (agent_id, type, value)
  ) WITHOUT ROWID;

  -- Tokens are stored as SHA-256 hex digests: a leaked database file does not leak usable tokens.
  CREATE TABLE join_tokens (
    token_hash TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);
  `,
  agentSerialsToDecimal,
];

/** The schema version this program writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

const statementCaches = new WeakMap<DatabaseSync, Map<string, StatementSync>>();
const STATEMENT_CACHE_SIZE = 256;

/** Returns a prepared statement for `sql`, reusing one prepared earlier on the same database. */
export function prepare(db: DatabaseSync, sql: string): StatementSync {
  let cache = statementCaches.get(db);
  if (cache === undefined) statementCaches.set(db, (cache = new Map()));
  let stmt = cache.get(sql);
  if (stmt === undefined) {
    stmt = db.prepare(sql);
    // Filters with many values produce many distinct SQL strings: keep the cache bounded.
    if (cache.size >= STATEMENT_CACHE_SIZE) cache.clear();
    cache.set(sql, stmt);
  }
  return stmt;
}

/** Wraps an unexpected SQLite failure as an INTERNAL ApiError; ApiErrors pass through. */
export function internalError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ApiError(Code.INTERNAL, `datastore: ${message}`);
}

/**
 * Runs `fn` in one write transaction (BEGIN IMMEDIATE … COMMIT): either all of its writes
 * land or none do. ROLLBACK on any error, which is rethrown (non-ApiErrors as INTERNAL).
 */
export function withTransaction<T>(db: DatabaseSync, fn: () => T): T {
  try {
    db.exec('BEGIN IMMEDIATE');
  } catch (err) {
    throw internalError(err);
  }
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw internalError(err);
  }
}

/**
 * Runs `fn` inside a savepoint of the current transaction: on error only its own writes are
 * undone, and the error is rethrown.
 */
export function withSavepoint<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('SAVEPOINT item');
  try {
    const result = fn();
    db.exec('RELEASE item');
    return result;
  } catch (err) {
    db.exec('ROLLBACK TO item');
    db.exec('RELEASE item');
    throw internalError(err);
  }
}

function currentVersion(db: DatabaseSync): number {
  const row = db.prepare('SELECT version FROM schema_version').get();
  return row === undefined ? 0 : Number(row.version);
}

function migrate(db: DatabaseSync, path: string): void {
  withTransaction(db, () => {
    db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const version = currentVersion(db);
    if (version > SCHEMA_VERSION) {
      throw new ApiError(
        Code.FAILED_PRECONDITION,
        `datastore: ${JSON.stringify(path)} has schema version ${version}, newer than this program supports (${SCHEMA_VERSION})`,
      );
    }
    for (let v = version; v < SCHEMA_VERSION; v++) {
      const step = MIGRATIONS[v] ?? '';
      if (typeof step === 'string') db.exec(step);
      else step(db);
    }
    if (version === 0) db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(SCHEMA_VERSION);
    else if (version !== SCHEMA_VERSION) db.prepare('UPDATE schema_version SET version = ?').run(SCHEMA_VERSION);
  });
}

/**
 * Creates `dir` and missing ancestors, owner-only. Not `mkdirSync({ recursive: true })`:
 * that spins forever on some pseudo file systems (e.g. a path under /proc).
 */
function ensureDir(dir: string): void {
  if (existsSync(dir)) return;
  const parent = dirname(dir);
  if (parent !== dir) ensureDir(parent);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/**
 * Opens (creating if needed) the database at `path` with WAL, synchronous=FULL, foreign keys
 * and a busy timeout, and brings its schema up to date. A new file and its directory are
 * created owner-only. Throws an ApiError naming the path if the file is not a usable
 * SQLite database.
 */
export function openSqlite(path: string): DatabaseSync {
  const inMemory = path === ':memory:';
  let db: DatabaseSync;
  try {
    if (!inMemory) {
      ensureDir(dirname(path));
      // Create the file owner-only before SQLite does (SQLite would use 0644); WAL and SHM
      // files inherit the database file's permissions.
      closeSync(openSync(path, 'a', 0o600));
    }
    db = new DatabaseSync(path, { enableForeignKeyConstraints: true, timeout: 5000 });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new ApiError(Code.INTERNAL, `datastore: cannot open ${JSON.stringify(path)}: ${message}`);
  }
  try {
    if (!inMemory) {
      const mode = db.prepare('PRAGMA journal_mode = WAL').get();
      if (String(mode?.journal_mode).toLowerCase() !== 'wal') {
        throw new Error(`journal_mode is ${String(mode?.journal_mode)}, not wal`);
      }
    }
    db.exec('PRAGMA synchronous = FULL');
    // 32 MiB page cache (default 2 MiB): large entry sets insert and list without thrashing.
    db.exec('PRAGMA cache_size = -32768');
    db.exec('PRAGMA foreign_keys = ON');
    migrate(db, path);
  } catch (err) {
    db.close();
    if (err instanceof ApiError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new ApiError(Code.INTERNAL, `datastore: cannot use ${JSON.stringify(path)} as a SQLite database: ${message}`);
  }
  return db;
}
