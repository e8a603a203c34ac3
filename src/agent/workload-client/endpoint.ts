/**
 * Workload API endpoint addresses (spec: SPIFFE_Workload_Endpoint.md §4), as
 * `SPIFFE_ENDPOINT_SOCKET` and spire-agent's `-socketPath` write them. Pure: text in, a
 * validated endpoint and its grpc-js target out. Error messages follow go-spiffe's
 * (`workloadapi/addr.go`) where it has one.
 */
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import type { Parsed } from '../../common/spiffe-id.ts';

/** The environment variable holding the default Workload API address. */
export const SOCKET_ENV = 'SPIFFE_ENDPOINT_SOCKET';

/** A validated Workload API endpoint and the grpc-js target that dials it. */
export type WorkloadEndpoint =
  | { readonly kind: 'unix'; readonly path: string; readonly target: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly target: string };

/** How {@link parseWorkloadEndpoint} treats text that is not a URI. */
export interface EndpointParseOptions {
  /**
   * Accept a bare filesystem path such as `/tmp/spire-agent/public/api.sock`, as spire-agent's
   * `-socketPath` does. The spec itself allows only `unix:` and `tcp:` URIs. Default false.
   */
  allowPath?: boolean;
  /** With `allowPath`: resolve a relative bare path against this directory (else it is an error). */
  baseDir?: string;
}

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const CONTROL = /[\u0000-\u001f\u007f]/;

// go-spiffe's ErrInvalidEndpointScheme.
const INVALID_SCHEME = 'workload endpoint socket URI must have a "tcp" or "unix" scheme';

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}

function unixEndpoint(path: string): Parsed<WorkloadEndpoint> {
  return { ok: true, value: { kind: 'unix', path, target: `unix:${path}` } };
}

/** Parses an endpoint address: `unix:///path`, `unix:/path`, `tcp://<ip>:<port>`, or (when allowed) a bare path. */
export function parseWorkloadEndpoint(address: string, options: EndpointParseOptions = {}): Parsed<WorkloadEndpoint> {
  if (address === '') return fail('workload endpoint socket address is empty');
  if (CONTROL.test(address)) return fail('workload endpoint socket is not a valid URI: invalid control character in URL');
  if (!SCHEME.test(address)) {
    if (options.allowPath !== true) return fail(INVALID_SCHEME);
    if (isAbsolute(address)) return unixEndpoint(address);
    if (options.baseDir !== undefined) return unixEndpoint(resolve(options.baseDir, address));
    return fail(`workload endpoint socket path "${address}" must be absolute`);
  }
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return fail(`workload endpoint socket is not a valid URI: "${address}"`);
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  if (scheme !== 'unix' && scheme !== 'tcp') return fail(INVALID_SCHEME);
  // WHATWG URL keeps "scheme:rest" with no "//" and no leading "/" as an opaque path.
  const afterScheme = address.slice(url.protocol.length);
  const hasAuthority = afterScheme.startsWith('//');
  const opaque = !hasAuthority && afterScheme !== '' && !afterScheme.startsWith('/');
  const what = `workload endpoint ${scheme} socket URI`;
  if (opaque) return fail(`${what} must not be opaque`);
  if (url.username !== '' || url.password !== '') return fail(`${what} must not include user info`);
  if (scheme === 'unix') {
    if (url.host !== '') return fail(`${what} must not include an authority (write unix:///absolute/path)`);
    if (url.pathname === '') return fail(`${what} must include a path`);
    if (url.search !== '') return fail(`${what} must not include query values`);
    if (url.hash !== '') return fail(`${what} must not include a fragment`);
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      return fail(`${what} has a malformed percent-encoded path`);
    }
    return unixEndpoint(path);
  }
  if (url.host === '') return fail(`${what} must include a host`);
  if (url.pathname !== '') return fail(`${what} must not include a path`);
  if (url.search !== '') return fail(`${what} must not include query values`);
  if (url.hash !== '') return fail(`${what} must not include a fragment`);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const family = isIP(host);
  if (family === 0) return fail(`${what} host component must be an IP:port`);
  if (url.port === '') return fail(`${what} host component must include a port`);
  const port = Number(url.port);
  const target = family === 4 ? `ipv4:${host}:${port}` : `ipv6:[${host}]:${port}`;
  return { ok: true, value: { kind: 'tcp', host, port, target } };
}

/** The address to use when none is given: `$SPIFFE_ENDPOINT_SOCKET`, or undefined when unset or empty. */
export function defaultEndpointAddress(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const value = env[SOCKET_ENV];
  return value === undefined || value === '' ? undefined : value;
}
