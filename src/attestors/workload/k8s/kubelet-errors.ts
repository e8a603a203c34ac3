/**
 * Error messages for kubelet failures that say what to fix. SPIRE users mostly see an
 * opaque "403 Forbidden" (spire#3152); these name the missing permission, the kubelet
 * flag, and which identity the agent presented.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ApiError, Code } from '../../../common/errors.ts';
import type { Auth, Target } from './kubelet-client.ts';

/** TLS errors that mean "the certificate does not chain to the configured CA". */
const CHAIN_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);
const VALIDITY_ERRORS = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const MAX_BODY_IN_MESSAGE = 300;

/** Maps a failed connection or request to an ApiError. */
export function describeTransportError(err: unknown, target: Target): ApiError {
  const { code, reason } = codeAndReason(err);
  if (code !== undefined && CHAIN_ERRORS.has(code)) {
    return new ApiError(
      Code.FAILED_PRECONDITION,
      `kubelet: the certificate of ${target.url} is not signed by the kubelet CA in ${target.caPath} (${code}: ${reason}); ` +
        'set kubelet_ca_path to the CA that issued the kubelet serving certificates',
    );
  }
  if (code !== undefined && VALIDITY_ERRORS.has(code)) {
    return new ApiError(Code.FAILED_PRECONDITION, `kubelet: the certificate of ${target.url} is not valid now (${code}: ${reason})`);
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new ApiError(
      Code.FAILED_PRECONDITION,
      `kubelet: the certificate of ${target.url} is not valid for the node name "${target.nodeName ?? ''}" (${reason}); ` +
        'the kubelet serving certificate must name the node (e.g. kubelet serverTLSBootstrap), or node_name must be a name it holds',
    );
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_FORMAT' || (code?.startsWith('ERR_TLS_') ?? false) || code?.startsWith('ERR_SSL_')) {
    return new ApiError(Code.FAILED_PRECONDITION, `kubelet: TLS with ${target.url} failed (${code}: ${reason})`);
  }
  return new ApiError(Code.UNAVAILABLE, `kubelet: GET ${target.url} failed: ${reason}${code !== undefined ? ` (${code})` : ''}`);
}

/**
 * Maps a non-200 answer to an ApiError. `identity` describes the credentials presented
 * (token subject and audience, or certificate subject), never the secret itself.
 */
export function describeHttpFailure(status: number, body: string, target: Target, identity: string): ApiError {
  const said = excerpt(body);
  const answer = `GET ${target.url} returned ${status}${said !== '' ? ` (${said})` : ''}`;
  if (status === 401) {
    if (target.auth.kind === 'anonymous') {
      return new ApiError(
        Code.UNAUTHENTICATED,
        `kubelet: ${answer}: the kubelet does not serve anonymous requests (use_anonymous_authentication is set); ` +
          'authenticate with token_path, or certificate_path and private_key_path',
      );
    }
    return new ApiError(
      Code.UNAUTHENTICATED,
      `kubelet: ${answer}: the kubelet did not accept ${identity}. ` +
        'The kubelet must check tokens with the API server (--authentication-token-webhook=true, ' +
        'or authentication.webhook.enabled in its config file), and the token must be one the API server ' +
        'accepts (a projected token needs an audience the API server recognises, e.g. its default audience)',
    );
  }
  if (status === 403) {
    const anonymous = /system:anonymous/.test(body)
      ? ' The kubelet saw system:anonymous: it is not authenticating tokens, so enable --authentication-token-webhook on the kubelet.'
      : '';
    return new ApiError(
      Code.PERMISSION_DENIED,
      `kubelet: ${answer}: ${identity} may not read pods from the kubelet. ` +
        'Grant it "get" on "nodes/proxy" (a ClusterRole rule apiGroups [""], resources ["nodes/proxy"], verbs ["get"], ' +
        "bound to the agent's service account; with KubeletFineGrainedAuthz, \"nodes/pods\" suffices)." +
        anonymous,
    );
  }
  return new ApiError(Code.UNAVAILABLE, `kubelet: ${answer}`);
}

/**
 * The credentials presented, for {@link describeHttpFailure}: never the secret itself. `token`
 * is the bearer token the refused request carried (token auth).
 */
export async function describeIdentity(auth: Auth, token: string | undefined): Promise<string> {
  return auth.kind === 'token' ? tokenClaims(auth.tokenPath, token ?? '') : await certificateSubject(auth);
}

/** The identity a token claims (never the token): for error messages only, unverified. */
function tokenClaims(path: string, token: string): string {
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

/**
 * The error's code and message, as the TLS layer reports them. Node's https client writes the
 * request before the TLS handshake has finished, so a handshake that fails on what the server
 * sent (a plain-HTTP port: "wrong version number") can surface as the failed write instead:
 * `write EPROTO <OpenSSL error text>`, where the handshake itself would have said
 * ERR_SSL_<REASON>. That code is recovered here so that both say the same.
 */
function codeAndReason(err: unknown): { code: string | undefined; reason: string } {
  const own = (err as { code?: unknown } | null | undefined)?.code;
  // Node appends advice about the system CA store, which is beside the point for a kubelet CA.
  const message = (err instanceof Error ? err.message : String(err)).replace(/; if the root CA is installed locally.*$/s, '');
  const ssl = own === 'EPROTO' ? /^\w+ EPROTO (.*:SSL routines:[^:]*:([^:]+):.*)$/s.exec(message) : null;
  if (ssl !== null) return { code: `ERR_SSL_${(ssl[2] as string).toUpperCase().replaceAll(' ', '_')}`, reason: ssl[1] as string };
  return { code: typeof own === 'string' ? own : undefined, reason: message };
}

/** The start of a response body on one line, for an error message. */
function excerpt(body: string): string {
  const flat = body.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return flat.length > MAX_BODY_IN_MESSAGE ? `${flat.slice(0, MAX_BODY_IN_MESSAGE)}…` : flat;
}
