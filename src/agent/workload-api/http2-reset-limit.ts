/**
 * A grpc-js connection injector whose HTTP/2 server tolerates one-shot clients.
 *
 * The hazard (grpc-node#2872): nghttp2 answers more than `streamResetBurst` (default 1000)
 * RST_STREAM frames, refilled at `streamResetRate` (33) per second, with GOAWAY
 * INTERNAL_ERROR, which kills every stream on the connection. A Workload API client that
 * opens a stream, reads one message and cancels (go-spiffe's FetchX509SVID, OIDC providers
 * polling FetchJWTBundles) sends one RST_STREAM per call, so a busy client on a long-lived
 * connection trips the limit after ~1000 calls.
 *
 * The fix: Node takes `streamResetBurst`/`streamResetRate` in `http2.createServer` options
 * (nodejs/node#54875; present in Node 24), but grpc-js (1.14) builds those options itself from a fixed
 * list (maxSendHeaderBlockLength, maxSessionMemory, settings) and offers no way to add to
 * them. It does, however, call `http2.createServer(...)` on the CommonJS `http2` exports
 * object, synchronously, inside `createConnectionInjector()`. So for the duration of that one
 * synchronous call we wrap `createServer` to add the two options, then restore it. The wrap
 * records that it ran; if a future grpc-js stops going through it, we report it instead of
 * failing silently (and the integration test that cancels 3000 streams fails).
 */
import { createRequire } from 'node:module';
import type * as Http2 from 'node:http2';
import { ServerCredentials, type Server } from '@grpc/grpc-js';

/** nghttp2's RST_STREAM token bucket: `burst` tokens, refilled at `ratePerSecond`. */
export interface StreamResetLimit {
  readonly burst: number;
  readonly ratePerSecond: number;
}

/**
 * Default limit: far above what a well-behaved client can reach on one connection (each
 * one-shot call waits for a response; 1,500–2,700 calls/s measured on a 2-core machine), while a
 * true rapid-reset flood (no waiting) still drains the bucket and gets the connection closed.
 */
export const DEFAULT_STREAM_RESET_LIMIT: StreamResetLimit = Object.freeze({ burst: 10_000, ratePerSecond: 10_000 });

/** The injector plus whether the reset limit actually reached the HTTP/2 server. */
export interface LimitedInjector {
  readonly injector: ReturnType<Server['createConnectionInjector']>;
  readonly limitApplied: boolean;
  /** The HTTP/2 server grpc-js created (undefined when the limit was not applied). */
  readonly http2Server: Http2.Http2Server | undefined;
}

type CreateServer = (options?: Http2.ServerOptions, ...rest: unknown[]) => Http2.Http2Server;

/** The CommonJS `http2` exports object: the one grpc-js calls createServer on. */
const http2Exports = createRequire(import.meta.url)('node:http2') as typeof Http2;

/** Creates an insecure connection injector whose HTTP/2 sessions use `limit` for RST_STREAM. */
export function createLimitedInjector(server: Server, limit: StreamResetLimit = DEFAULT_STREAM_RESET_LIMIT): LimitedInjector {
  const original = Reflect.get(http2Exports, 'createServer') as CreateServer;
  let http2Server: Http2.Http2Server | undefined;
  const wrapped: CreateServer = (options, ...rest) => {
    const withLimit: Http2.ServerOptions = {
      ...options,
      streamResetBurst: limit.burst,
      streamResetRate: limit.ratePerSecond,
    };
    http2Server = original.call(http2Exports, withLimit, ...rest);
    return http2Server;
  };
  Reflect.set(http2Exports, 'createServer', wrapped);
  try {
    const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
    return { injector, limitApplied: http2Server !== undefined, http2Server };
  } finally {
    Reflect.set(http2Exports, 'createServer', original);
  }
}
