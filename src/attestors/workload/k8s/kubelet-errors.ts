/**
 * Error messages for kubelet failures that say what to fix. SPIRE users mostly see an
 * opaque "403 Forbidden" (spire#3152); these name the missing permission, the kubelet
 * flag, and which identity the agent presented.
 */
import { ApiError, Code } from '../../../common/errors.ts';
import type { Target } from './kubelet-client.ts';

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
  const code = errorCode(err);
  // Node appends advice about the system CA store, which is beside the point for a kubelet CA.
  const reason = (err instanceof Error ? err.message : String(err)).replace(/; if the root CA is installed locally.*$/s, '');
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

function errorCode(err: unknown): string | undefined {
  // undici may wrap the socket error; look one level down too.
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 3; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'UND_ERR_SOCKET' && code !== 'UND_ERR_CONNECT') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The start of a response body on one line, for an error message. */
function excerpt(body: string): string {
  const flat = body.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return flat.length > MAX_BODY_IN_MESSAGE ? `${flat.slice(0, MAX_BODY_IN_MESSAGE)}…` : flat;
}
