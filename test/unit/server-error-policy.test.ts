import { describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.ts';
import { decideOnServerError, type ErrorFacts } from '../../src/agent/server-error-policy.ts';

const JOIN: ErrorFacts = {
  step: 'attest',
  attestorType: 'join_token',
  joinToken: 'tok-123',
  trustDomain: 'example.org',
  trustBundlePath: '/etc/agent/bundle.pem',
  stateFile: '/var/lib/agent/agent-data.json',
  rootsSource: 'bootstrap',
};
const PSAT: ErrorFacts = { ...JOIN, attestorType: 'k8s_psat', joinToken: undefined };
const CALL: ErrorFacts = { ...JOIN, step: 'call', rootsSource: 'server' };

const unavailable = (m: string): ApiError => new ApiError(Code.UNAVAILABLE, m);
const tlsUntrusted = unavailable('No connection established. Last error: Error: self-signed certificate in certificate chain. Resolution note: ');

describe('decideOnServerError', () => {
  const cases: Array<{ name: string; err: ApiError; facts: ErrorFacts; action: string; says?: RegExp[] }> = [
    { name: 'server down', err: unavailable('No connection established. Last error: connect ECONNREFUSED 127.0.0.1:8081'), facts: JOIN, action: 'retry' },
    { name: 'server hung', err: new ApiError(Code.DEADLINE_EXCEEDED, 'Deadline exceeded after 30.001s'), facts: CALL, action: 'retry' },
    { name: 'server busy', err: new ApiError(Code.RESOURCE_EXHAUSTED, 'rate limited'), facts: JOIN, action: 'retry' },
    { name: 'TokenReview down (psat)', err: new ApiError(Code.INTERNAL, 'k8s_psat: unable to validate token with TokenReview API'), facts: PSAT, action: 'retry' },
    { name: 'InvalidArgument outside attestation', err: new ApiError(Code.INVALID_ARGUMENT, 'bad csr'), facts: CALL, action: 'retry' },
    { name: 'SPIFFE ID mismatch', err: unavailable('No connection established. Last error: Error: server-client: server presented "spiffe://a/spire/server", expected "spiffe://b/spire/server"'), facts: CALL, action: 'retry' },
    { name: 'banned reason', err: new ApiError(Code.PERMISSION_DENIED, 'agent is banned', { reason: 'AGENT_BANNED' }), facts: CALL, action: 'banned' },
    { name: 'must reattest', err: new ApiError(Code.PERMISSION_DENIED, 'agent must reattest', { reason: 'AGENT_MUST_REATTEST' }), facts: CALL, action: 'reattest' },
    { name: 'not active', err: new ApiError(Code.PERMISSION_DENIED, 'agent is not active', { reason: 'AGENT_NOT_ACTIVE' }), facts: CALL, action: 'reattest' },
    {
      name: 'join token used or unknown',
      err: new ApiError(Code.INVALID_ARGUMENT, 'failed to attest: join token does not exist or has already been used'),
      facts: JOIN,
      action: 'fatal',
      says: [/unknown to the server or was already used/, /spiffe-server token generate/, /-joinToken/, /agent evict -spiffeID spiffe:\/\/example\.org\/spire\/agent\/join_token\/tok-123/],
    },
    { name: 'join token expired', err: new ApiError(Code.INVALID_ARGUMENT, 'join token expired'), facts: JOIN, action: 'fatal', says: [/has expired/, /token generate/] },
    { name: 'join token malformed', err: new ApiError(Code.INVALID_ARGUMENT, 'failed to attest: join token has invalid characters'), facts: JOIN, action: 'fatal', says: [/invalid characters/, /token generate/] },
    { name: 'banned at attestation', err: new ApiError(Code.PERMISSION_DENIED, 'failed to attest: agent is banned'), facts: JOIN, action: 'fatal', says: [/banned/, /agent evict/] },
    { name: 'psat not allowed', err: new ApiError(Code.PERMISSION_DENIED, 'k8s_psat: "ns:sa" is not an allowed service account'), facts: PSAT, action: 'fatal', says: [/not an allowed service account/, /NodeAttestor "k8s_psat"/] },
    { name: 'attestor missing on server', err: new ApiError(Code.FAILED_PRECONDITION, 'failed to attest: could not find node attestor type "k8s_psat"'), facts: PSAT, action: 'fatal', says: [/Configure the NodeAttestor "k8s_psat" plugin on the server/] },
    { name: 'untrusted server, bootstrap bundle', err: tlsUntrusted, facts: JOIN, action: 'fatal', says: [/does not verify the server's certificate/, /\/etc\/agent\/bundle\.pem/, /bundle show/] },
    { name: 'untrusted server, stored bundle', err: tlsUntrusted, facts: { ...CALL, rootsSource: 'stored' }, action: 'fatal', says: [/Move \/var\/lib\/agent\/agent-data\.json away/] },
    { name: 'untrusted server, issuer missing', err: unavailable('No connection established. Last error: Error: unable to get local issuer certificate'), facts: CALL, action: 'fatal' },
    // After a revoke: the server's own SVID may still be the revoked CA's for a few seconds.
    { name: 'untrusted server, synced bundle, first failure', err: tlsUntrusted, facts: { ...CALL, failingForMs: 0 }, action: 'retry' },
    { name: 'untrusted server, synced bundle, failing for 59 s', err: tlsUntrusted, facts: { ...CALL, failingForMs: 59_000 }, action: 'retry' },
    { name: 'untrusted server, synced bundle, failing for 60 s', err: tlsUntrusted, facts: { ...CALL, failingForMs: 60_000 }, action: 'fatal', says: [/the server's CA has been replaced/] },
    { name: 'untrusted server, stored bundle, first failure', err: tlsUntrusted, facts: { ...CALL, rootsSource: 'stored', failingForMs: 0 }, action: 'fatal' },
    { name: 'untrusted server, bootstrap bundle, first failure', err: tlsUntrusted, facts: { ...JOIN, failingForMs: 0 }, action: 'fatal' },
  ];
  // The server refuses the agent SVID in the TLS handshake (found by the TLS probe).
  const reset = unavailable('No connection established. Last error: Error: read ECONNRESET');
  const refused = { svidRefused: { alert: '42 bad_certificate' } };
  cases.push(
    { name: 'SVID refused, reattestable (k8s_psat)', err: reset, facts: { ...CALL, ...refused, attestorType: 'k8s_psat', joinToken: undefined, reattestable: true }, action: 'reattest' },
    { name: 'SVID refused, join_token', err: reset, facts: { ...CALL, ...refused, reattestable: false }, action: 'retry' },
    { name: 'SVID refused at attestation (not an SVID call)', err: reset, facts: { ...JOIN, ...refused, reattestable: true }, action: 'retry' },
  );
  for (const c of cases) {
    it(`${c.name} → ${c.action}`, () => {
      const decision = decideOnServerError(c.err, c.facts);
      expect(decision.action).toBe(c.action);
      for (const pattern of c.says ?? []) expect(decision.action === 'fatal' ? decision.message : '').toMatch(pattern);
    });
  }
});

describe('decideOnServerError: an SVID the server refuses', () => {
  const reset = unavailable('No connection established. Last error: Error: read ECONNRESET');
  it('a reattestable agent attests again, and is told why', () => {
    expect(decideOnServerError(reset, { ...CALL, attestorType: 'k8s_psat', joinToken: undefined, reattestable: true, svidRefused: { alert: '42 bad_certificate' } })).toEqual({
      action: 'reattest',
      reason: 'SVID_REFUSED',
      message:
        'the server refuses the agent SVID in the TLS handshake (alert 42 bad_certificate): the X.509 authority that signed it is no longer trusted by the server (e.g. it was revoked with "spire-server localauthority x509 revoke" before the agent rotated its SVID), or the server no longer accepts it for another reason; this is not spiffe/spire#7076: attesting again with a new key',
    });
  });
  it('a join_token agent retries, with advice naming the state file, a new token and the record to evict', () => {
    expect(decideOnServerError(reset, { ...CALL, reattestable: false, svidRefused: { alert: undefined } })).toEqual({
      action: 'retry',
      advice:
        'the server refuses the agent SVID in the TLS handshake (alert about the certificate): the X.509 authority that signed it is no longer trusted by the server (e.g. it was revoked with "spire-server localauthority x509 revoke" before the agent rotated its SVID), or the server no longer accepts it for another reason; this is not spiffe/spire#7076. A join_token agent cannot attest again by itself: create a new join token on the server (spiffe-server token generate, or spire-server token generate), move /var/lib/agent/agent-data.json away and restart the agent with -joinToken <token> (or join_token in the config); evict the old record (spiffe-server agent evict -spiffeID spiffe://example.org/spire/agent/join_token/tok-123). Retrying meanwhile',
    });
  });
  it('a PermissionDenied reason wins over the probe', () => {
    const banned = new ApiError(Code.PERMISSION_DENIED, 'agent is banned', { reason: 'AGENT_BANNED' });
    expect(decideOnServerError(banned, { ...CALL, reattestable: true, svidRefused: { alert: '42 bad_certificate' } })).toEqual({ action: 'banned' });
  });
});
