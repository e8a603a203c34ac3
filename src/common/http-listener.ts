/**
 * A small HTTP/1.1 listener for operational endpoints (health, metrics): GET and HEAD only,
 * routed by exact path (the query string is ignored), answers built by the caller.
 *
 * Binding is checked at start (a taken port is an ApiError naming the address), and close()
 * does not wait for idle keep-alive connections (probes keep them open).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { ApiError, Code } from './errors.ts';

// Why require and not `import … from 'node:http'`: an ES module import of a built-in copies
// every export into the module namespace, and node:http's WebSocket, MessageEvent and
// CloseEvent are lazy getters that load Node's bundled undici (nodejs/node#59686). Measured:
// +7.4 MiB RssAnon through `import`, +1 MiB through `require` (bench/idle-memory.ts).
const { createServer } = createRequire(import.meta.url)('node:http') as typeof import('node:http');

/** One answer. */
export interface HttpAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/** A route: builds the answer for GET and HEAD on its path. */
export type HttpRoute = () => HttpAnswer | Promise<HttpAnswer>;

/** Options of {@link startHttpListener}. */
export interface HttpListenerOptions {
  /** What the listener is, for error messages (`health_checks`, `telemetry.Prometheus`). */
  name: string;
  host: string;
  /** 0 picks a free port (see {@link HttpListener.port}). */
  port: number;
  /** Routes by exact path. */
  routes: ReadonlyMap<string, HttpRoute>;
  /** The answer for other paths. */
  notFound: () => HttpAnswer;
  /** Called when a route throws (the client gets a 500). */
  onError?: (err: unknown) => void;
}

/** A running listener. */
export interface HttpListener {
  readonly host: string;
  /** The bound port. */
  readonly port: number;
  /** Stops listening and closes every connection. Idempotent. */
  close(): Promise<void>;
}

function send(req: IncomingMessage, res: ServerResponse, answer: HttpAnswer, extra: Record<string, string> = {}): void {
  res.writeHead(answer.status, {
    'content-type': answer.contentType,
    'content-length': Buffer.byteLength(answer.body),
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(req.method === 'HEAD' ? undefined : answer.body);
}

/** Starts the listener; rejects with ApiError(UNAVAILABLE) if the address cannot be bound. */
export async function startHttpListener(options: HttpListenerOptions): Promise<HttpListener> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0] as string;
    const route = options.routes.get(path);
    if (route === undefined) {
      send(req, res, options.notFound());
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(req, res, { status: 405, contentType: 'application/json', body: JSON.stringify({ error: `method ${req.method ?? ''} not allowed` }) }, { allow: 'GET, HEAD' });
      return;
    }
    Promise.resolve()
      .then(route)
      .then(
        (answer) => send(req, res, answer),
        (err: unknown) => {
          options.onError?.(err);
          send(req, res, { status: 500, contentType: 'application/json', body: JSON.stringify({ error: 'internal error' }) });
        },
      );
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new ApiError(Code.UNAVAILABLE, `${options.name}: cannot listen on ${options.host}:${options.port}: ${err.code ?? err.message}`));
    };
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    host: options.host,
    port,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
