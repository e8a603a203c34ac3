/**
 * Attested agents (SPIRE's attested nodes with their node selectors) and join tokens.
 */
import { createHash } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import { ApiError, Code } from '../../common/errors.ts';
import { parseSpiffeId } from '../../common/spiffe-id.ts';
import { normalizeSelectors } from './selectors.ts';
import { prepare, withTransaction } from './sqlite.ts';
import type { AgentFilter, AttestedAgent, JoinToken, Selector } from './types.ts';
import { selectorsError } from './validate.ts';

/** The serial fields `updateAgentSerials` writes (SPIRE's certificate mask of UpdateAttestedNode). */
export interface AgentSerialsUpdate {
  readonly serialNumber: string;
  readonly newSerialNumber: string;
  readonly expiresAt: number;
  /** Left unchanged when omitted. */
  readonly canReattest?: boolean;
}

/** The outcome of consuming a join token. */
export type JoinTokenOutcome = 'ok' | 'unknown' | 'expired';

function checkSelectors(selectors: readonly Selector[]): Selector[] {
  const error = selectorsError(selectors);
  if (error !== undefined) throw new ApiError(Code.INVALID_ARGUMENT, `datastore: invalid agent selectors: ${error}`);
  return normalizeSelectors(selectors);
}

function checkUnixSeconds(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ApiError(Code.INVALID_ARGUMENT, `datastore: ${name} must be a non-negative integer (Unix seconds)`);
  }
}

function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const AGENT_NOT_FOUND = 'agent not found';

