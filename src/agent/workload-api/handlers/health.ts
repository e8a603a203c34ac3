/**
 * grpc.health.v1.Health on the Workload API socket (SPIRE's `api/health/v1`): Check answers
 * SERVING once the agent can serve the Workload API (the identity source has bundles, i.e.
 * the agent has synced), NOT_SERVING before. Per-service health is not supported; Watch and
 * List are Unimplemented, as in SPIRE.
 */
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { ApiError, Code } from '../../../common/errors.ts';
import { toGrpcStatus } from '../../../common/grpc-status.ts';
import type { HealthHandlers } from '../../../gen/grpc/health/v1/Health.ts';
import type { HealthCheckRequest__Output } from '../../../gen/grpc/health/v1/HealthCheckRequest.ts';
import type { HealthCheckResponse } from '../../../gen/grpc/health/v1/HealthCheckResponse.ts';
import type { IdentitySource } from '../identity-source.ts';

/** SERVING when the source can answer (it throws before the first sync). */
export function servingStatus(source: Pick<IdentitySource, 'bundles'>): 'SERVING' | 'NOT_SERVING' {
  try {
    source.bundles();
    return 'SERVING';
  } catch {
    return 'NOT_SERVING';
  }
}

/** Builds the Health service handlers. */
export function createHealthHandlers(source: Pick<IdentitySource, 'bundles'>): HealthHandlers {
  return {
    Check(call: ServerUnaryCall<HealthCheckRequest__Output, HealthCheckResponse>, callback: sendUnaryData<HealthCheckResponse>) {
      if (call.request.service !== '') {
        callback(toGrpcStatus(new ApiError(Code.INVALID_ARGUMENT, 'per-service health is not supported')));
        return;
      }
      callback(null, { status: servingStatus(source) });
    },
    List(_call, callback) {
      callback(toGrpcStatus(new ApiError(Code.UNIMPLEMENTED, 'method List not implemented')));
    },
    Watch(call: ServerWritableStream<HealthCheckRequest__Output, HealthCheckResponse>) {
      call.emit('error', toGrpcStatus(new ApiError(Code.UNIMPLEMENTED, 'method Watch not implemented')));
    },
  };
}
