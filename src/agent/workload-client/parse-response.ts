/**
 * Pure conversions from Workload API messages to the client's result types. A malformed
 * response becomes an ApiError(INTERNAL) whose message says what was wrong.
 */
import { splitConcatenated } from '../../common/der.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { parseSpiffeId, parseTrustDomain } from '../../common/spiffe-id.ts';
import type { Struct__Output } from '../../gen/google/protobuf/Struct.ts';
import type { Value__Output } from '../../gen/google/protobuf/Value.ts';
import type { JWTBundlesResponse__Output } from '../../gen/JWTBundlesResponse.ts';
import type { JWTSVIDResponse__Output } from '../../gen/JWTSVIDResponse.ts';
import type { ValidateJWTSVIDResponse__Output } from '../../gen/ValidateJWTSVIDResponse.ts';
import type { X509BundlesResponse__Output } from '../../gen/X509BundlesResponse.ts';
import type { X509SVID__Output } from '../../gen/X509SVID.ts';
import type { X509SVIDResponse__Output } from '../../gen/X509SVIDResponse.ts';
import type { JsonValue, JwtBundles, JwtSvid, ValidatedJwtSvid, X509Bundles, X509Context, X509Svid } from './types.ts';

function malformed(message: string): ApiError {
  return new ApiError(Code.INTERNAL, `workloadclient: ${message}`);
}

/** Splits concatenated DER certificates; `what` names them in errors. Empty input is an error. */
function certificates(der: Buffer, what: string): Buffer[] {
  let certs: Buffer[];
  try {
    certs = splitConcatenated(der);
  } catch (err) {
    throw malformed(`${what} is not valid DER: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (certs.length === 0) throw malformed(`${what} contains no certificates`);
  return certs;
}

/** Accepts the spec's `spiffe://<td>` map keys and, like go-spiffe, bare trust domain names. */
function trustDomainKey(key: string): string {
  const name = key.startsWith('spiffe://') ? key.slice('spiffe://'.length) : key;
  const parsed = parseTrustDomain(name);
  if (!parsed.ok) throw malformed(`bundle key "${key}" is not a trust domain: ${parsed.error}`);
  return parsed.value;
}

function certificateBundles(map: { [key: string]: Buffer }, what: string): Map<string, Buffer[]> {
  const out = new Map<string, Buffer[]>();
  for (const key of Object.keys(map).sort()) {
    out.set(trustDomainKey(key), certificates(map[key] as Buffer, `${what} for "${key}"`));
  }
  return out;
}

function x509Svid(svid: X509SVID__Output, index: number): X509Svid {
  const what = `SVID #${index} (${JSON.stringify(svid.spiffe_id)})`;
  const id = parseSpiffeId(svid.spiffe_id);
  if (!id.ok) throw malformed(`${what}: ${id.error}`);
  if (svid.x509_svid_key.length === 0) throw malformed(`${what} has no private key`);
  return {
    spiffeId: id.value.uri,
    hint: svid.hint,
    certificates: certificates(svid.x509_svid, `${what} certificate chain`),
    privateKey: svid.x509_svid_key,
    bundle: certificates(svid.bundle, `${what} trust bundle`),
  };
}

/** Converts an `X509SVIDResponse`; a response without SVIDs is malformed. */
export function parseX509SvidResponse(res: X509SVIDResponse__Output): X509Context {
  if (res.svids.length === 0) throw malformed('X509-SVID response contains no SVIDs');
  return {
    svids: res.svids.map(x509Svid),
    federatedBundles: certificateBundles(res.federated_bundles, 'federated bundle'),
  };
}

/** Converts an `X509BundlesResponse`. */
export function parseX509BundlesResponse(res: X509BundlesResponse__Output): X509Bundles {
  return certificateBundles(res.bundles, 'X.509 bundle');
}

/** Converts a `JWTBundlesResponse`; every value must be a JSON object (a JWKS). */
export function parseJwtBundlesResponse(res: JWTBundlesResponse__Output): JwtBundles {
  const out = new Map<string, Buffer>();
  for (const key of Object.keys(res.bundles).sort()) {
    const raw = res.bundles[key] as Buffer;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      throw malformed(`JWT bundle for "${key}" is not JSON`);
    }
    if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as { keys?: unknown }).keys)) {
      throw malformed(`JWT bundle for "${key}" is not a JWKS ({"keys":[…]})`);
    }
    out.set(trustDomainKey(key), raw);
  }
  return out;
}

/** Converts a `JWTSVIDResponse`; a response without tokens is malformed. */
export function parseJwtSvidResponse(res: JWTSVIDResponse__Output): JwtSvid[] {
  if (res.svids.length === 0) throw malformed('JWT-SVID response contains no SVIDs');
  return res.svids.map((s) => ({ spiffeId: s.spiffe_id, token: s.svid, hint: s.hint }));
}

/** Converts a `google.protobuf.Value` to plain JSON. */
export function valueToJson(value: Value__Output): JsonValue {
  switch (value.kind) {
    case 'numberValue':
      return value.numberValue ?? 0;
    case 'stringValue':
      return value.stringValue ?? '';
    case 'boolValue':
      return value.boolValue ?? false;
    case 'structValue':
      return value.structValue === null || value.structValue === undefined ? {} : structToJson(value.structValue);
    case 'listValue':
      return (value.listValue?.values ?? []).map(valueToJson);
    default:
      return null;
  }
}

/** Converts a `google.protobuf.Struct` to a plain JSON object. */
export function structToJson(struct: Struct__Output): { [key: string]: JsonValue } {
  const out: { [key: string]: JsonValue } = {};
  for (const [key, value] of Object.entries(struct.fields)) out[key] = valueToJson(value);
  return out;
}

/** Converts a `ValidateJWTSVIDResponse`. */
export function parseValidateResponse(res: ValidateJWTSVIDResponse__Output): ValidatedJwtSvid {
  return { spiffeId: res.spiffe_id, claims: res.claims === null ? {} : structToJson(res.claims) };
}
