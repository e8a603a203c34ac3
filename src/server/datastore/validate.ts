/**
 * Validation of registration entries against the server's trust domain, following SPIRE
 * (`pkg/server/api/entry.go` ProtoToRegistrationEntryWithMask, `pkg/server/api/id.go`,
 * `pkg/server/api/selector.go`, `pkg/common/x509util/dns.go`, and the datastore's
 * `validateRegistrationEntry`): same rules, same order, same messages.
 *
 * Pure: returns a result instead of throwing, so callers pick the status code.
 */
import { parseSpiffeId, parseTrustDomain, type Parsed } from '../../common/spiffe-id.ts';
import { normalizeSelectors, sortedUnique } from './selectors.ts';
import type { EntryInput, RegistrationEntry, Selector } from './types.ts';

/** SPIRE's `hintMaximumLength` (bytes). */
export const HINT_MAX_LENGTH = 1024;
/** SPIRE's limit on caller-supplied entry IDs. */
export const ENTRY_ID_MAX_LENGTH = 255;
const ENTRY_ID_CHARS = /^[-._0-9A-Za-z]+$/;
const INT32_MAX = 2 ** 31 - 1;

/** An entry that passed validation, with every field present and normalised (`id` empty when the datastore must generate one). */
export type ValidEntry = Omit<RegistrationEntry, 'revisionNumber' | 'createdAt'>;

/**
 * Where a failure was found, as in SPIRE: `convert` failures are the API's conversion checks
 * (reported as "failed to convert entry: …"), `store` failures are the datastore's checks
 * (reported as "failed to create entry: datastore-validation: …").
 */
export type EntryValidationPhase = 'convert' | 'store';

/** The outcome of {@link validateEntry}. */
export type EntryValidation =
  | { readonly ok: true; readonly value: ValidEntry }
  | { readonly ok: false; readonly phase: EntryValidationPhase; readonly error: string };

/**
 * The status message SPIRE's entry service reports for a validation failure, e.g.
 * `failed to convert entry: selector list is empty` or
 * `failed to create entry: datastore-validation: invalid registration entry: X509SvidTtl is not set`.
 * Both are INVALID_ARGUMENT here.
 */
export function entryValidationMessage(
  failure: { readonly phase: EntryValidationPhase; readonly error: string },
  operation: 'create' | 'update',
): string {
  return failure.phase === 'convert'
    ? `failed to convert entry: ${failure.error}`
    : `failed to ${operation} entry: datastore-validation: ${failure.error}`;
}

/**
 * Validates a trust domain given as a name (`example.org`) or an ID (`spiffe://example.org`)
 * and returns its name, as go-spiffe's `TrustDomainFromString` does.
 */
export function normalizeTrustDomain(nameOrId: string): Parsed<string> {
  if (nameOrId.includes(':/')) {
    const id = parseSpiffeId(nameOrId);
    return id.ok ? { ok: true, value: id.value.trustDomain } : id;
  }
  return parseTrustDomain(nameOrId);
}

/**
 * Validates one DNS name for an X.509-SVID SAN as SPIRE's `x509util.ValidateLabel` does
 * (ASCII only, at most one wildcard and only as the whole first label, LDH labels of 1–63
 * characters without leading or trailing hyphens, at most 253 characters, no trailing dot).
 * Returns the reason it is invalid, or undefined.
 */
export function dnsNameError(name: string): string | undefined {
  if (!/^[\x00-\x7f]*$/.test(name)) return 'name must be ascii';
  const stars = name.split('*').length - 1;
  let domain = name;
  if (stars > 1) return 'too many wildcards';
  if (stars === 1) {
    if (!name.startsWith('*.')) return 'wildcard must be first label';
    domain = name.slice(2);
  }
  if (domain.trim() === '') return 'empty or only whitespace';
  if (domain.endsWith('.')) return 'domain ends with dot';
  if (domain.length > 253) return 'idna error: domain name is longer than 253 characters';
  for (const label of domain.split('.')) {
    if (label === '') return 'idna error: empty label';
    if (label.length > 63) return `idna error: label "${label}" is longer than 63 characters`;
    if (!/^[A-Za-z0-9-]+$/.test(label)) return `idna error: label "${label}" has characters other than letters, digits and '-'`;
    if (label.startsWith('-') || label.endsWith('-')) return `idna error: label "${label}" starts or ends with '-'`;
    if (label.slice(2, 4) === '--' && !/^xn--/i.test(label)) return `idna error: label "${label}" has '--' in the third and fourth positions`;
  }
  return undefined;
}

/** Validates a list of selectors as SPIRE's `SelectorsFromProto` does; returns the reason or undefined. */
export function selectorsError(selectors: readonly Selector[]): string | undefined {
  for (const s of selectors) {
    if (typeof s.type !== 'string' || s.type === '') return 'missing selector type';
    if (s.type.includes(':')) return "selector type contains ':'";
    if (typeof s.value !== 'string' || s.value === '') return 'missing selector value';
  }
  return undefined;
}

function memberIdError(raw: string, trustDomain: string, workload: boolean): string | undefined {
  const parsed = parseSpiffeId(raw);
  if (!parsed.ok) return parsed.error;
  const id = JSON.stringify(parsed.value.uri);
  const td = JSON.stringify(trustDomain);
  if (parsed.value.trustDomain !== trustDomain) return `${id} is not a member of trust domain ${td}`;
  if (parsed.value.path === '') {
    return workload
      ? `${id} is not a workload in trust domain ${td}; path is empty`
      : `${id} is not a member of trust domain ${td}; path is empty`;
  }
  const path = parsed.value.path;
  if (workload && (path === '/spire' || path.startsWith('/spire/'))) {
    return `${id} is not a workload in trust domain ${td}; path is in the reserved namespace`;
  }
  return undefined;
}

