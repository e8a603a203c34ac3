import { status } from '@grpc/grpc-js';

/** gRPC status codes, re-exported so modules need not import grpc-js for errors alone. */
export const Code = status;
export type Code = status;

/**
 * The one error type of the project: a gRPC status code plus a stable message.
 *
 * Modules throw `ApiError`; the RPC boundary maps it to the wire status unchanged,
 * so messages here are what clients see. Prefix internal messages with the module
 * (`"datastore: …"`) unless the message is a spec-mandated text such as
 * `"no identity issued"`.
 */
export class ApiError extends Error {
  readonly code: Code;
  /** Optional structured details (for example SPIRE's PermissionDeniedDetails reason). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: Code, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.details = details;
  }
}

/** Narrows an unknown thrown value to ApiError, wrapping anything else as Internal. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ApiError(Code.INTERNAL, message);
}
