/**
 * Errors of Workload API calls. A status the server (or grpc-js) returned is remembered as
 * such, so the CLI can print it the way Go clients do (`rpc error: code = … desc = …`) and
 * print the client's own errors as plain sentences.
 */
import { stat } from 'node:fs/promises';
import { ApiError, Code } from '../../common/errors.ts';
import { fromGrpcError } from '../../common/grpc-status.ts';
import { goCodeName } from '../../common/code-names.ts';
import type { WorkloadEndpoint } from './endpoint.ts';


// Errors that carry a status from the wire. A WeakSet keeps the mark off the error object.
const fromWire = new WeakSet<ApiError>();

export { goCodeName };

/** True when `err` is a status returned by a Workload API call (not a client-side error). */
export function isRpcStatus(err: unknown): err is ApiError {
  return err instanceof ApiError && fromWire.has(err);
}

/** Formats an error as spire-agent prints it: `rpc error: code = PermissionDenied desc = no identity issued` for statuses, the message otherwise. */
export function formatRpcError(err: unknown): string {
  if (isRpcStatus(err)) return `rpc error: code = ${goCodeName(err.code)} desc = ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Why a Unix socket could not be reached, as a sentence naming it, or undefined when the
 * socket looks fine (then grpc-js's own message is the best there is).
 */
async function socketProblem(path: string, grpcDetails: string): Promise<string | undefined> {
  try {
    const info = await stat(path);
    if (!info.isSocket()) return `${path} is not a socket`;
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'ENOENT') return `socket ${path} does not exist (is the agent running, and is this the right path?)`;
    if (errno === 'EACCES') return `permission denied on the directory of socket ${path}`;
    return `cannot stat socket ${path}: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (grpcDetails.includes('EACCES')) return `permission denied on socket ${path}`;
  if (grpcDetails.includes('ECONNREFUSED')) return `nothing is listening on socket ${path} (a stale socket file?)`;
  return undefined;
}

/**
 * Turns the error of a gRPC call (a grpc-js ServiceError) into an ApiError marked as a wire
 * status. When the channel could not connect to a Unix socket, it becomes a client-side error
 * naming the socket and the reason (missing, not a socket, permission denied, refused)
 * instead of grpc-js's transport text.
 */
export async function callError(err: unknown, endpoint: WorkloadEndpoint): Promise<ApiError> {
  const apiError = fromGrpcError(err);
  const noConnection = apiError.code === Code.UNAVAILABLE && apiError.message.startsWith('No connection established');
  if (noConnection && endpoint.kind === 'unix') {
    const problem = await socketProblem(endpoint.path, apiError.message);
    if (problem !== undefined) return new ApiError(Code.UNAVAILABLE, `cannot connect to the Workload API: ${problem}`);
  }
  fromWire.add(apiError);
  return apiError;
}
