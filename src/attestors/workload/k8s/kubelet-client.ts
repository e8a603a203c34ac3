/**
 * The kubelet client: `GET https://<host>:<port>/pods` over node:https, with the kubelet's
 * TLS verified and the agent authenticated by bearer token or client certificate
 * (SPIRE's `kubeletclient.go`, `podlistfetcher.go`).
 *
 * Credentials and TLS material are read on every request (at most one every
 * `poll_retry_interval`, a few KB against a ~1 MiB response), so a rotated projected token
 * or certificate is used as soon as the file changes; the https.Agent is rebuilt only
 * when the CA or client certificate content actually changed.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Agent } from 'node:https';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { ApiError, Code } from '../../../common/errors.ts';
import type { Logger } from '../../../common/logger.ts';
import { describeHttpFailure, describeIdentity, describeTransportError } from './kubelet-errors.ts';
import type { KubeletMetrics, KubeletOutcome, KubeletOutcomeListener } from './metrics.ts';

// Why node:https and not undici: on top of the agent's modules (which already load tls, net
// and streams for grpc-js), this client costs +0.2 MiB RssAnon loaded and +1.4 MiB after a
// request with its connection open; over undici it was +4.3 and +5.5 MiB (production layout,
// after GC, median of 7 processes).
// Why require and not `import … from 'node:https'`: as for node:http in
// common/http-listener.ts, an ES module import of a built-in copies every export, and lazy
// getters among them can load Node's bundled undici. node:https has none today (Node 24.21:
// neither form loads it); required the same way so that one added later stays unloaded.
const https = createRequire(import.meta.url)('node:https') as typeof import('node:https');

/** The answer to one GET: its status and whole body. */
export interface KubeletResponse {
  readonly statusCode: number;
  readonly body: string;
}

/**
 * Sends one `GET url` and reads the whole answer (any status); rejects when no complete
 * answer arrives (connection, TLS or read failure, or `signal` aborted). The client's own
 * is node:https with the configured TLS.
 */
export type KubeletTransport = (url: string, headers: Readonly<Record<string, string>>, signal: AbortSignal) => Promise<KubeletResponse>;

/** Options of {@link createKubeletClient}. */
export interface KubeletClientOptions {
  /** The kubelet's host: the node name when configured, else `127.0.0.1`. */
  host: string;
  port: number;
  /**
   * The configured node name. When set, the kubelet's certificate must be valid for it
   * (full hostname verification); when not, only the chain is verified (see below).
   */
  nodeName?: string;
  /** PEM bundle of the kubelet CA (SPIRE `kubelet_ca_path`). Ignored with `skipVerification`. */
  caPath: string;
  /** Do not verify the kubelet's certificate at all (SPIRE `skip_kubelet_verification`). Logged as a warning. */
  skipVerification: boolean;
  /** Bearer token file, trimmed (SPIRE `token_path`). Used unless a client certificate or anonymous auth is set. */
  tokenPath: string;
  /** Client certificate and key files (SPIRE `certificate_path`, `private_key_path`); both or neither. */
  certificatePath?: string;
  privateKeyPath?: string;
  /** Send no credentials (SPIRE `use_anonymous_authentication`). */
  anonymous?: boolean;
  /** Whole-request timeout (connect, headers and body). Default 10 s, as in SPIRE. */
  timeoutMs?: number;
  logger: Logger;
  /** Test seam: sends the requests instead of node:https; the TLS files are then not read. */
  transport?: KubeletTransport;
  /** Test seam: `https://127.0.0.1:<port>` to reach instead of `https://<host>:<port>` (TLS names stay as configured). */
  baseUrl?: string;
  /** Each request's outcome and duration; nothing is recorded when absent. */
  metrics?: KubeletMetrics;
  /** Told each request's outcome and error message (the agent's health). */
  onOutcome?: KubeletOutcomeListener;
}

