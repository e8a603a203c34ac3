/**
 * The one place an ApiError becomes a gRPC status on the wire (server side), and a
 * gRPC error becomes an ApiError again (client side).
 */
import { Metadata, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { ApiError, Code, toApiError } from './errors.ts';
import {
  STATUS_DETAILS_KEY,
  decodePermissionDeniedReason,
  encodePermissionDeniedStatus,
  type PermissionDeniedReason,
} from './status-details.ts';

/** Builds the status object grpc-js sends for a thrown value. */
export function toGrpcStatus(err: unknown): Partial<StatusObject> & { code: Code; details: string } {
  const apiError = toApiError(err);
  const metadata = new Metadata();
  const reason = apiError.details?.['reason'];
  if (typeof reason === 'string') {
    metadata.set(STATUS_DETAILS_KEY, encodePermissionDeniedStatus(apiError.code, apiError.message, reason as PermissionDeniedReason));
  }
  return { code: apiError.code, details: apiError.message, metadata };
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';
}

/** Turns a client-side gRPC error into an ApiError, keeping any PermissionDeniedDetails reason. */
export function fromGrpcError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (!isServiceError(err)) return toApiError(err);
  const raw = err.metadata?.get(STATUS_DETAILS_KEY)[0];
  const reason = Buffer.isBuffer(raw) ? decodePermissionDeniedReason(raw) : undefined;
  return new ApiError(err.code, err.details, reason === undefined ? undefined : { reason });
}
