/**
 * The kubelet client: `GET https://<host>:<port>/pods` over undici, with the kubelet's
 * TLS verified and the agent authenticated by bearer token or client certificate
 * (SPIRE's `kubeletclient.go`, `podlistfetcher.go`).
 *
 * Credentials and TLS material are read on every request (at most one every
 * `poll_retry_interval`, a few KB against a ~1 MiB response), so a rotated projected token
 * or certificate is used as soon as the file changes; the TLS dispatcher is rebuilt only
 * when the CA or client certificate content actually changed.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';
import { ApiError, Code } from '../../../common/errors.ts';
import type { Logger } from '../../../common/logger.ts';
import { describeHttpFailure, describeTransportError } from './kubelet-errors.ts';
import type { KubeletMetrics, KubeletOutcome } from './metrics.ts';

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
  /** Test seam: the dispatcher to use instead of one built from the TLS options. */
  dispatcher?: Dispatcher;
  /** Test seam: `https://127.0.0.1:<port>` to reach instead of `https://<host>:<port>` (TLS names stay as configured). */
  baseUrl?: string;
  /** Each request's outcome and duration; nothing is recorded when absent. */
  metrics?: KubeletMetrics;
}

/** A client of the kubelet's `/pods` endpoint. */
export interface KubeletClient {
  /** The URL requested. */
  readonly url: string;
  /** The raw body of a 200 response to `GET /pods`; ApiError (`kubelet: …`) otherwise. */
  getPodList(signal: AbortSignal): Promise<string>;
  /** Closes the connections this client opened (not an injected dispatcher). */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 10_000;

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

  // The dispatcher and the TLS material it was built from; rebuilt when that material changes.
  let owned: { agent: Agent; material: string } | undefined;
  const retired: Agent[] = [];

  async function dispatcher(): Promise<Dispatcher> {
    // An injected dispatcher brings its own TLS setup.
    if (options.dispatcher !== undefined) return options.dispatcher;
    const tls = await loadTls(target);
    const material = `${tls.ca ?? ''}\0${tls.cert ?? ''}\0${tls.key ?? ''}`;
    if (owned !== undefined && owned.material === material) return owned.agent;
    if (owned !== undefined) {
      // Let a request still using the old agent finish; close it in the background.
      const old = owned.agent;
      retired.push(old);
      void old.close().finally(() => retired.splice(retired.indexOf(old), 1));
    }
    owned = { agent: buildAgent(tls, nodeName, skipVerification, timeoutMs), material };
    return owned.agent;
  }

  async function getPodList(signal: AbortSignal): Promise<string> {
    const started = performance.now();
    let outcome: KubeletOutcome = 'credentials_error';
    try {
      const headers: Record<string, string> = { accept: 'application/json' };
      if (auth.kind === 'token') headers['authorization'] = `Bearer ${await readToken(auth.tokenPath)}`;
      const through = await dispatcher();

      const timeout = AbortSignal.timeout(timeoutMs);
      const combined = AbortSignal.any([signal, timeout]);
      let statusCode: number;
      let body: string;
      try {
        const response = await request(url, { method: 'GET', headers, dispatcher: through, signal: combined });
        statusCode = response.statusCode;
        body = await response.body.text();
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
        throw describeHttpFailure(statusCode, body, target, auth.kind === 'token' ? await tokenClaims(auth.tokenPath) : await certificateSubject(auth));
      }
      outcome = 'ok';
      return body;
    } finally {
      options.metrics?.request(outcome, (performance.now() - started) / 1000);
    }
  }

  async function close(): Promise<void> {
    const agents = [...retired, ...(owned !== undefined ? [owned.agent] : [])];
    owned = undefined;
    await Promise.allSettled(agents.map((a) => a.close()));
  }

  return { url, getPodList, close };
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

function buildAgent(tls: TlsMaterial, nodeName: string | undefined, skipVerification: boolean, timeoutMs: number): Agent {
  return new Agent({
    connect: {
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      rejectUnauthorized: !skipVerification,
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
      timeout: timeoutMs,
    },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connections: 1,
    pipelining: 1,
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

/** The identity a token claims (never the token): for error messages only, unverified. */
async function tokenClaims(path: string): Promise<string> {
  let token: string;
  try {
    token = (await readFile(path, 'utf8')).trim();
  } catch {
    return `the bearer token from ${path}`;
  }
  const payload = token.split('.')[1];
  if (payload === undefined) return `the bearer token from ${path} (not a JWT)`;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub?: unknown; aud?: unknown };
    const sub = typeof claims.sub === 'string' ? claims.sub : '?';
    const aud = Array.isArray(claims.aud) ? claims.aud.join(',') : typeof claims.aud === 'string' ? claims.aud : '?';
    return `the bearer token from ${path} (sub "${sub}", aud "${aud}")`;
  } catch {
    return `the bearer token from ${path} (unreadable claims)`;
  }
}

async function certificateSubject(auth: Auth): Promise<string> {
  if (auth.kind !== 'certificate') return 'no credentials (use_anonymous_authentication)';
  try {
    const cert = new X509Certificate(await readFile(auth.certificatePath));
    return `the client certificate from ${auth.certificatePath} (subject "${cert.subject.replaceAll('\n', ', ')}")`;
  } catch {
    return `the client certificate from ${auth.certificatePath}`;
  }
}