/** Agent and join token operations over an open database. */
export class AgentStore {
  readonly #db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Stores a newly attested agent; ALREADY_EXISTS if one with that SPIFFE ID exists. */
  create(agent: AttestedAgent): AttestedAgent {
    const id = parseSpiffeId(agent.spiffeId);
    if (!id.ok) throw new ApiError(Code.INVALID_ARGUMENT, `datastore: invalid agent ID: ${id.error}`);
    if (agent.attestationType === '') throw new ApiError(Code.INVALID_ARGUMENT, 'datastore: attestation type is empty');
    checkUnixSeconds('expiresAt', agent.expiresAt);
    const selectors = checkSelectors(agent.selectors);
    return withTransaction(this.#db, () => {
      if (prepare(this.#db, 'SELECT 1 FROM agents WHERE spiffe_id = ?').get(agent.spiffeId) !== undefined) {
        throw new ApiError(Code.ALREADY_EXISTS, `datastore: agent ${JSON.stringify(agent.spiffeId)} already exists`);
      }
      prepare(
        this.#db,
        `INSERT INTO agents (spiffe_id, attestation_type, serial_number, new_serial_number, expires_at, banned, can_reattest)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        agent.spiffeId,
        agent.attestationType,
        // A banned agent keeps no serials, as in SPIRE.
        agent.banned ? '' : agent.serialNumber,
        agent.banned ? '' : agent.newSerialNumber,
        agent.expiresAt,
        agent.banned ? 1 : 0,
        agent.canReattest ? 1 : 0,
      );
      this.#writeSelectors(agent.spiffeId, selectors);
      return this.#mustGet(agent.spiffeId);
    });
  }

  /** Returns the agent, or undefined. */
  get(spiffeId: string): AttestedAgent | undefined {
    return this.#load('WHERE spiffe_id = ?', [spiffeId])[0];
  }

  /** Returns the agents matching every given filter, ordered by SPIFFE ID. */
  list(filter?: AgentFilter): AttestedAgent[] {
    const conditions: string[] = [];
    const params: (string | number)[] = [];
    if (filter?.byBanned !== undefined) {
      conditions.push('banned = ?');
      params.push(filter.byBanned ? 1 : 0);
    }
    if (filter?.byCanReattest !== undefined) {
      conditions.push('can_reattest = ?');
      params.push(filter.byCanReattest ? 1 : 0);
    }
    if (filter?.byAttestationType !== undefined) {
      conditions.push('attestation_type = ?');
      params.push(filter.byAttestationType);
    }
    return this.#load(conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`, params);
  }

  /** Counts all agents. */
  count(): number {
    return Number(prepare(this.#db, 'SELECT COUNT(*) AS n FROM agents').get()?.n ?? 0);
  }

  /**
   * Records the agent's current and pending SVID serials and expiry (after attestation,
   * renewal, or when the agent first uses its renewed SVID). NOT_FOUND "agent not found";
   * FAILED_PRECONDITION for a banned agent: only eviction (delete) lets it back.
   */
  updateSerials(spiffeId: string, update: AgentSerialsUpdate): AttestedAgent {
    checkUnixSeconds('expiresAt', update.expiresAt);
    return withTransaction(this.#db, () => {
      const current = this.get(spiffeId);
      if (current === undefined) throw new ApiError(Code.NOT_FOUND, AGENT_NOT_FOUND);
      if (current.banned) throw new ApiError(Code.FAILED_PRECONDITION, 'datastore: agent is banned');
      prepare(
        this.#db,
        'UPDATE agents SET serial_number = ?, new_serial_number = ?, expires_at = ?, can_reattest = ? WHERE spiffe_id = ?',
      ).run(
        update.serialNumber,
        update.newSerialNumber,
        update.expiresAt,
        (update.canReattest ?? current.canReattest) ? 1 : 0,
        spiffeId,
      );
      return this.#mustGet(spiffeId);
    });
  }

  /** Replaces the agent's node selectors; NOT_FOUND "agent not found". */
  setSelectors(spiffeId: string, selectors: readonly Selector[]): AttestedAgent {
    const normalized = checkSelectors(selectors);
    return withTransaction(this.#db, () => {
      if (this.get(spiffeId) === undefined) throw new ApiError(Code.NOT_FOUND, AGENT_NOT_FOUND);
      prepare(this.#db, 'DELETE FROM agent_selectors WHERE agent_id = ?').run(spiffeId);
      this.#writeSelectors(spiffeId, normalized);
      return this.#mustGet(spiffeId);
    });
  }

  /** Bans the agent: sets `banned` and clears both serials, as SPIRE's BanAgent. NOT_FOUND "agent not found". */
  ban(spiffeId: string): AttestedAgent {
    return withTransaction(this.#db, () => {
      const changed = prepare(
        this.#db,
        "UPDATE agents SET banned = 1, serial_number = '', new_serial_number = '' WHERE spiffe_id = ?",
      ).run(spiffeId);
      if (Number(changed.changes) === 0) throw new ApiError(Code.NOT_FOUND, AGENT_NOT_FOUND);
      return this.#mustGet(spiffeId);
    });
  }

  /** Deletes (evicts) the agent and its selectors, returning it; NOT_FOUND "agent not found". */
  delete(spiffeId: string): AttestedAgent {
    return withTransaction(this.#db, () => {
      const current = this.get(spiffeId);
      if (current === undefined) throw new ApiError(Code.NOT_FOUND, AGENT_NOT_FOUND);
      prepare(this.#db, 'DELETE FROM agents WHERE spiffe_id = ?').run(spiffeId);
      return current;
    });
  }

  /** Stores a join token (as its SHA-256); ALREADY_EXISTS if the same token exists. */
  createJoinToken(token: JoinToken): void {
    if (token.token === '') throw new ApiError(Code.INVALID_ARGUMENT, 'datastore: join token is empty');
    checkUnixSeconds('expiresAt', token.expiresAt);
    withTransaction(this.#db, () => {
      const hash = hashToken(token.token);
      if (prepare(this.#db, 'SELECT 1 FROM join_tokens WHERE token_hash = ?').get(hash) !== undefined) {
        throw new ApiError(Code.ALREADY_EXISTS, 'datastore: join token already exists');
      }
      prepare(this.#db, 'INSERT INTO join_tokens (token_hash, expires_at) VALUES (?, ?)').run(hash, token.expiresAt);
    });
  }

  /**
   * Consumes a join token in one statement, so it works exactly once even under concurrent
   * attempts: the token is deleted whether it is valid or expired. Expired means
   * `expiresAt < nowSeconds`, as SPIRE's `Expiry.Before(now)`.
   */
  consumeJoinToken(token: string, nowSeconds: number): JoinTokenOutcome {
    const row = withTransaction(this.#db, () =>
      prepare(this.#db, 'DELETE FROM join_tokens WHERE token_hash = ? RETURNING expires_at').get(hashToken(token)),
    );
    if (row === undefined) return 'unknown';
    return Number(row.expires_at) < nowSeconds ? 'expired' : 'ok';
  }

  /** Deletes tokens that expired before `nowSeconds`; returns how many. */
  pruneJoinTokens(nowSeconds: number): number {
    return withTransaction(this.#db, () =>
      Number(prepare(this.#db, 'DELETE FROM join_tokens WHERE expires_at < ?').run(nowSeconds).changes),
    );
  }

  #writeSelectors(spiffeId: string, selectors: readonly Selector[]): void {
    const insert = prepare(this.#db, 'INSERT INTO agent_selectors (agent_id, type, value) VALUES (?, ?, ?)');
    for (const s of selectors) insert.run(spiffeId, s.type, s.value);
  }

  #load(where: string, params: (string | number)[]): AttestedAgent[] {
    const rows = prepare(this.#db, `SELECT * FROM agents ${where} ORDER BY spiffe_id`).all(...params);
    if (rows.length === 0) return [];
    const selectors = new Map<string, Selector[]>();
    const selectorRows = prepare(
      this.#db,
      'SELECT agent_id, type, value FROM agent_selectors WHERE agent_id IN (SELECT value FROM json_each(?)) ORDER BY agent_id, type, value',
    ).all(JSON.stringify(rows.map((r) => String(r.spiffe_id))));
    for (const r of selectorRows) {
      const id = String(r.agent_id);
      let list = selectors.get(id);
      if (list === undefined) selectors.set(id, (list = []));
      list.push({ type: String(r.type), value: String(r.value) });
    }
    return rows.map((r) => ({
      spiffeId: String(r.spiffe_id),
      attestationType: String(r.attestation_type),
      serialNumber: String(r.serial_number),
      newSerialNumber: String(r.new_serial_number),
      expiresAt: Number(r.expires_at),
      banned: r.banned === 1,
      canReattest: r.can_reattest === 1,
      selectors: selectors.get(String(r.spiffe_id)) ?? [],
    }));
  }

  #mustGet(spiffeId: string): AttestedAgent {
    const agent = this.get(spiffeId);
    if (agent === undefined) throw new ApiError(Code.INTERNAL, `datastore: agent ${JSON.stringify(spiffeId)} vanished`);
    return agent;
  }
}
