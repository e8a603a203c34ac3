/**
 * MintX509SVID and MintJWTSVID: an administrator (the local admin socket) mints an SVID for
 * any workload ID of the trust domain, without a registration entry. Same checks, order,
 * codes and messages as SPIRE's `svid/v1` service; a TTL of 0 means the server default.
 */
import type { KeyObject } from 'node:crypto';
import { ApiError, Code, toApiError } from '../../common/errors.ts';
import { parsePath, parseSpiffeId, parseTrustDomain } from '../../common/spiffe-id.ts';
import { DerError } from '../../common/der.ts';
import type { SPIFFEID__Output } from '../../gen/spire/api/types/SPIFFEID.ts';
import type { MintX509SVIDResponse } from '../../gen/spire/api/server/svid/v1/MintX509SVIDResponse.ts';
import type { MintJWTSVIDResponse } from '../../gen/spire/api/server/svid/v1/MintJWTSVIDResponse.ts';
import { parseAndVerifyCsr, type VerifiedCsr } from '../ca/csr.ts';
import { decodeName, isEmptyName, type DistinguishedName } from '../ca/x509-name.ts';
import { dnsNameError, wildcardOverlapError, workloadIdError } from '../datastore/validate.ts';
import { idToProto } from './convert.ts';

/** What minting needs from the CA. Zero TTLs mean the server default. */
export interface SvidMinter {
  readonly trustDomain: string;
  /** Signs an X509-SVID for a key; `subject` replaces the default subject when given. */
  signX509SvidForKey(req: {
    spiffeId: string;
    publicKey: KeyObject;
    ttlSeconds: number;
    dnsNames: readonly string[];
    subject?: DistinguishedName;
  }): { certChain: Buffer[]; expiresAt: number };
  signJwtSvid(spiffeId: string, audience: readonly string[], ttlSeconds: number): { token: string; issuedAt: number; expiresAt: number };
}

const invalid = (message: string): ApiError => new ApiError(Code.INVALID_ARGUMENT, message);

/** SPIRE's MakeErr for a signing failure: INTERNAL, the cause after the message. */
function signingFailed(what: string, err: unknown): ApiError {
  return new ApiError(Code.INTERNAL, `failed to sign ${what}: ${toApiError(err).message}`);
}

function verifiedCsr(csr: Buffer): VerifiedCsr {
  try {
    return parseAndVerifyCsr(csr);
  } catch (err) {
    // MintX509SVID words a bad signature differently from BatchNewX509SVID.
    const e = toApiError(err);
    if (e.message.startsWith('invalid CSR signature: ')) {
      throw invalid(`failed to verify CSR signature: ${e.message.slice('invalid CSR signature: '.length)}`);
    }
    throw e;
  }
}

/** The CSR's subject when it names anything SPIRE would keep; undefined for the default. */
function requestedSubject(csr: VerifiedCsr): DistinguishedName | undefined {
  let name: DistinguishedName;
  try {
    name = decodeName(csr.subjectDer);
  } catch (err) {
    if (err instanceof DerError) throw invalid(`malformed CSR: ${err.message}`);
    throw err;
  }
  return isEmptyName(name) ? undefined : name;
}

/**
 * MintX509SVID: the ID is the CSR's only URI SAN (a workload ID of the trust domain), the DNS
 * SANs and subject are the CSR's, the key is the CSR's.
 */
export function mintX509Svid(req: { csr: Buffer; ttl: number }, minter: SvidMinter): MintX509SVIDResponse {
  if (req.csr.length === 0) throw invalid('missing CSR');
  const csr = verifiedCsr(req.csr);
  if (csr.uris.length === 0) throw invalid('CSR URI SAN is required');
  if (csr.uris.length > 1) throw invalid('only one URI SAN is expected');
  const parsed = parseSpiffeId(csr.uris[0] as string);
  if (!parsed.ok) throw invalid(`CSR URI SAN is invalid: ${parsed.error}`);
  const idProblem = workloadIdError(parsed.value.uri, minter.trustDomain);
  if (idProblem !== undefined) throw invalid(`CSR URI SAN is invalid: ${idProblem}`);
  for (const name of csr.dnsNames) {
    const problem = dnsNameError(name);
    if (problem !== undefined) throw invalid(`CSR DNS name is invalid: ${problem}`);
  }
  const overlap = wildcardOverlapError(csr.dnsNames);
  if (overlap !== undefined) throw invalid(`CSR DNS name contains a wildcard that covers another non-wildcard name: ${overlap}`);
  const subject = requestedSubject(csr);
  let svid: { certChain: Buffer[]; expiresAt: number };
  try {
    svid = minter.signX509SvidForKey({
      spiffeId: parsed.value.uri,
      publicKey: csr.publicKey,
      ttlSeconds: req.ttl,
      dnsNames: csr.dnsNames,
      ...(subject !== undefined ? { subject } : {}),
    });
  } catch (err) {
    throw signingFailed('X509-SVID', err);
  }
  return { svid: { id: idToProto(parsed.value.uri), cert_chain: svid.certChain, expires_at: svid.expiresAt } };
}

/** A request's SPIFFE ID as SPIRE's `TrustDomainWorkloadIDFromProto` reads it. */
function workloadIdFromProto(id: SPIFFEID__Output | null, trustDomain: string): string {
  if (id === null) throw invalid('invalid SPIFFE ID: request must specify SPIFFE ID');
  const td = parseTrustDomain(id.trust_domain);
  if (!td.ok) throw invalid(`invalid SPIFFE ID: ${td.error}`);
  const path = parsePath(id.path);
  if (!path.ok) throw invalid(`invalid SPIFFE ID: ${path.error}`);
  const uri = `spiffe://${td.value}${path.value}`;
  const problem = workloadIdError(uri, trustDomain);
  if (problem !== undefined) throw invalid(`invalid SPIFFE ID: ${problem}`);
  return uri;
}

/** MintJWTSVID: a JWT-SVID for any workload ID of the trust domain; at least one audience. */
export function mintJwtSvid(req: { id: SPIFFEID__Output | null; audience: string[]; ttl: number }, minter: SvidMinter): MintJWTSVIDResponse {
  const spiffeId = workloadIdFromProto(req.id, minter.trustDomain);
  if (req.audience.length === 0) throw invalid('at least one audience is required');
  let jwt: { token: string; issuedAt: number; expiresAt: number };
  try {
    jwt = minter.signJwtSvid(spiffeId, req.audience, req.ttl);
  } catch (err) {
    throw signingFailed('JWT-SVID', err);
  }
  return { svid: { token: jwt.token, id: idToProto(spiffeId), expires_at: jwt.expiresAt, issued_at: jwt.issuedAt } };
}
