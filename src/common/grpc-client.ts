/**
 * Small client-side helpers over grpc-js callbacks: promise-returning unary calls whose
 * failures arrive as ApiError (with any PermissionDeniedDetails reason kept).
 */
import { credentials, type Client, type ServiceError, type requestCallback, type Metadata, type CallOptions } from '@grpc/grpc-js';
import { resolve } from 'node:path';
import { fromGrpcError } from './grpc-status.ts';

/** The request type of a generated unary client method (its last overload is `(request, callback)`). */
export type RequestOf<F> = F extends (request: infer Req, callback: requestCallback<infer _Res>) => unknown ? Req : never;
/** The response type of a generated unary client method. */
export type ResponseOf<F> = F extends (request: infer _Req, callback: requestCallback<infer Res>) => unknown ? Res : never;

/** Per-call options: metadata and a deadline. */
export interface UnaryOptions {
  metadata?: Metadata;
  deadlineMs?: number;
}

/** Calls a unary method by name and resolves with its response; errors arrive as ApiError. */
export function unaryCall<C extends object, K extends keyof C>(
  client: C,
  method: K,
  request: RequestOf<C[K]>,
  opts: UnaryOptions = {},
): Promise<ResponseOf<C[K]>> {
  return new Promise((resolve, reject) => {
    const fn = client[method] as unknown as (
      req: unknown,
      metadata: Metadata | undefined,
      options: CallOptions,
      cb: (err: ServiceError | null, res?: unknown) => void,
    ) => unknown;
    const options: CallOptions = opts.deadlineMs === undefined ? {} : { deadline: Date.now() + opts.deadlineMs };
    const callback = (err: ServiceError | null, response?: unknown): void => {
      if (err !== null) reject(fromGrpcError(err));
      else resolve(response as ResponseOf<C[K]>);
    };
    if (opts.metadata === undefined) (fn as unknown as (r: unknown, o: CallOptions, c: typeof callback) => unknown).call(client, request, options, callback);
    else fn.call(client, request, opts.metadata, options, callback);
  });
}

/**
 * The grpc-js target for a Unix socket path; a relative path resolves against `cwd`.
 *
 * Why resolve: after `unix://` the first segment of a relative path is read as the URI
 * authority, so `unix://.data/server/api.sock` would dial `server/api.sock`.
 */
export function unixTarget(socketPath: string, cwd: string = process.cwd()): string {
  return `unix://${resolve(cwd, socketPath)}`;
}

/** Channel options for local Unix-socket clients (no proxies, no TLS). */
export const insecureLocal = credentials.createInsecure;

/** Waits until a client's channel is connected, or rejects after `timeoutMs`. */
export function waitForReady(client: Client, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()));
  });
}
