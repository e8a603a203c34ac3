/**
 * Domain types of the server's datastore: plain readonly objects, independent of protobuf.
 *
 * Times are Unix seconds. Lists the datastore returns are normalised: selectors sorted by
 * (type, value) and de-duplicated; `federatesWith` sorted, de-duplicated trust domain names.
 */

export type { Selector } from '../../common/selector.ts';
import type { Selector } from '../../common/selector.ts';

/** A registration entry as stored (SPIRE's `types.Entry`). */
export interface RegistrationEntry {
  /** Server-generated UUID unless the caller supplied a valid one. */
  readonly id: string;
  readonly spiffeId: string;
  readonly parentId: string;
  /** Sorted by (type, value), unique, never empty. */
  readonly selectors: readonly Selector[];
  /** Seconds; 0 = server default. */
  readonly x509SvidTtl: number;
  /** Seconds; 0 = server default. */
  readonly jwtSvidTtl: number;
  /** Trust domain names (no scheme), sorted, unique. */
  readonly federatesWith: readonly string[];
  /** In the caller's order (the first is the certificate's CN in SPIRE), unique. */
  readonly dnsNames: readonly string[];
  readonly hint: string;
  readonly admin: boolean;
  readonly downstream: boolean;
  readonly storeSvid: boolean;
  /** Unix seconds; 0 = never. */
  readonly expiresAt: number;
  /** 0 on create, +1 on every update. */
  readonly revisionNumber: number;
  /** Unix seconds. */
  readonly createdAt: number;
}

/**
 * What a caller supplies to create an entry. Omitted optional fields take their zero value.
 * `id` empty or omitted means "generate a UUID".
 */
export interface EntryInput {
  readonly id?: string;
  readonly spiffeId: string;
  readonly parentId: string;
  readonly selectors: readonly Selector[];
  readonly x509SvidTtl?: number;
  readonly jwtSvidTtl?: number;
  /** Trust domain names; `spiffe://td` is accepted and normalised to `td`. */
  readonly federatesWith?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly hint?: string;
  readonly admin?: boolean;
  readonly downstream?: boolean;
  readonly storeSvid?: boolean;
  readonly expiresAt?: number;
}

/** The fields an update may change; absent fields keep their stored value. */
export type EntryPatch = Partial<Omit<EntryInput, 'id'>>;

/** How a selector (or trust domain) filter compares with an entry's set (SPIRE's `MatchBehavior`). */
export type MatchBehavior = 'exact' | 'subset' | 'superset' | 'any';

/** Filters for listing entries; all given filters must hold. */
export interface EntryFilter {
  readonly bySpiffeId?: string;
  readonly byParentId?: string;
  /**
   * `exact`: the entry's selector set equals the given set; `subset`: the entry's selectors
   * are a subset of the given ones; `superset`: the entry has all given selectors (and maybe
   * more); `any`: the entry has at least one of them.
   */
  readonly bySelectors?: { readonly selectors: readonly Selector[]; readonly match: MatchBehavior };
  readonly byHint?: string;
  /** Same semantics as `bySelectors`, over `federatesWith`. Names or `spiffe://` IDs. */
  readonly byFederatesWith?: { readonly trustDomains: readonly string[]; readonly match: MatchBehavior };
  readonly byDownstream?: boolean;
}

/** A page of entries, ordered by entry ID. */
export interface EntryPage {
  readonly entries: RegistrationEntry[];
  /** Pass back to get the next page; empty when there is none. */
  readonly nextPageToken: string;
}

/** The gRPC-style status of one item of a batch. */
export interface ItemStatus {
  /** A gRPC status code (`Code.OK` = 0). */
  readonly code: number;
  readonly message: string;
}

/**
 * One result of a batch entry write, index-aligned with the inputs (SPIRE's
 * `BatchCreateEntryResponse.Result` / `BatchUpdateEntryResponse.Result`).
 */
export interface BatchEntryResult {
  readonly status: ItemStatus;
  /** The written entry; for a create that hit ALREADY_EXISTS, the existing similar entry (as SPIRE returns it). */
  readonly entry?: RegistrationEntry;
}

/** An attested agent (SPIRE's `AttestedNode` plus its node selectors). */
export interface AttestedAgent {
  readonly spiffeId: string;
  readonly attestationType: string;
  /** Serial of the current agent SVID; empty once banned. */
  readonly serialNumber: string;
  /** Serial of an SVID issued by renewal and not yet used; empty when none. */
  readonly newSerialNumber: string;
  /** Unix seconds: expiry of the agent SVID on record. */
  readonly expiresAt: number;
  readonly banned: boolean;
  readonly canReattest: boolean;
  /** Node selectors, sorted and unique. */
  readonly selectors: readonly Selector[];
}

/** Filters for listing agents; all given filters must hold. */
export interface AgentFilter {
  readonly byBanned?: boolean;
  readonly byAttestationType?: string;
  readonly byCanReattest?: boolean;
}

/** A join token; `expiresAt` in Unix seconds. */
export interface JoinToken {
  readonly token: string;
  readonly expiresAt: number;
}

/** A JWT signing key of a bundle; `publicKey` is PKIX (SubjectPublicKeyInfo) DER. */
export interface JwtAuthority {
  readonly keyId: string;
  readonly publicKey: Buffer;
  /** Unix seconds; 0 = no expiry. */
  readonly expiresAt: number;
}

/** The trust bundle of a federated (foreign) trust domain. */
export interface FederatedBundle {
  /** Trust domain name, no scheme. */
  readonly trustDomain: string;
  /** DER certificates. */
  readonly x509Authorities: readonly Buffer[];
  readonly jwtAuthorities: readonly JwtAuthority[];
  /** Seconds; 0 = unset. */
  readonly refreshHint: number;
  /**
   * The bundle's sequence number as its writer gave it (SPIRE: the SPIFFE bundle's
   * `spiffe_sequence`, 0 for a bundle set from PEM); when the writer gives none, 1 on first
   * store and +1 whenever the content changes.
   */
  readonly sequenceNumber: number;
}

/**
 * What a caller supplies to store a federated bundle. With `sequenceNumber` it is stored as
 * given, as SPIRE does; without one the datastore numbers content changes itself.
 */
export type FederatedBundleInput = Omit<FederatedBundle, 'sequenceNumber'> & { readonly sequenceNumber?: number };

/** What to do with entries that federate with a bundle being deleted (SPIRE's `DeleteMode`). */
export type BundleDeleteMode = 'restrict' | 'delete' | 'dissociate';
