/**
 * The server's datastore: registration entries, attested agents, join tokens and federated
 * bundles in one SQLite file (WAL, synchronous=FULL, foreign keys on). Every multi-row write
 * is one transaction, so a crash never leaves half an entry. All calls are synchronous.
 *
 * Errors are ApiErrors whose codes and messages follow SPIRE where SPIRE defines them
 * ("entry not found", "similar entry already exists", "failed to convert entry: …");
 * other messages start with "datastore: ".
 */
import type { DatabaseSync } from 'node:sqlite';
import { systemClock, type Clock } from '../../common/clock.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { AgentStore, type AgentSerialsUpdate, type JoinTokenOutcome } from './agents.ts';
import { BundleStore } from './bundles.ts';
import { EntryStore } from './entries.ts';
import { internalError, openSqlite } from './sqlite.ts';
import type {
  AgentFilter,
  AttestedAgent,
  BatchEntryResult,
  BundleDeleteMode,
  EntryFilter,
  EntryInput,
  EntryPage,
  EntryPatch,
  FederatedBundle,
  FederatedBundleInput,
  JoinToken,
  RegistrationEntry,
  Selector,
} from './types.ts';
import { normalizeTrustDomain } from './validate.ts';

export type { AgentSerialsUpdate, JoinTokenOutcome } from './agents.ts';
export { SIMILAR_ENTRY_MESSAGE } from './entries.ts';

/** Options of {@link openDatastore}. */
export interface DatastoreOptions {
  /** The SQLite file (created with its directory if missing), or `:memory:` for tests. */
  readonly path: string;
  /** The server's trust domain (name or `spiffe://` ID): entries are validated against it. */
  readonly trustDomain: string;
  /** Source of `createdAt` and of the default "now" of `consumeJoinToken`. Defaults to the system clock. */
  readonly clock?: Clock;
}

/** The server's persistent state. */
export interface Datastore {
  /** The SQLite file path. */
  readonly path: string;
  /** The trust domain name entries are validated against. */
  readonly trustDomain: string;

  /** Creates an entry; see `EntryStore.create` for errors. */
  createEntry(input: EntryInput): RegistrationEntry;
  /** Creates entries independently; results are index-aligned (SPIRE's BatchCreateEntry). */
  batchCreateEntries(inputs: readonly EntryInput[]): BatchEntryResult[];
  /** Patches an entry and bumps its revision number. */
  updateEntry(id: string, patch: EntryPatch): RegistrationEntry;
  /** Patches entries independently; results are index-aligned (SPIRE's BatchUpdateEntry). */
  batchUpdateEntries(items: readonly { readonly id: string; readonly fields: EntryPatch }[]): BatchEntryResult[];
  /** Deletes an entry and returns it; NOT_FOUND "entry not found". */
  deleteEntry(id: string): RegistrationEntry;
  getEntry(id: string): RegistrationEntry | undefined;
  /** Entries matching every given filter, ordered by ID. */
  listEntries(filter?: EntryFilter): RegistrationEntry[];
  /** One page of `listEntries`; pass `nextPageToken` back for the next. */
  listEntriesPage(filter: EntryFilter | undefined, page: { pageSize: number; pageToken?: string }): EntryPage;
  countEntries(filter?: EntryFilter): number;
  /**
   * A counter that every committed change to entries bumps (also changes made by another
   * process on the same file). Cache derived data, such as the authorized-entries index,
   * and rebuild it when this differs from the value it was built at.
   */
  entriesGeneration(): number;

  /** Stores a newly attested agent; ALREADY_EXISTS if present. */
  createAttestedAgent(agent: AttestedAgent): AttestedAgent;
  getAttestedAgent(spiffeId: string): AttestedAgent | undefined;
  listAttestedAgents(filter?: AgentFilter): AttestedAgent[];
  /** Records serials and expiry; NOT_FOUND, or FAILED_PRECONDITION for a banned agent. */
  updateAgentSerials(spiffeId: string, update: AgentSerialsUpdate): AttestedAgent;
  /** Replaces the node selectors; NOT_FOUND "agent not found". */
  setAgentSelectors(spiffeId: string, selectors: readonly Selector[]): AttestedAgent;
  /** Sets banned and clears both serials; NOT_FOUND "agent not found". */
  banAgent(spiffeId: string): AttestedAgent;
  /** Evicts the agent (it may attest again); NOT_FOUND "agent not found". */
  deleteAgent(spiffeId: string): AttestedAgent;
  countAgents(): number;

