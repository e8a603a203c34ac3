/**
 * The SPIRE Server API calls the agent makes after attestation, over one mTLS connection
 * that is replaced whenever the agent's SVID or the trust bundle changes.
 */
import { ApiError, Code } from '../../common/errors.ts';
import { unaryCall } from '../../common/grpc-client.ts';
import type { Bundle__Output } from '../../gen/spire/api/types/Bundle.ts';
import type { Entry__Output } from '../../gen/spire/api/types/Entry.ts';
import type { WorkloadSvidMinter } from '../manager/cache-manager.ts';
import type { ServerClients } from './connection.ts';
import { AGENT_ENTRY_MASK, syncAuthorizedEntries, type CachedRevisions, type Revisioned, type SyncedEntries } from './sync-entries.ts';

/** Per-call deadline, as SPIRE's agent uses. */
const CALL_DEADLINE_MS = 30_000;

/**
 * Deadline of NewJWTSVID. A workload waits on it (a new audience has no cached token), so
 * it is short: a server that has not answered a single signature in 5 s is treated as down.
 */
export const JWT_MINT_DEADLINE_MS = 5_000;

/** The server calls of a running agent. */
export class ServerApi implements WorkloadSvidMinter {
  readonly #clients: () => ServerClients;
  #useSync = true;

  /** `clients` returns the current connection (it changes on rotation). */
  constructor(clients: () => ServerClients) {
    this.#clients = clients;
  }

  /** The authorized entries, with SyncAuthorizedEntries (GetAuthorizedEntries if the server lacks it). */
  async authorizedEntries<T extends Revisioned>(cached: CachedRevisions<T>): Promise<SyncedEntries<T>> {
    if (this.#useSync) {
      try {
        return await syncAuthorizedEntries(this.#clients().entry, cached, CALL_DEADLINE_MS);
      } catch (err) {
        if (!(err instanceof ApiError) || err.code !== Code.UNIMPLEMENTED) throw err;
        this.#useSync = false;
      }
    }
    const res = await unaryCall(this.#clients().entry, 'GetAuthorizedEntries', { output_mask: AGENT_ENTRY_MASK }, { deadlineMs: CALL_DEADLINE_MS });
    return { unchanged: [], fetched: res.entries };
  }

  getBundle(): Promise<Bundle__Output> {
    return unaryCall(this.#clients().bundle, 'GetBundle', {}, { deadlineMs: CALL_DEADLINE_MS });
  }

  /** A federated bundle, or undefined when the server has none for the trust domain. */
  async getFederatedBundle(trustDomain: string): Promise<Bundle__Output | undefined> {
    try {
      return await unaryCall(this.#clients().bundle, 'GetFederatedBundle', { trust_domain: trustDomain }, { deadlineMs: CALL_DEADLINE_MS });
    } catch (err) {
      if (err instanceof ApiError && err.code === Code.NOT_FOUND) return undefined;
      throw err;
    }
  }

  async batchNewX509Svid(params: readonly { entryId: string; csr: Buffer }[]): Promise<{ code: number; message: string; certChain: Buffer[] }[]> {
    const res = await unaryCall(
      this.#clients().svid,
      'BatchNewX509SVID',
      { params: params.map((p) => ({ entry_id: p.entryId, csr: p.csr })) },
      { deadlineMs: CALL_DEADLINE_MS },
    );
    if (res.results.length !== params.length) {
      throw new ApiError(Code.INTERNAL, `server-client: BatchNewX509SVID returned ${res.results.length} results for ${params.length} params`);
    }
    return res.results.map((r) => ({ code: r.status?.code ?? Code.UNKNOWN, message: r.status?.message ?? '', certChain: r.svid?.cert_chain ?? [] }));
  }

  /** Mints a JWT-SVID; DEADLINE_EXCEEDED after {@link JWT_MINT_DEADLINE_MS}, saying the server did not answer. */
  async newJwtSvid(entryId: string, audience: readonly string[]): Promise<{ token: string; issuedAt: number; expiresAt: number }> {
    const res = await unaryCall(this.#clients().svid, 'NewJWTSVID', { entry_id: entryId, audience: [...audience] }, { deadlineMs: JWT_MINT_DEADLINE_MS }).catch(
      (err: unknown) => {
        if (!(err instanceof ApiError) || err.code !== Code.DEADLINE_EXCEEDED) throw err;
        throw new ApiError(Code.DEADLINE_EXCEEDED, `server-client: the server did not answer NewJWTSVID within ${JWT_MINT_DEADLINE_MS / 1000} s (${err.message})`);
      },
    );
    if (res.svid === null) throw new ApiError(Code.INTERNAL, 'server-client: NewJWTSVID returned no SVID');
    return { token: res.svid.token, issuedAt: res.svid.issued_at, expiresAt: res.svid.expires_at };
  }

  /** Renews the agent SVID (non-reattestable agents). */
  async renewAgent(csr: Buffer): Promise<{ certChain: Buffer[]; expiresAt: number }> {
    const res = await unaryCall(this.#clients().agent, 'RenewAgent', { params: { csr } }, { deadlineMs: CALL_DEADLINE_MS });
    if (res.svid === null || res.svid.cert_chain.length === 0) throw new ApiError(Code.INTERNAL, 'server-client: RenewAgent returned no SVID');
    return { certChain: res.svid.cert_chain, expiresAt: res.svid.expires_at };
  }
}
