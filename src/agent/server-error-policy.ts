/**
 * What the agent does about an error from a step that talks to the server: retry later,
 * attest again, or stop (exit 1) with a message that says what an operator must do.
 *
 * Only errors that no retry can fix stop the agent, as SPIRE's agent does:
 * - the server refused node attestation (PermissionDenied, InvalidArgument,
 *   FailedPrecondition): an unknown, used or expired join token, a banned agent, a
 *   k8s_psat token or service account the server does not accept, an attestor type the
 *   server lacks. The same request would be refused again.
 * - the trust bundle does not verify the server's certificate (X.509 "unknown authority"):
 *   the bundle only changes through a successful sync, so it never will. Except for a while
 *   after the server's own bundle became ours: after `localauthority x509 revoke` the agent
 *   drops the revoked root at once, but spire-server re-signs its own SVID only at its next
 *   rotation check (every 5 s after the taint), so a new connection in between meets a server
 *   SVID of the revoked CA. That is retried for {@link UNTRUSTED_SERVER_GRACE_MS}.
 * - PermissionDenied with reason AGENT_BANNED: the stored identity is deleted first.
 * A server that refuses the agent's SVID in the TLS handshake (a certificate alert, e.g.
 * after `localauthority x509 revoke` of the authority that signed it while the agent missed
 * the taint) is to the agent what SPIRE's AGENT_NOT_ACTIVE is: a reattestable agent (k8s_psat,
 * whose AttestAgent does not use the SVID) attests again with a new key; any other keeps
 * retrying (the authority may come back) and is told once what an operator must do.
 * Everything else (the server down or hung, an overloaded server, a failed mint, a
 * k8s_psat token file not written yet) is retried.
 *
 * Pure: the facts come in, the decision comes out; the lifecycle acts on it.
 */
import { Code, type ApiError } from '../common/errors.ts';

/** Where the failing call was made. */
export type FailedStep =
  /** AttestAgent: the server's answer to the attestation data. */
  | 'attest'
  /** Any other server call (sync, bundle, renewal, minting). */
  | 'call';

/** Where the roots that verify the server came from. */
export type RootsSource = 'bootstrap' | 'stored' | 'server' | 'insecure';

/** What the decision needs to know besides the error. */
export interface ErrorFacts {
  step: FailedStep;
  /** The node attestor type, e.g. `join_token`. */
  attestorType: string;
  /** The join token in use (join_token agents). */
  joinToken: string | undefined;
  trustDomain: string;
  /** The configured bootstrap bundle file, when there is one. */
  trustBundlePath: string | undefined;
  /** The agent state file (`<data_dir>/agent-data.json`). */
  stateFile: string;
  rootsSource: RootsSource;
  /** How long calls have been failing, this one included (0 for the first failure). */
  failingForMs?: number;
  /** Whether the agent's current SVID came from a reattestable attestation (k8s_psat). */
  reattestable?: boolean;
  /** Set when a TLS probe found the server refusing the agent SVID, with the alert received (e.g. `42 bad_certificate`). */
  svidRefused?: { alert: string | undefined };
}

/**
 * How long a server the synced bundle does not verify is retried before the agent stops: well
 * beyond spire-server's 5 s SVID rotation check, which re-signs a tainted server SVID.
 */
export const UNTRUSTED_SERVER_GRACE_MS = 60_000;

/** The decision. */
export type ErrorDecision =
  /** `advice`: what an operator must do, to be logged once per SVID. */
  | { action: 'retry'; advice?: string }
  /** `message`: what happened, when it is not a PermissionDenied reason. */
  | { action: 'reattest'; reason: string; message?: string }
  | { action: 'banned' }
  | { action: 'fatal'; message: string };

const REATTEST_REASONS = new Set(['AGENT_EXPIRED', 'AGENT_NOT_ATTESTED', 'AGENT_NOT_ACTIVE', 'AGENT_MUST_REATTEST']);

/**
 * OpenSSL's texts for a chain that does not lead to a trusted root (Go's
 * x509.UnknownAuthorityError), as grpc-js reports them in an UNAVAILABLE status.
 */
const UNKNOWN_AUTHORITY =
  /self[- ]signed certificate|unable to get (?:local )?issuer certificate|unable to verify the first certificate|certificate signature failure/i;

/** Whether the error says the server's certificate does not chain to our roots. */
export function isUnknownAuthority(err: ApiError): boolean {
  return err.code === Code.UNAVAILABLE && UNKNOWN_AUTHORITY.test(err.message);
}

