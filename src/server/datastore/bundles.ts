/**
 * Federated trust bundles: the trust bundles of foreign trust domains that entries may
 * federate with. The server's own bundle is not stored here.
 */
import type { DatabaseSync } from 'node:sqlite';
import { ApiError, Code } from '../../common/errors.ts';
import { bumpEntriesGeneration } from './entries.ts';
import { prepare, withTransaction } from './sqlite.ts';
import type { BundleDeleteMode, FederatedBundle, FederatedBundleInput, JwtAuthority } from './types.ts';
import { normalizeTrustDomain } from './validate.ts';

/** The stored JSON form of a bundle's content; binary fields are base64. */
interface StoredContent {
  x509: string[];
  jwt: { kid: string; key: string; exp: number }[];
}

function encodeContent(b: FederatedBundleInput): string {
  const content: StoredContent = {
    x509: b.x509Authorities.map((der) => Buffer.from(der).toString('base64')),
    jwt: b.jwtAuthorities.map((k) => ({ kid: k.keyId, key: Buffer.from(k.publicKey).toString('base64'), exp: k.expiresAt })),
  };
  return JSON.stringify(content);
}

function decode(row: Record<string, unknown>): FederatedBundle {
  const content = JSON.parse(String(row.content)) as StoredContent;
  return {
    trustDomain: String(row.trust_domain),
    x509Authorities: content.x509.map((b64) => Buffer.from(b64, 'base64')),
    jwtAuthorities: content.jwt.map((k): JwtAuthority => ({ keyId: k.kid, publicKey: Buffer.from(k.key, 'base64'), expiresAt: k.exp })),
    refreshHint: Number(row.refresh_hint),
    sequenceNumber: Number(row.sequence_number),
  };
}

/** Federated bundle operations over an open database. */
export class BundleStore {
  readonly #db: DatabaseSync;
  readonly #trustDomain: string;

  constructor(db: DatabaseSync, trustDomain: string) {
    this.#db = db;
    this.#trustDomain = trustDomain;
  }

  /**
   * Inserts or replaces the bundle of `b.trustDomain` (a name or `spiffe://` ID). A given
   * sequence number is stored as is (SPIRE keeps the writer's: `spire-server bundle set` of a
   * PEM file sends 0, of a SPIFFE bundle its `spiffe_sequence`). Without one, the sequence
   * number is 1 for a new bundle and goes up by one whenever the content (authorities or
   * refresh hint) changes. Storing identical content and sequence number changes nothing.
   * INVALID_ARGUMENT for a bad trust domain, the server's own trust domain, or bad fields.
   */
  set(b: FederatedBundleInput): FederatedBundle {
    const trustDomain = this.#normalize(b.trustDomain);
    if (trustDomain === this.#trustDomain) {
      throw new ApiError(
        Code.INVALID_ARGUMENT,
        `datastore: the server's own trust domain ${JSON.stringify(trustDomain)} cannot have a federated bundle`,
      );
    }
    if (!Number.isSafeInteger(b.refreshHint) || b.refreshHint < 0) {
      throw new ApiError(Code.INVALID_ARGUMENT, 'datastore: refresh hint must be a non-negative integer');
    }
    const given = b.sequenceNumber;
    if (given !== undefined && (!Number.isSafeInteger(given) || given < 0)) {
      throw new ApiError(Code.INVALID_ARGUMENT, 'datastore: sequence number must be a non-negative integer');
    }
    for (const k of b.jwtAuthorities) {
      if (k.keyId === '') throw new ApiError(Code.INVALID_ARGUMENT, 'datastore: JWT authority key ID is empty');
      if (!Number.isSafeInteger(k.expiresAt) || k.expiresAt < 0) {
        throw new ApiError(Code.INVALID_ARGUMENT, 'datastore: JWT authority expiry must be a non-negative integer');
      }
    }
    const content = encodeContent(b);
    return withTransaction(this.#db, () => {
      const current = prepare(this.#db, 'SELECT content, refresh_hint, sequence_number FROM federated_bundles WHERE trust_domain = ?').get(
        trustDomain,
      );
      if (current === undefined) {
        prepare(
          this.#db,
          'INSERT INTO federated_bundles (trust_domain, content, refresh_hint, sequence_number) VALUES (?, ?, ?, ?)',
        ).run(trustDomain, content, b.refreshHint, given ?? 1);
      } else if (current.content !== content || Number(current.refresh_hint) !== b.refreshHint) {
        prepare(
          this.#db,
          `UPDATE federated_bundles SET content = ?, refresh_hint = ?, sequence_number = ${given === undefined ? 'sequence_number + 1' : '?'} WHERE trust_domain = ?`,
        ).run(...(given === undefined ? [content, b.refreshHint, trustDomain] : [content, b.refreshHint, given, trustDomain]));
      } else if (given !== undefined && Number(current.sequence_number) !== given) {
        prepare(this.#db, 'UPDATE federated_bundles SET sequence_number = ? WHERE trust_domain = ?').run(given, trustDomain);
      }
      return this.#mustGet(trustDomain);
    });
  }