/**
 * Why `raw` is not a workload SPIFFE ID of `trustDomain` (SPIRE's `VerifyTrustDomainWorkloadID`:
 * a member with a non-empty path outside the reserved `/spire` namespace), or undefined.
 */
export function workloadIdError(raw: string, trustDomain: string): string | undefined {
  return memberIdError(raw, trustDomain, true);
}

/**
 * SPIRE's `x509util.CheckForWildcardOverlap`: a name whose first label replaced by `*` is also
 * in the list is covered by that wildcard. Returns the reason for the first such name, or undefined.
 */
export function wildcardOverlapError(names: readonly string[]): string | undefined {
  const all = new Set(names);
  for (const name of all) {
    if (name.startsWith('*')) continue;
    const labels = name.split('.');
    labels[0] = '*';
    if (all.has(labels.join('.'))) return `name ${JSON.stringify(name)} overlaps with an existing wildcard name in the list: wildcard overlap`;
  }
  return undefined;
}

function ttlError(name: string, ttl: number): string | undefined {
  if (!Number.isInteger(ttl)) return `invalid registration entry: ${name} must be an integer`;
  // SPIRE's wording for a negative TTL.
  if (ttl < 0) return `invalid registration entry: ${name} is not set`;
  if (ttl > INT32_MAX) return `invalid registration entry: ${name} is larger than ${INT32_MAX}`;
  return undefined;
}

/**
 * Validates and normalises an entry for the server of `trustDomain`.
 *
 * Rules, in SPIRE's order: parent ID is a SPIFFE ID in the trust domain with a non-empty path;
 * SPIFFE ID is in the trust domain, not the trust domain ID and not under the reserved
 * `/spire` path; DNS names are valid; federated trust domains are valid (normalised to names,
 * sorted, unique); at least one selector, each with a type without ':' and a value (sorted,
 * unique); hint at most 1024 bytes; then the datastore's checks: with `storeSvid` all
 * selectors share one type; a supplied entry ID is at most 255 characters of `[-._0-9A-Za-z]`;
 * TTLs are non-negative int32; `expiresAt` is a non-negative integer.
 */
export function validateEntry(input: EntryInput, trustDomain: string): EntryValidation {
  const convert = (error: string): EntryValidation => ({ ok: false, phase: 'convert', error });
  const store = (error: string): EntryValidation => ({ ok: false, phase: 'store', error });

  const parentError = memberIdError(input.parentId, trustDomain, false);
  if (parentError !== undefined) return convert(`invalid parent ID: ${parentError}`);
  const spiffeError = memberIdError(input.spiffeId, trustDomain, true);
  if (spiffeError !== undefined) return convert(`invalid spiffe ID: ${spiffeError}`);

  const dnsNames: string[] = [];
  for (const name of input.dnsNames ?? []) {
    const error = dnsNameError(name);
    if (error !== undefined) return convert(`invalid DNS name: ${error}`);
    if (!dnsNames.includes(name)) dnsNames.push(name);
  }

  const federatesWith: string[] = [];
  for (const td of input.federatesWith ?? []) {
    const parsed = normalizeTrustDomain(td);
    if (!parsed.ok) return convert(`invalid federated trust domain: ${parsed.error}`);
    federatesWith.push(parsed.value);
  }

  if (input.selectors.length === 0) return convert('selector list is empty');
  const selError = selectorsError(input.selectors);
  if (selError !== undefined) return convert(selError);
  const selectors = normalizeSelectors(input.selectors);

  const hint = input.hint ?? '';
  if (Buffer.byteLength(hint, 'utf8') > HINT_MAX_LENGTH) {
    return convert(`hint is too long, max length is ${HINT_MAX_LENGTH} characters`);
  }

  const storeSvid = input.storeSvid ?? false;
  if (storeSvid && selectors.some((s) => s.type !== selectors[0]?.type)) {
    return store('invalid registration entry: selector types must be the same when store SVID is enabled');
  }
  const id = input.id ?? '';
  if (id.length > ENTRY_ID_MAX_LENGTH) return store('invalid registration entry: entry ID too long');
  if (id !== '' && !ENTRY_ID_CHARS.test(id)) return store('invalid registration entry: entry ID contains invalid characters');
  const x509SvidTtl = input.x509SvidTtl ?? 0;
  const x509Error = ttlError('X509SvidTtl', x509SvidTtl);
  if (x509Error !== undefined) return store(x509Error);
  const jwtSvidTtl = input.jwtSvidTtl ?? 0;
  const jwtError = ttlError('JwtSvidTtl', jwtSvidTtl);
  if (jwtError !== undefined) return store(jwtError);
  const expiresAt = input.expiresAt ?? 0;
  if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) {
    return store('invalid registration entry: expiry must be a non-negative integer');
  }

  return {
    ok: true,
    value: {
      id,
      spiffeId: input.spiffeId,
      parentId: input.parentId,
      selectors,
      x509SvidTtl,
      jwtSvidTtl,
      federatesWith: sortedUnique(federatesWith),
      dnsNames,
      hint,
      admin: input.admin ?? false,
      downstream: input.downstream ?? false,
      storeSvid,
      expiresAt,
    },
  };
}