/** A client of the kubelet's `/pods` endpoint. */
export interface KubeletClient {
  /** The URL requested. */
  readonly url: string;
  /** The raw body of a 200 response to `GET /pods`; ApiError (`kubelet: …`) otherwise. */
  getPodList(signal: AbortSignal): Promise<string>;
  /** Closes the connections this client opened, after the requests in flight (not an injected transport's). */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** An idle kept-alive connection is closed after this long (undici's default, used before). */
const KEEP_ALIVE_IDLE_MS = 4_000;

/** Creates the kubelet client. Throws ApiError(INVALID_ARGUMENT) on inconsistent options. */
export function createKubeletClient(options: KubeletClientOptions): KubeletClient {
  const { logger, skipVerification } = options;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const hasCert = options.certificatePath !== undefined && options.certificatePath !== '';
  const hasKey = options.privateKeyPath !== undefined && options.privateKeyPath !== '';
  if (hasCert !== hasKey) {
    throw new ApiError(
      Code.INVALID_ARGUMENT,
      hasCert
        ? 'kubelet: private_key_path is required with certificate_path'
        : 'kubelet: certificate_path is required with private_key_path',
    );
  }
  const auth: Auth = options.anonymous
    ? { kind: 'anonymous' }
    : hasCert
      ? { kind: 'certificate', certificatePath: options.certificatePath as string, privateKeyPath: options.privateKeyPath as string }
      : { kind: 'token', tokenPath: options.tokenPath };
  const nodeName = options.nodeName !== undefined && options.nodeName !== '' ? options.nodeName : undefined;
  const hostForUrl = isIP(options.host) === 6 ? `[${options.host}]` : options.host;
  const url = `${options.baseUrl ?? `https://${hostForUrl}:${options.port}`}/pods`;
  const target: Target = { url, nodeName, caPath: options.caPath, skipVerification, auth };

  if (skipVerification) {
    logger.warn(
      { kubelet_url: url },
      'kubelet: skip_kubelet_verification is set: the kubelet certificate is NOT verified, so anything that answers on this address can feed pods (and selectors) to the agent',
    );
  }
  logger.info(
    {
      kubelet_url: url,
      verification: skipVerification ? 'none' : nodeName !== undefined ? `chain and hostname "${nodeName}"` : 'chain only (loopback)',
      authentication: auth.kind,
    },
    'kubelet client configured',
  );

  const agents = createAgents(target);

  async function getPodList(signal: AbortSignal): Promise<string> {
    const started = performance.now();
    let outcome: KubeletOutcome = 'credentials_error';
    let error: string | undefined;
    try {
      const headers: Record<string, string> = { accept: 'application/json' };
      const token = auth.kind === 'token' ? await readToken(auth.tokenPath) : undefined;
      if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
      // An injected transport brings its own TLS setup.
      const send = options.transport ?? (await agents.acquire());

      const timeout = AbortSignal.timeout(timeoutMs);
      const combined = AbortSignal.any([signal, timeout]);
      let statusCode: number;
      let body: string;
      try {
        ({ statusCode, body } = await send(url, headers, combined));
      } catch (err) {
        if (signal.aborted) {
          outcome = 'cancelled';
          throw new ApiError(Code.CANCELLED, `kubelet: GET ${url} cancelled`);
        }
        if (timeout.aborted) {
          outcome = 'timeout';
          throw new ApiError(Code.UNAVAILABLE, `kubelet: GET ${url} timed out after ${timeoutMs / 1000}s`);
        }
        const described = describeTransportError(err, target);
        // describeTransportError says FAILED_PRECONDITION exactly for certificate and TLS failures.
        outcome = described.code === Code.FAILED_PRECONDITION ? 'tls_error' : 'unreachable';
        throw described;
      }
      if (statusCode !== 200) {
        outcome = statusCode === 401 ? 'unauthorized' : statusCode === 403 ? 'forbidden' : 'http_error';
        throw describeHttpFailure(statusCode, body, target, await describeIdentity(auth, token));
      }
      outcome = 'ok';
      return body;
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      throw err;
    } finally {
      options.metrics?.request(outcome, (performance.now() - started) / 1000);
      options.onOutcome?.(outcome, error);
    }
  }

  return { url, getPodList, close: agents.close };
}

/** How the client authenticates. */
export type Auth =
  | { readonly kind: 'token'; readonly tokenPath: string }
  | { readonly kind: 'certificate'; readonly certificatePath: string; readonly privateKeyPath: string }
  | { readonly kind: 'anonymous' };

/** What error messages need to know about the connection. */
export interface Target {
  readonly url: string;
  readonly nodeName: string | undefined;
  readonly caPath: string;
  readonly skipVerification: boolean;
  readonly auth: Auth;
}

interface TlsMaterial {
  readonly ca: string | undefined;
  readonly cert: string | undefined;
  readonly key: string | undefined;
}

/** An https.Agent and the TLS material it was built from. */
interface HeldAgent {
  readonly agent: Agent;
  readonly material: string;
  /** Requests handed this agent and not finished yet. */
  active: number;
  /** Replaced (new TLS material) or closing: destroyed once `active` is 0. */
  retired: boolean;
  readonly destroyed: PromiseWithResolvers<void>;
}

/**
 * The https.Agent of the current TLS material, rebuilt when that material changes. Why agents
 * are retired rather than destroyed: a request still using the old agent must finish (as
 * undici's `Agent.close()` let it); `https.Agent.destroy()` would cut its connection.
 */
function createAgents(target: Target): { acquire(): Promise<KubeletTransport>; close(): Promise<void> } {
  let current: HeldAgent | undefined;
  const held = new Set<HeldAgent>();

  function destroyIfIdle(h: HeldAgent): void {
    if (!h.retired || h.active > 0 || !held.delete(h)) return;
    h.agent.destroy();
    h.destroyed.resolve();
  }

  function retire(h: HeldAgent): void {
    h.retired = true;
    destroyIfIdle(h);
  }

  return {
    /** Loads the TLS material and returns a transport for ONE request (it counts as in flight from now). */
    async acquire(): Promise<KubeletTransport> {
      const tls = await loadTls(target);
      const material = `${tls.ca ?? ''}\0${tls.cert ?? ''}\0${tls.key ?? ''}`;
      if (current === undefined || current.material !== material) {
        if (current !== undefined) retire(current);
        current = { agent: buildAgent(tls, target), material, active: 0, retired: false, destroyed: Promise.withResolvers() };
        held.add(current);
      }
      const h = current;
      h.active++;
      return (url, headers, signal) =>
        httpsGet(h.agent, url, headers, signal).finally(() => {
          h.active--;
          destroyIfIdle(h);
        });
    },
    async close(): Promise<void> {
      const all = [...held];
      current = undefined;
      for (const h of all) retire(h);
      await Promise.all(all.map((h) => h.destroyed.promise));
    },
  };
}

function buildAgent(tls: TlsMaterial, target: Target): Agent {
  const { nodeName } = target;
  return new https.Agent({
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    rejectUnauthorized: !target.skipVerification,
    // With a node name, Node's default checkServerIdentity checks the certificate against
    // it (SNI and the check use `servername`, which also lets tests reach 127.0.0.1 while
    // verifying the node name). SNI must not carry an IP address (RFC 6066).
    ...(nodeName !== undefined && isIP(nodeName) === 0 ? { servername: nodeName } : {}),
    // Without a node name the agent talks to 127.0.0.1 (host network), and kubelet
    // serving certificates name the node, not the loopback address, so a name check
    // would always fail. As in SPIRE, only the chain is verified then: OpenSSL still
    // requires a certificate issued by the kubelet CA (rejectUnauthorized), and the
    // connection never leaves the node. This callback only replaces the NAME check.
    ...(nodeName === undefined ? { checkServerIdentity: () => undefined } : {}),
    // One connection, reused while requests keep coming (the pod index asks at most every
    // poll_retry_interval); further requests queue for it.
    keepAlive: true,
    maxSockets: 1,
    // Closes the connection once idle this long; a request in progress is bounded by the
    // caller's signal instead (the whole-request timeout), not by this.
    timeout: KEEP_ALIVE_IDLE_MS,
  });
}

/**
 * One GET over `agent`: the status and the whole body as UTF-8, a leading byte order mark
 * dropped (as undici's `body.text()` did). Aborting `signal` destroys the request.
 */
function httpsGet(agent: Agent, url: string, headers: Readonly<Record<string, string>>, signal: AbortSignal): Promise<KubeletResponse> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const start = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
        resolve({ statusCode: res.statusCode ?? 0, body: body.toString('utf8', start) });
      });
      // A connection lost mid-body: Node says "aborted" (ECONNRESET) in an 'error', or only
      // closes; either way say what happened.
      const truncated = (): void => reject(Object.assign(new Error('the connection closed before the whole response arrived'), { code: 'ECONNRESET' }));
      res.on('error', truncated);
      res.on('close', () => {
        if (!res.complete) truncated();
      });
    };
    https.get(url, { agent, headers, signal }, onResponse).on('error', reject);
  });
}

async function loadTls(target: Target): Promise<TlsMaterial> {
  const ca = target.skipVerification ? undefined : await readConfigFile(target.caPath, 'the kubelet CA (kubelet_ca_path)');
  if (target.auth.kind !== 'certificate') return { ca, cert: undefined, key: undefined };
  const cert = await readConfigFile(target.auth.certificatePath, 'the client certificate (certificate_path)');
  const key = await readConfigFile(target.auth.privateKeyPath, 'the client private key (private_key_path)');
  return { ca, cert, key };
}

async function readToken(path: string): Promise<string> {
  const token = (await readConfigFile(path, 'the kubelet token (token_path)')).trim();
  if (token === '') throw new ApiError(Code.FAILED_PRECONDITION, `kubelet: the token file ${path} (token_path) is empty`);
  return token;
}

async function readConfigFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ApiError(Code.FAILED_PRECONDITION, `kubelet: unable to load ${what} from ${path}: ${reason}`);
  }
}