  /** Stores a join token; ALREADY_EXISTS on a duplicate. */
  createJoinToken(token: JoinToken): void;
  /**
   * Deletes the token and reports whether it was valid: a token works exactly once, and an
   * expired token is deleted too. `nowSeconds` defaults to the clock.
   */
  consumeJoinToken(token: string, nowSeconds?: number): JoinTokenOutcome;
  /** Deletes tokens with `expiresAt < nowSeconds`; returns how many. */
  pruneJoinTokens(nowSeconds?: number): number;

  /** Upserts a federated bundle; the sequence number goes up when the content changes. */
  setFederatedBundle(bundle: FederatedBundleInput): FederatedBundle;
  getFederatedBundle(trustDomain: string): FederatedBundle | undefined;
  listFederatedBundles(): FederatedBundle[];
  /** Deletes a federated bundle; `restrict` (default), `delete` or `dissociate` its entries. */
  deleteFederatedBundle(trustDomain: string, mode?: BundleDeleteMode): void;

  /** Closes the database; later calls throw. Idempotent. */
  close(): void;
}

/** Makes every failure of `fn` an ApiError (unexpected ones as INTERNAL "datastore: …"). */
function guard<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  return (...args: A): R => {
    try {
      return fn(...args);
    } catch (err) {
      throw internalError(err);
    }
  };
}

/**
 * Opens (creating and migrating as needed) the datastore at `options.path`.
 * Throws an ApiError naming the path when the file cannot be opened or is not a SQLite
 * database, and FAILED_PRECONDITION when its schema is newer than this program.
 */
export function openDatastore(options: DatastoreOptions): Datastore {
  const td = normalizeTrustDomain(options.trustDomain);
  if (!td.ok) throw new ApiError(Code.INVALID_ARGUMENT, `datastore: invalid trust domain: ${td.error}`);
  const trustDomain = td.value;
  const clock = options.clock ?? systemClock;
  const db: DatabaseSync = openSqlite(options.path);
  const entries = new EntryStore(db, trustDomain, clock);
  const agents = new AgentStore(db);
  const bundles = new BundleStore(db, trustDomain);
  const nowSeconds = (): number => clock.now() / 1000;

  return {
    path: options.path,
    trustDomain,
    createEntry: guard((input) => entries.create(input)),
    batchCreateEntries: guard((inputs) => entries.batchCreate(inputs)),
    updateEntry: guard((id, patch) => entries.update(id, patch)),
    batchUpdateEntries: guard((items) => entries.batchUpdate(items)),
    deleteEntry: guard((id) => entries.delete(id)),
    getEntry: guard((id) => entries.get(id)),
    listEntries: guard((filter) => entries.list(filter)),
    listEntriesPage: guard((filter, page) => entries.listPage(filter, page)),
    countEntries: guard((filter) => entries.count(filter)),
    entriesGeneration: guard(() => entries.generation()),

    createAttestedAgent: guard((agent) => agents.create(agent)),
    getAttestedAgent: guard((spiffeId) => agents.get(spiffeId)),
    listAttestedAgents: guard((filter) => agents.list(filter)),
    updateAgentSerials: guard((spiffeId, update) => agents.updateSerials(spiffeId, update)),
    setAgentSelectors: guard((spiffeId, selectors) => agents.setSelectors(spiffeId, selectors)),
    banAgent: guard((spiffeId) => agents.ban(spiffeId)),
    deleteAgent: guard((spiffeId) => agents.delete(spiffeId)),
    countAgents: guard(() => agents.count()),

    createJoinToken: guard((token) => agents.createJoinToken(token)),
    consumeJoinToken: guard((token, now) => agents.consumeJoinToken(token, now ?? nowSeconds())),
    pruneJoinTokens: guard((now) => agents.pruneJoinTokens(now ?? nowSeconds())),

    setFederatedBundle: guard((bundle) => bundles.set(bundle)),
    getFederatedBundle: guard((trustDomainName) => bundles.get(trustDomainName)),
    listFederatedBundles: guard(() => bundles.list()),
    deleteFederatedBundle: guard((trustDomainName, mode) => bundles.delete(trustDomainName, mode)),

    close: () => {
      if (db.isOpen) db.close();
    },
  };
}
