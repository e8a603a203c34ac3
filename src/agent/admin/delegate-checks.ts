/**
 * The Delegated Identity API's decisions, pure (SPIRE's `delegatedidentity/v1/service.go`,
 * with its status codes and messages, which delegates such as Cilium match on):
 * - who may call: the caller's own entries must include an authorized delegate's SPIFFE ID;
 * - whom the call is about: selectors or a non-zero PID, never both, never neither;
 * - FetchJWTSVIDs needs an audience.
 */
import { ApiError, Code } from '../../common/errors.ts';
import type { Selector } from '../../common/selector.ts';

/** `PermissionDenied`: the caller matches no entry at all. */
export const NO_IDENTITY_ISSUED = 'no identity issued';
/** `PermissionDenied`: the caller has entries, none of them an authorized delegate. */
export const NOT_A_DELEGATE = 'caller not configured as an authorized delegate';
/** `InvalidArgument`: selectors and PID together, or neither. */
export const SELECTORS_XOR_PID = 'must provide either selectors or non-zero PID, but not both';
/** `InvalidArgument`: a selector without type or value, or with ':' in its type. */
export const BAD_SELECTORS = 'could not parse provided selectors';
/** `InvalidArgument`: FetchJWTSVIDs without an audience. */
export const AUDIENCE_REQUIRED = 'audience must be specified';

/** The outcome of authorizing a caller. */
export type DelegateDecision =
  | { readonly ok: true; readonly delegateId: string }
  | { readonly ok: false; readonly error: ApiError; readonly entries: number; readonly defaultId: string | undefined };

/**
 * Whether a caller whose entries have these SPIFFE IDs (sorted by entry ID) may use the API:
 * the first entry whose ID is authorized names the delegate.
 */
export function authorizeDelegate(callerEntryIds: readonly string[], authorized: ReadonlySet<string>): DelegateDecision {
  if (callerEntryIds.length === 0) {
    return { ok: false, error: new ApiError(Code.PERMISSION_DENIED, NO_IDENTITY_ISSUED), entries: 0, defaultId: undefined };
  }
  const delegateId = callerEntryIds.find((id) => authorized.has(id));
  if (delegateId !== undefined) return { ok: true, delegateId };
  return { ok: false, error: new ApiError(Code.PERMISSION_DENIED, NOT_A_DELEGATE), entries: callerEntryIds.length, defaultId: callerEntryIds[0] };
}

/** Whom a call is about: a workload named by selectors (trusted as given), or a PID to attest. */
export type DelegateTarget = { readonly kind: 'selectors'; readonly selectors: readonly Selector[] } | { readonly kind: 'pid'; readonly pid: number };

/** Reads the target of a request; throws ApiError(InvalidArgument) with SPIRE's messages. */
export function delegateTarget(selectors: readonly { readonly type: string; readonly value: string }[], pid: number): DelegateTarget {
  if ((selectors.length !== 0 && pid !== 0) || (selectors.length === 0 && pid === 0)) {
    throw new ApiError(Code.INVALID_ARGUMENT, SELECTORS_XOR_PID);
  }
  if (pid !== 0) return { kind: 'pid', pid };
  for (const s of selectors) {
    if (s.type === '' || s.type.includes(':') || s.value === '') throw new ApiError(Code.INVALID_ARGUMENT, BAD_SELECTORS);
  }
  return { kind: 'selectors', selectors: selectors.map((s) => ({ type: s.type, value: s.value })) };
}

/** Checks FetchJWTSVIDs' audience (before anything else, as SPIRE). */
export function requireAudience(audience: readonly string[]): void {
  if (audience.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, AUDIENCE_REQUIRED);
}