function newJoinTokenAdvice(facts: ErrorFacts): string {
  const orphan =
    facts.joinToken === undefined
      ? ''
      : ` If an agent already attested with this token and lost its stored identity (${facts.stateFile}), evict its record: spiffe-server agent evict -spiffeID spiffe://${facts.trustDomain}/spire/agent/join_token/${facts.joinToken}.`;
  return `Create a new join token on the server (spiffe-server token generate, or spire-server token generate) and restart the agent with -joinToken <token> (or join_token in the config).${orphan}`;
}

function attestationRefused(err: ApiError, facts: ErrorFacts): string {
  const said = `the server refused node attestation (${Code[err.code]}: ${err.message})`;
  if (/\bbanned\b/i.test(err.message)) {
    return `${said}. This agent is banned: an operator must evict it on the server (spiffe-server agent evict -spiffeID <agent ID>) before it can attest again.`;
  }
  if (facts.attestorType === 'join_token') {
    if (/expired/i.test(err.message)) return `${said}: the join token has expired. ${newJoinTokenAdvice(facts)}`;
    if (/does not exist|already been used/i.test(err.message)) {
      return `${said}: the join token is unknown to the server or was already used. ${newJoinTokenAdvice(facts)}`;
    }
    if (err.code === Code.INVALID_ARGUMENT) return `${said}. ${newJoinTokenAdvice(facts)}`;
  }
  if (err.code === Code.FAILED_PRECONDITION) {
    return `${said}. Configure the NodeAttestor "${facts.attestorType}" plugin on the server, or use an attestor the server has, then restart the agent.`;
  }
  return `${said}. Fix what the server names (the NodeAttestor "${facts.attestorType}" settings on the agent, or the attestor's configuration on the server), then restart the agent.`;
}

function untrustedServer(err: ApiError, facts: ErrorFacts): string {
  const said = `the trust bundle does not verify the server's certificate (${err.message})`;
  switch (facts.rootsSource) {
    case 'bootstrap':
      return `${said}. Put the server's current bundle (spiffe-server bundle show) in ${facts.trustBundlePath ?? 'trust_bundle_path'}, then restart the agent.`;
    case 'stored':
    case 'server':
      return `${said}: the server's CA has been replaced since the agent last synced. Move ${facts.stateFile} away and restart the agent, so it bootstraps from trust_bundle_path again (a join_token agent also needs a new join token).`;
    case 'insecure':
      return `${said}. Check server_address and server_port, then restart the agent.`;
  }
}

function svidRefused(alert: string | undefined): string {
  return `the server refuses the agent SVID in the TLS handshake (alert ${alert ?? 'about the certificate'}): the X.509 authority that signed it is no longer trusted by the server (e.g. it was revoked with "spire-server localauthority x509 revoke" before the agent rotated its SVID), or the server no longer accepts it for another reason; this is not spiffe/spire#7076`;
}

function svidRefusedAdvice(facts: ErrorFacts, alert: string | undefined): string {
  const agentId = facts.joinToken === undefined ? '<agent ID>' : `spiffe://${facts.trustDomain}/spire/agent/join_token/${facts.joinToken}`;
  return `${svidRefused(alert)}. A ${facts.attestorType} agent cannot attest again by itself: create a new join token on the server (spiffe-server token generate, or spire-server token generate), move ${facts.stateFile} away and restart the agent with -joinToken <token> (or join_token in the config); evict the old record (spiffe-server agent evict -spiffeID ${agentId}). Retrying meanwhile`;
}

/** Decides what to do about `err` (see file comment). */
export function decideOnServerError(err: ApiError, facts: ErrorFacts): ErrorDecision {
  const reason = err.details?.['reason'];
  if (reason === 'AGENT_BANNED') return { action: 'banned' };
  if (typeof reason === 'string' && REATTEST_REASONS.has(reason)) return { action: 'reattest', reason };
  if (facts.svidRefused !== undefined && facts.step === 'call') {
    const alert = facts.svidRefused.alert;
    return facts.reattestable === true
      ? { action: 'reattest', reason: 'SVID_REFUSED', message: `${svidRefused(alert)}: attesting again with a new key` }
      : { action: 'retry', advice: svidRefusedAdvice(facts, alert) };
  }
  if (isUnknownAuthority(err)) {
    const settling = facts.rootsSource === 'server' && facts.failingForMs !== undefined && facts.failingForMs < UNTRUSTED_SERVER_GRACE_MS;
    return settling ? { action: 'retry' } : { action: 'fatal', message: untrustedServer(err, facts) };
  }
  if (facts.step === 'attest' && [Code.PERMISSION_DENIED, Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION].includes(err.code)) {
    return { action: 'fatal', message: attestationRefused(err, facts) };
  }
  return { action: 'retry' };
}