  /** Returns the bundle of a trust domain (name or `spiffe://` ID), or undefined. */
  get(trustDomain: string): FederatedBundle | undefined {
    const row = prepare(this.#db, 'SELECT * FROM federated_bundles WHERE trust_domain = ?').get(this.#normalize(trustDomain));
    return row === undefined ? undefined : decode(row);
  }

  /** Returns every federated bundle, ordered by trust domain. */
  list(): FederatedBundle[] {
    return prepare(this.#db, 'SELECT * FROM federated_bundles ORDER BY trust_domain').all().map(decode);
  }

  /**
   * Deletes a federated bundle, as SPIRE's DeleteBundle. With entries federating with it:
   * `restrict` (default) fails with FAILED_PRECONDITION; `delete` deletes those entries;
   * `dissociate` removes the trust domain from them (bumping their revision numbers so agents
   * syncing by revision see the change). NOT_FOUND "bundle not found".
   */
  delete(trustDomain: string, mode: BundleDeleteMode = 'restrict'): void {
    const td = this.#normalize(trustDomain);
    withTransaction(this.#db, () => {
      if (prepare(this.#db, 'SELECT 1 FROM federated_bundles WHERE trust_domain = ?').get(td) === undefined) {
        throw new ApiError(Code.NOT_FOUND, 'bundle not found');
      }
      const count = Number(
        prepare(this.#db, 'SELECT COUNT(*) AS n FROM entry_federates_with WHERE trust_domain = ?').get(td)?.n ?? 0,
      );
      if (count > 0) {
        switch (mode) {
          case 'restrict':
            throw new ApiError(
              Code.FAILED_PRECONDITION,
              `datastore: cannot delete bundle; federated with ${count} registration entries`,
            );
          case 'delete':
            prepare(
              this.#db,
              'DELETE FROM entries WHERE id IN (SELECT entry_id FROM entry_federates_with WHERE trust_domain = ?)',
            ).run(td);
            break;
          case 'dissociate':
            prepare(
              this.#db,
              'UPDATE entries SET revision_number = revision_number + 1 WHERE id IN (SELECT entry_id FROM entry_federates_with WHERE trust_domain = ?)',
            ).run(td);
            prepare(this.#db, 'DELETE FROM entry_federates_with WHERE trust_domain = ?').run(td);
            break;
          default:
            throw new ApiError(Code.INVALID_ARGUMENT, `datastore: unknown delete mode ${JSON.stringify(mode)}`);
        }
        bumpEntriesGeneration(this.#db);
      }
      prepare(this.#db, 'DELETE FROM federated_bundles WHERE trust_domain = ?').run(td);
    });
  }

  #normalize(trustDomain: string): string {
    const parsed = normalizeTrustDomain(trustDomain);
    if (!parsed.ok) throw new ApiError(Code.INVALID_ARGUMENT, `datastore: invalid trust domain: ${parsed.error}`);
    return parsed.value;
  }

  #mustGet(trustDomain: string): FederatedBundle {
    const bundle = this.get(trustDomain);
    if (bundle === undefined) throw new ApiError(Code.INTERNAL, `datastore: bundle ${JSON.stringify(trustDomain)} vanished`);
    return bundle;
  }
}
