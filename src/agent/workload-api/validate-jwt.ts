/**
 * JWT-SVID validation for ValidateJWTSVID, following SPIRE's `pkg/common/jwtsvid/validate.go`
 * (messages included) and go-jose's claim checks with their 60 s leeway. Pure apart from the
 * signature check (jose): keys and the current time come in as arguments.
 *
 * Order of checks: format → alg → kid → typ → sub/exp present → sub is a SPIFFE ID → key of
 * sub's trust domain by kid → signature → aud → exp → nbf → iat. Every failure is an
 * InvalidArgument ApiError whose message the client sees.
 */
import type { KeyObject } from 'node:crypto';
import type * as Jose from 'jose';
import { ApiError, Code } from '../../common/errors.ts';
import { parseSpiffeId, type SpiffeId } from '../../common/spiffe-id.ts';

/**
 * The signature algorithms a JWT-SVID may use (JWT-SVID spec §2.1), in SPIRE's order
 * (`jwtsvid.AllowedSignatureAlgorithms`), which its error message lists.
 */
export const ALLOWED_JWT_ALGORITHMS: readonly string[] = Object.freeze([
  'ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
]);

/** go-jose's default leeway for exp, nbf and iat. */
export const JWT_LEEWAY_SECONDS = 60;

/** JWT verification keys of a trust domain by key ID, or undefined if the caller may not use it. */
export type JwtKeyLookup = (trustDomain: string) => ReadonlyMap<string, KeyObject> | undefined;

/** Inputs of {@link validateJwtSvid}. */
export interface ValidateJwtInput {
  readonly token: string;
  readonly audience: string;
  readonly keys: JwtKeyLookup;
  /** The clock's time in milliseconds. */
  readonly nowMs: number;
}

/** A token that passed validation. */
export interface ValidatedJwt {
  readonly spiffeId: SpiffeId;
  /** The verified claims as JSON values. */
  readonly claims: Record<string, unknown>;
}

function invalid(message: string): ApiError {
  return new ApiError(Code.INVALID_ARGUMENT, message);
}

/** The request checks SPIRE makes before attesting the caller. */
export function requireValidateArguments(audience: string, svid: string): void {
  if (audience === '') throw invalid('audience must be specified');
  if (svid === '') throw invalid('svid must be specified');
}

/** Go's `%q` of a []string: `["a" "b"]`. */
function goQuotedList(values: readonly string[]): string {
  return `[${values.map((v) => JSON.stringify(v)).join(' ')}]`;
}

/** The `aud` claim as a list (RFC 7519 allows a single string). */
export function audienceList(aud: unknown): string[] {
  if (typeof aud === 'string') return [aud];
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string');
  return [];
}

/**
 * jose, loaded on the first validation: most agents never validate a JWT, and loading it costs
 * about 1.5 MiB of memory for the agent's lifetime (bench/idle-memory.ts).
 */
let jose: Promise<typeof Jose> | undefined;
const loadJose = (): Promise<typeof Jose> => (jose ??= import('jose'));

function parseError(err: unknown): ApiError {
  return invalid(`unable to parse JWT token: ${err instanceof Error ? err.message : String(err)}`);
}

function decodeHeader(lib: typeof Jose, token: string): Record<string, unknown> {
  // go-jose's text, as SPIRE's agent returns it.
  if (token.split('.').length !== 3) throw invalid('unable to parse JWT token: go-jose/go-jose: compact JWS format must have three parts');
  try {
    return lib.decodeProtectedHeader(token) as Record<string, unknown>;
  } catch (err) {
    throw parseError(err);
  }
}

function checkHeader(header: Record<string, unknown>): { alg: string; kid: string } {
  const alg = header['alg'];
  if (typeof alg !== 'string' || !ALLOWED_JWT_ALGORITHMS.includes(alg)) {
    throw invalid(`unable to parse JWT token: unexpected signature algorithm ${JSON.stringify(alg ?? '')}; expected ${goQuotedList(ALLOWED_JWT_ALGORITHMS)}`);
  }
  const kid = header['kid'];
  if (typeof kid !== 'string' || kid === '') throw invalid('token header missing key id');
  const typ = header['typ'];
  if (typ !== undefined && typ !== 'JWT' && typ !== 'JOSE') throw invalid('token header type not equal to either JWT or JOSE');
  return { alg, kid };
}

async function verifySignature(lib: typeof Jose, token: string, key: KeyObject, alg: string): Promise<Record<string, unknown>> {
  let payload: Uint8Array;
  try {
    ({ payload } = await lib.compactVerify(token, key, { algorithms: [alg] }));
  } catch (err) {
    // go-jose's ErrCryptoFailure text, as SPIRE's agent returns it.
    if (err instanceof lib.errors.JWSSignatureVerificationFailed) throw invalid('go-jose/go-jose: error in cryptographic primitive');
    throw invalid(`unable to verify token signature: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload).toString('utf8'));
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) throw new Error('claims are not a JSON object');
    return claims as Record<string, unknown>;
  } catch (err) {
    throw parseError(err);
  }
}

function checkTimes(claims: Record<string, unknown>, exp: number, nowSeconds: number): void {
  if (nowSeconds - JWT_LEEWAY_SECONDS > exp) throw invalid('token has expired');
  const nbf = claims['nbf'];
  if (typeof nbf === 'number' && nowSeconds + JWT_LEEWAY_SECONDS < nbf) throw invalid('token is not valid yet');
  const iat = claims['iat'];
  if (typeof iat === 'number' && nowSeconds + JWT_LEEWAY_SECONDS < iat) throw invalid('token issued in the future');
}

/** Validates a JWT-SVID for one audience; throws InvalidArgument with a clear message. */
export async function validateJwtSvid(input: ValidateJwtInput): Promise<ValidatedJwt> {
  requireValidateArguments(input.audience, input.token);
  const lib = await loadJose();
  const { alg, kid } = checkHeader(decodeHeader(lib, input.token));

  let unverified: Record<string, unknown>;
  try {
    unverified = lib.decodeJwt(input.token);
  } catch (err) {
    throw parseError(err);
  }
  const sub = unverified['sub'];
  if (typeof sub !== 'string' || sub === '') throw invalid('token missing subject claim');
  if (unverified['exp'] === undefined) throw invalid('token missing exp claim');
  const id = parseSpiffeId(sub);
  if (!id.ok) throw invalid(`token has an invalid subject claim: ${id.error}`);

  const td = id.value.trustDomain;
  const tdKeys = input.keys(td);
  if (tdKeys === undefined) throw invalid(`no keys found for trust domain ${JSON.stringify(td)}`);
  const key = tdKeys.get(kid);
  if (key === undefined) throw invalid(`public key ${JSON.stringify(kid)} not found in trust domain ${JSON.stringify(td)}`);

  const claims = await verifySignature(lib, input.token, key, alg);
  const exp = claims['exp'];
  if (typeof exp !== 'number') throw invalid('unable to parse JWT token: exp claim is not a number');
  const aud = audienceList(claims['aud']);
  if (!aud.includes(input.audience)) {
    throw invalid(`expected audience in ${goQuotedList([input.audience])} (audience=${goQuotedList(aud)})`);
  }
  checkTimes(claims, exp, input.nowMs / 1000);
  return { spiffeId: id.value, claims };
}
