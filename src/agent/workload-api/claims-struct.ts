/**
 * ValidateJWTSVID's `claims`: JSON claims → google.protobuf.Struct, the way SPIRE shapes them
 * (`aud` always a list, numbers as doubles, foreign-trust-domain tokens reduced to `sub`,
 * `exp`, `aud` and the operator's allowed claims). Pure.
 */
import type { Struct } from '../../gen/google/protobuf/Struct.ts';
import type { Value } from '../../gen/google/protobuf/Value.ts';
import { audienceList } from './validate-jwt.ts';

/** Claims a foreign-trust-domain token always keeps. */
const ALWAYS_ALLOWED = new Set(['sub', 'exp', 'aud']);

/** One JSON value as a google.protobuf.Value. */
export function toValue(value: unknown): Value {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE', kind: 'nullValue' };
  if (typeof value === 'number') return { numberValue: value, kind: 'numberValue' };
  if (typeof value === 'string') return { stringValue: value, kind: 'stringValue' };
  if (typeof value === 'boolean') return { boolValue: value, kind: 'boolValue' };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) }, kind: 'listValue' };
  if (typeof value === 'object') return { structValue: toStruct(value as Record<string, unknown>), kind: 'structValue' };
  return { stringValue: String(value), kind: 'stringValue' };
}

/** A JSON object as a google.protobuf.Struct. */
export function toStruct(object: Record<string, unknown>): Struct {
  const fields: Record<string, Value> = {};
  for (const [key, value] of Object.entries(object)) fields[key] = toValue(value);
  return { fields };
}

/** Options of {@link responseClaims}. */
export interface ClaimsPolicy {
  /** The agent's own trust domain name. */
  readonly ownTrustDomain: string;
  /** Extra claims kept for tokens of other trust domains (SPIRE's allowed_foreign_jwt_claims). */
  readonly allowedForeignClaims: ReadonlySet<string>;
}

/** The claims to return for a validated token of `subjectTrustDomain`, with `aud` as a list. */
export function responseClaims(
  claims: Readonly<Record<string, unknown>>,
  subjectTrustDomain: string,
  policy: ClaimsPolicy,
): Record<string, unknown> {
  const foreign = subjectTrustDomain !== policy.ownTrustDomain;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(claims)) {
    if (foreign && !ALWAYS_ALLOWED.has(key) && !policy.allowedForeignClaims.has(key)) continue;
    out[key] = value;
  }
  if (typeof out['aud'] === 'string') out['aud'] = audienceList(out['aud']);
  return out;
}
