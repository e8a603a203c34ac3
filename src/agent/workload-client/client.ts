/**
 * A small SPIFFE Workload API client for the CLI, the health check and tests. Every call
 * carries the `workload.spiffe.io: true` security header; one-shot reads of the streaming
 * RPCs open the stream, take the first message and cancel (as go-spiffe's Fetch* do).
 * Failures arrive as ApiError with the server's code and message.
 */
import { credentials, Metadata, type CallOptions as GrpcCallOptions, type ClientReadableStream, type ClientUnaryCall, type requestCallback } from '@grpc/grpc-js';
import { ApiError, Code } from '../../common/errors.ts';
import { WorkloadApiClient } from '../../common/proto.ts';
import type { JWTSVIDRequest } from '../../gen/JWTSVIDRequest.ts';
import type { JWTSVIDResponse__Output } from '../../gen/JWTSVIDResponse.ts';
import type { ValidateJWTSVIDRequest } from '../../gen/ValidateJWTSVIDRequest.ts';
import type { ValidateJWTSVIDResponse__Output } from '../../gen/ValidateJWTSVIDResponse.ts';
import type { X509SVIDResponse__Output } from '../../gen/X509SVIDResponse.ts';
import { defaultEndpointAddress, parseWorkloadEndpoint, SOCKET_ENV, type WorkloadEndpoint } from './endpoint.ts';
import {
  parseJwtBundlesResponse,
  parseJwtSvidResponse,
  parseValidateResponse,
  parseX509BundlesResponse,
  parseX509SvidResponse,
} from './parse-response.ts';
import { callError } from './rpc-error.ts';
import type { JwtBundles, JwtSvid, ValidatedJwtSvid, X509Bundles, X509Context } from './types.ts';

/** Options of {@link createWorkloadClient}. */
export interface WorkloadClientOptions {
  /** A `unix:`/`tcp:` URI, or an endpoint already parsed. Default: `$SPIFFE_ENDPOINT_SOCKET`. */
  address?: string | WorkloadEndpoint;
  /** Where `SPIFFE_ENDPOINT_SOCKET` is read from. Default: `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * Deadline of each unary call and of the first message of each one-shot stream read, in
   * milliseconds. Watches have none. Default: no deadline.
   */
  timeoutMs?: number;
  /**
   * Largest response accepted, in bytes. Default {@link WORKLOAD_CLIENT_MAX_RECEIVE_BYTES}, far
   * above gRPC's 4 MiB default: a workload entitled to thousands of SVIDs gets them all in one
   * message (5,000 are about 6 MB), and the agent sends it whatever its size, as SPIRE does.
   */
  maxReceiveMessageBytes?: number;
}

/** The default receive limit of this client (the CLI's): 64 MiB, about 50,000 SVIDs. */
export const WORKLOAD_CLIENT_MAX_RECEIVE_BYTES = 64 * 1024 * 1024;

/** Per-call options. */
export interface WorkloadCallOptions {
  /** Cancels the call; the promise then rejects with ApiError(CANCELLED). */
  signal?: AbortSignal;
}

/** Options of {@link WorkloadClient.watchX509}. */
export interface WatchOptions {
  /** Called with each error after which the watch retries (the stream failed or a response was malformed). */
  onError?: (err: ApiError) => void;
  /** Delay before retry number `attempt` (0-based, reset by every update). Default: go-spiffe's linear 1 s, 2 s, … 30 s. */
  retryDelayMs?: (attempt: number) => number;
}

/** The Workload API calls. */
export interface WorkloadClient {
  /** The endpoint this client dials. */
  readonly endpoint: WorkloadEndpoint;
  /** Reads the first `FetchX509SVID` response: the SVIDs (never empty) and the federated bundles. */
  fetchX509Context(options?: WorkloadCallOptions): Promise<X509Context>;
  /**
   * Streams `FetchX509SVID` responses to `onUpdate` until `signal` aborts (then resolves).
   * Like go-spiffe's WatchX509Context it reconnects after errors, with backoff, and gives up
   * (rejects) only on InvalidArgument or when `onUpdate` throws.
   */
  watchX509(onUpdate: (context: X509Context) => void, signal: AbortSignal, options?: WatchOptions): Promise<void>;
  /** Reads the first `FetchX509Bundles` response. */
  fetchX509Bundles(options?: WorkloadCallOptions): Promise<X509Bundles>;
  /** Calls `FetchJWTSVID` for the audience, optionally for one SPIFFE ID. */
  fetchJwtSvids(audience: readonly string[], spiffeId?: string, options?: WorkloadCallOptions): Promise<JwtSvid[]>;
  /** Reads the first `FetchJWTBundles` response. */
  fetchJwtBundles(options?: WorkloadCallOptions): Promise<JwtBundles>;
  /** Calls `ValidateJWTSVID`; an invalid token rejects with InvalidArgument and the reason. */
  validateJwtSvid(audience: string, token: string, options?: WorkloadCallOptions): Promise<ValidatedJwtSvid>;
  /** Closes the channel. */
  close(): void;
}

/** The header every Workload API call must carry (SPIFFE Workload Endpoint §6). */
export const SECURITY_HEADER = 'workload.spiffe.io';

/** go-spiffe's default watch backoff: 1 s, 2 s, … up to 30 s. */
export function linearBackoffMs(attempt: number): number {
  return Math.min((attempt + 1) * 1000, 30_000);
}

type UnaryMethod<Req, Res> = (request: Req, metadata: Metadata, options: GrpcCallOptions, callback: requestCallback<Res>) => ClientUnaryCall;
type StreamMethod<Res> = (metadata: Metadata, options: GrpcCallOptions) => ClientReadableStream<Res>;

