/**
 * Handler adapters: async functions in, grpc-js callbacks out. Every error leaves through
 * toGrpcStatus, so status codes and SPIRE's PermissionDeniedDetails are written in one place.
 */
import type { handleUnaryCall, sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from '../../common/logger.ts';
import { toApiError, Code } from '../../common/errors.ts';
import { toGrpcStatus } from '../../common/grpc-status.ts';

/** Logs a failed RPC at a level that matches its cause (client mistakes are not server errors). */
export function logRpcError(logger: Logger, method: string, err: unknown): void {
  const apiError = toApiError(err);
  const fields = { method, code: Code[apiError.code], error: apiError.message };
  if (apiError.code === Code.INTERNAL || apiError.code === Code.UNKNOWN) logger.error(fields, 'rpc failed');
  else logger.debug(fields, 'rpc rejected');
}

/** Adapts an async unary handler. */
export function unary<Req, Res>(
  logger: Logger,
  method: string,
  fn: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (response) => callback(null, response),
        (err: unknown) => {
          logRpcError(logger, method, err);
          callback(toGrpcStatus(err));
        },
      );
  };
}

/** Answers Unimplemented for an RPC this server does not offer. */
export function unimplemented<Req, Res>(method: string): handleUnaryCall<Req, Res> {
  return (_call, callback) => callback({ code: Code.UNIMPLEMENTED, details: `${method} is not implemented by this server` });
}
