/**
 * Conversions between the datastore's domain records and spire.api.types messages,
 * plus SPIRE's output masks. Pure functions.
 */
import type { SPIFFEID, SPIFFEID__Output } from '../../gen/spire/api/types/SPIFFEID.ts';
import type { Entry, Entry__Output } from '../../gen/spire/api/types/Entry.ts';
import type { EntryMask__Output } from '../../gen/spire/api/types/EntryMask.ts';
import type { Agent } from '../../gen/spire/api/types/Agent.ts';
import type { Bundle } from '../../gen/spire/api/types/Bundle.ts';
import type { BundleMask__Output } from '../../gen/spire/api/types/BundleMask.ts';
import type { AgentMask__Output } from '../../gen/spire/api/types/AgentMask.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { parseSpiffeId } from '../../common/spiffe-id.ts';
import type { AttestedAgent, FederatedBundle, RegistrationEntry, Selector } from '../datastore/types.ts';

/** A SPIFFE ID string as a spire.api.types.SPIFFEID. */
export function idToProto(uri: string): SPIFFEID {
  const parsed = parseSpiffeId(uri);
  if (!parsed.ok) throw new ApiError(Code.INTERNAL, `convert: ${parsed.error}`);
  return { trust_domain: parsed.value.trustDomain, path: parsed.value.path };
}

/** A spire.api.types.SPIFFEID as a validated string; `field` names it in errors. */
export function idFromProto(id: SPIFFEID__Output | null | undefined, field: string): string {
  if (id === null || id === undefined || id.trust_domain === '') {
    throw new ApiError(Code.INVALID_ARGUMENT, `invalid ${field}: request must specify a SPIFFE ID`);
  }
  const parsed = parseSpiffeId(`spiffe://${id.trust_domain}${id.path}`);
  if (!parsed.ok) throw new ApiError(Code.INVALID_ARGUMENT, `invalid ${field}: ${parsed.error}`);
  return parsed.value.uri;
}

/** A domain entry as a spire.api.types.Entry. */
export function entryToProto(e: RegistrationEntry): Entry {
  return {
    id: e.id,
    spiffe_id: idToProto(e.spiffeId),
    parent_id: idToProto(e.parentId),
    selectors: e.selectors.map((s) => ({ type: s.type, value: s.value })),
    x509_svid_ttl: e.x509SvidTtl,
    jwt_svid_ttl: e.jwtSvidTtl,
    federates_with: [...e.federatesWith],
    admin: e.admin,
    downstream: e.downstream,
    expires_at: e.expiresAt,
    dns_names: [...e.dnsNames],
    revision_number: e.revisionNumber,
    store_svid: e.storeSvid,
    hint: e.hint,
    created_at: e.createdAt,
  };
}

/** The fields of a new or updated entry, as a client sent them (IDs not yet validated). */
export interface EntryFields {
  id: string;
  spiffeId: string;
  parentId: string;
  selectors: Selector[];
  x509SvidTtl: number;
  jwtSvidTtl: number;
  federatesWith: string[];
  dnsNames: string[];
  hint: string;
  admin: boolean;
  downstream: boolean;
  storeSvid: boolean;
  expiresAt: number;
}

function rawId(id: SPIFFEID__Output | null): string {
  return id === null ? '' : `spiffe://${id.trust_domain}${id.path}`;
}

/** A client's spire.api.types.Entry as entry fields; validation happens in the datastore. */
export function entryFromProto(p: Entry__Output): EntryFields {
  return {
    id: p.id,
    spiffeId: rawId(p.spiffe_id),
    parentId: rawId(p.parent_id),
    selectors: p.selectors.map((s) => ({ type: s.type, value: s.value })),
    x509SvidTtl: p.x509_svid_ttl,
    jwtSvidTtl: p.jwt_svid_ttl,
    federatesWith: [...p.federates_with],
    dnsNames: [...p.dns_names],
    hint: p.hint,
    admin: p.admin,
    downstream: p.downstream,
    storeSvid: p.store_svid,
    expiresAt: p.expires_at,
  };
}

/** Clears the fields an EntryMask leaves out (SPIRE semantics: a null mask keeps all). */
export function maskEntry(e: Entry, mask: EntryMask__Output | null | undefined): Entry {
  if (mask === null || mask === undefined) return e;
  return {
    id: e.id,
    spiffe_id: mask.spiffe_id ? e.spiffe_id : null,
    parent_id: mask.parent_id ? e.parent_id : null,
    selectors: mask.selectors ? e.selectors : [],
    x509_svid_ttl: mask.x509_svid_ttl ? e.x509_svid_ttl : 0,
    jwt_svid_ttl: mask.jwt_svid_ttl ? e.jwt_svid_ttl : 0,
    federates_with: mask.federates_with ? e.federates_with : [],
    admin: mask.admin ? e.admin : false,
    downstream: mask.downstream ? e.downstream : false,
    expires_at: mask.expires_at ? e.expires_at : 0,
    dns_names: mask.dns_names ? e.dns_names : [],
    revision_number: mask.revision_number ? e.revision_number : 0,
    store_svid: mask.store_svid ? e.store_svid : false,
    hint: mask.hint ? e.hint : '',
    created_at: mask.created_at ? e.created_at : 0,
  };
}

/** A domain agent record as a spire.api.types.Agent. */
export function agentToProto(a: AttestedAgent, mask?: AgentMask__Output | null): Agent {
  const all = mask === null || mask === undefined;
  return {
    id: idToProto(a.spiffeId),
    attestation_type: all || mask.attestation_type ? a.attestationType : '',
    x509svid_serial_number: all || mask.x509svid_serial_number ? a.serialNumber : '',
    x509svid_expires_at: all || mask.x509svid_expires_at ? a.expiresAt : 0,
    selectors: all || mask.selectors ? a.selectors.map((s) => ({ type: s.type, value: s.value })) : [],
    banned: all || mask.banned ? a.banned : false,
    can_reattest: all || mask.can_reattest ? a.canReattest : false,
    agent_version: '',
  };
}

/** A bundle (own or federated) as a spire.api.types.Bundle. */
export function bundleToProto(b: FederatedBundle, mask?: BundleMask__Output | null): Bundle {
  const all = mask === null || mask === undefined;
  return {
    trust_domain: b.trustDomain,
    x509_authorities: all || mask.x509_authorities ? b.x509Authorities.map((asn1) => ({ asn1, tainted: false })) : [],
    jwt_authorities:
      all || mask.jwt_authorities
        ? b.jwtAuthorities.map((k) => ({ public_key: k.publicKey, key_id: k.keyId, expires_at: k.expiresAt, tainted: false }))
        : [],
    refresh_hint: all || mask.refresh_hint ? b.refreshHint : 0,
    sequence_number: all || mask.sequence_number ? b.sequenceNumber : 0,
  };
}

/** A client's spire.api.types.Bundle as a federated bundle record (trust domain not yet validated). */
export function bundleFromProto(p: {
  trust_domain: string;
  x509_authorities: { asn1: Buffer }[];
  jwt_authorities: { public_key: Buffer; key_id: string; expires_at: number }[];
  refresh_hint: number;
  sequence_number: number;
}): FederatedBundle {
  return {
    trustDomain: p.trust_domain.replace(/^spiffe:\/\//, ''),
    x509Authorities: p.x509_authorities.map((c) => c.asn1),
    jwtAuthorities: p.jwt_authorities.map((k) => ({ keyId: k.key_id, publicKey: k.public_key, expiresAt: k.expires_at })),
    refreshHint: p.refresh_hint,
    sequenceNumber: p.sequence_number,
  };
}
