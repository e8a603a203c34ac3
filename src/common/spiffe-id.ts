/**
 * SPIFFE IDs and trust domains as validated values (spec: SPIFFE-ID.md).
 * Parsers return a result instead of throwing, so callers choose the error code.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** A validated SPIFFE ID: `spiffe://<trustDomain><path>`, path empty or starting with '/'. */
export interface SpiffeId {
  readonly trustDomain: string;
  readonly path: string;
  /** The canonical string form. */
  readonly uri: string;
}

const TD_CHARS = /^[a-z0-9._-]+$/;
const SEGMENT_CHARS = /^[A-Za-z0-9._-]+$/;
const MAX_ID_LENGTH = 2048;

/** Validates a trust domain name (lowercase letters, digits, '.', '-', '_'). */
export function parseTrustDomain(name: string): Parsed<string> {
  if (name === '') return { ok: false, error: 'trust domain is missing' };
  if (name.length > 255) return { ok: false, error: 'trust domain is longer than 255 characters' };
  if (!TD_CHARS.test(name)) {
    return {
      ok: false,
      error: 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
    };
  }
  return { ok: true, value: name };
}

/** Validates a path: empty, or '/'-separated non-empty segments that are not '.' or '..'. */
export function parsePath(path: string): Parsed<string> {
  if (path === '') return { ok: true, value: path };
  if (!path.startsWith('/')) return { ok: false, error: 'path must have a leading slash' };
  const segments = path.slice(1).split('/');
  for (const segment of segments) {
    if (segment === '') {
      return { ok: false, error: path.endsWith('/') ? 'path cannot have a trailing slash' : 'path cannot contain empty segments' };
    }
    if (segment === '.' || segment === '..') return { ok: false, error: 'path cannot contain dot segments' };
    if (!SEGMENT_CHARS.test(segment)) {
      return { ok: false, error: 'path segment characters are limited to letters, numbers, dots, dashes, and underscores' };
    }
  }
  return { ok: true, value: path };
}

/** Parses and validates a SPIFFE ID string. */
export function parseSpiffeId(uri: string): Parsed<SpiffeId> {
  if (uri === '') return { ok: false, error: 'SPIFFE ID is empty' };
  if (uri.length > MAX_ID_LENGTH) return { ok: false, error: 'SPIFFE ID is longer than 2048 bytes' };
  if (!uri.startsWith('spiffe://')) return { ok: false, error: `SPIFFE ID "${uri}" must use the spiffe scheme` };
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (/[?#]/.test(rest)) return { ok: false, error: `SPIFFE ID "${uri}" cannot have a query or fragment` };
  if (td.includes('@') || td.includes(':')) {
    return { ok: false, error: `SPIFFE ID "${uri}" cannot have user info or a port` };
  }
  const tdResult = parseTrustDomain(td);
  if (!tdResult.ok) return { ok: false, error: `SPIFFE ID "${uri}": ${tdResult.error}` };
  const pathResult = parsePath(path);
  if (!pathResult.ok) return { ok: false, error: `SPIFFE ID "${uri}": ${pathResult.error}` };
  return { ok: true, value: { trustDomain: td, path, uri: `spiffe://${td}${path}` } };
}

/** Builds an ID from parts; the caller vouches that both are valid. */
export function spiffeIdFromParts(trustDomain: string, path: string): SpiffeId {
  return { trustDomain, path, uri: `spiffe://${trustDomain}${path}` };
}

/** The `spiffe://<td>` key used for bundle maps and bundle IDs. */
export function trustDomainId(trustDomain: string): string {
  return `spiffe://${trustDomain}`;
}