function resolveEndpoint(options: WorkloadClientOptions): WorkloadEndpoint {
  if (typeof options.address === 'object') return options.address;
  const address = options.address ?? defaultEndpointAddress(options.env ?? process.env);
  if (address === undefined) {
    throw new ApiError(Code.INVALID_ARGUMENT, `workload endpoint socket address is not configured (set ${SOCKET_ENV})`);
  }
  const parsed = parseWorkloadEndpoint(address);
  if (!parsed.ok) throw new ApiError(Code.INVALID_ARGUMENT, parsed.error);
  return parsed.value;
}

function cancelled(): ApiError {
  return new ApiError(Code.CANCELLED, 'workloadclient: call cancelled');
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Connects (lazily: the first call dials) to the Workload API. Throws ApiError(INVALID_ARGUMENT) for a bad address. */
export function createWorkloadClient(options: WorkloadClientOptions = {}): WorkloadClient {
  const endpoint = resolveEndpoint(options);
  const client = new WorkloadApiClient(endpoint.target, credentials.createInsecure(), {
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? WORKLOAD_CLIENT_MAX_RECEIVE_BYTES,
  });

  const header = (): Metadata => {
    const metadata = new Metadata();
    metadata.set(SECURITY_HEADER, 'true');
    return metadata;
  };
  const deadline = (): GrpcCallOptions => (options.timeoutMs === undefined ? {} : { deadline: Date.now() + options.timeoutMs });

  function unary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, signal: AbortSignal | undefined): Promise<Res> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted === true) return reject(cancelled());
      const onAbort = (): void => call.cancel();
      const call = method(request, header(), deadline(), (err, response) => {
        signal?.removeEventListener('abort', onAbort);
        if (err !== null) callError(err, endpoint).then(reject, reject);
        else resolve(response as Res);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Opens a stream, resolves with its first message and cancels it. */
  function firstMessage<Res>(open: StreamMethod<Res>, signal: AbortSignal | undefined): Promise<Res> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted === true) return reject(cancelled());
      const call = open(header(), deadline());
      let settled = false;
      const onAbort = (): void => call.cancel();
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      call.on('data', (message: Res) =>
        settle(() => {
          // One-shot read: the server is expected to clean up on cancel (MISSION §4).
          call.cancel();
          resolve(message);
        }),
      );
      // The 'error' listener stays for the CANCELLED status that our own cancel() produces.
      call.on('error', (err: unknown) => settle(() => void callError(err, endpoint).then(reject, reject)));
      call.on('end', () => settle(() => reject(new ApiError(Code.UNAVAILABLE, 'workloadclient: stream ended before the first response'))));
    });
  }

  /** Runs one FetchX509SVID stream until it fails or ends; rejects with the stream's error. */
  function x509Stream(onMessage: (message: X509SVIDResponse__Output) => void, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = client.FetchX509SVID({}, header(), {});
      let settled = false;
      const onAbort = (): void => call.cancel();
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        fn();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      call.on('data', (message: X509SVIDResponse__Output) => {
        if (settled) return;
        try {
          onMessage(message);
        } catch (err) {
          settle(() => {
            call.cancel();
            reject(err);
          });
        }
      });
      call.on('error', (err: unknown) => settle(() => void callError(err, endpoint).then(reject, reject)));
      call.on('end', () => settle(resolve));
    });
  }

  async function watchX509(onUpdate: (context: X509Context) => void, signal: AbortSignal, watch: WatchOptions = {}): Promise<void> {
    const delay = watch.retryDelayMs ?? linearBackoffMs;
    let attempt = 0;
    while (!signal.aborted) {
      let failure: ApiError;
      try {
        await x509Stream((message) => {
          attempt = 0;
          let context: X509Context;
          try {
            context = parseX509SvidResponse(message);
          } catch (err) {
            watch.onError?.(err as ApiError);
            return;
          }
          onUpdate(context);
        }, signal);
        failure = new ApiError(Code.UNAVAILABLE, 'workloadclient: the Workload API ended the stream');
      } catch (err) {
        if (signal.aborted) return;
        if (!(err instanceof ApiError)) throw err;
        if (err.code === Code.INVALID_ARGUMENT) throw err;
        failure = err;
      }
      if (signal.aborted) return;
      watch.onError?.(failure);
      await abortableSleep(delay(attempt++), signal);
    }
  }

  return {
    endpoint,
    async fetchX509Context(call = {}) {
      return parseX509SvidResponse(await firstMessage((md, o) => client.FetchX509SVID({}, md, o), call.signal));
    },
    watchX509,
    async fetchX509Bundles(call = {}) {
      return parseX509BundlesResponse(await firstMessage((md, o) => client.FetchX509Bundles({}, md, o), call.signal));
    },
    async fetchJwtSvids(audience, spiffeId, call = {}) {
      const method: UnaryMethod<JWTSVIDRequest, JWTSVIDResponse__Output> = (r, md, o, cb) => client.FetchJWTSVID(r, md, o, cb);
      return parseJwtSvidResponse(await unary(method, { audience: [...audience], spiffe_id: spiffeId ?? '' }, call.signal));
    },
    async fetchJwtBundles(call = {}) {
      return parseJwtBundlesResponse(await firstMessage((md, o) => client.FetchJWTBundles({}, md, o), call.signal));
    },
    async validateJwtSvid(audience, token, call = {}) {
      const method: UnaryMethod<ValidateJWTSVIDRequest, ValidateJWTSVIDResponse__Output> = (r, md, o, cb) => client.ValidateJWTSVID(r, md, o, cb);
      return parseValidateResponse(await unary(method, { audience, svid: token }, call.signal));
    },
    close: () => client.close(),
  };
}
