import { afterEach, describe, expect, it } from 'vitest';
import { HEALTH_REASONS, liveness, readiness, type AgentHealthFacts, type KubeletFact } from '../../src/agent/health/health-report.ts';
import { startHealthServer } from '../../src/agent/health/health-server.ts';
import { createLogger } from '../../src/common/logger.ts';
import type { HttpListener } from '../../src/common/http-listener.ts';

const NOW = Date.UTC(2026, 0, 1, 12);
const ID = 'spiffe://example.org/spire/agent/join_token/t';
const EXPIRES = NOW + 3_600_000;

/** A healthy agent; each row changes what it names. */
function facts(change: Partial<AgentHealthFacts> = {}): AgentHealthFacts {
  return {
    now: NOW,
    stopping: false,
    agentId: ID,
    agentSvidExpiresAt: EXPIRES,
    synced: true,
    workloadApiServing: true,
    lastSyncAt: NOW - 2_000,
    kubelet: undefined,
    ...change,
  };
}

const expired = HEALTH_REASONS.svidExpired(new Date(NOW - 1).toISOString());

describe('readiness', () => {
  const rows: Array<[string, Partial<AgentHealthFacts>, string[]]> = [
    ['ready with an identity, a sync and a listening socket', {}, []],
    ['not ready before node attestation (nor sync)', { agentId: undefined, agentSvidExpiresAt: undefined, synced: false, lastSyncAt: undefined }, [HEALTH_REASONS.noIdentity, HEALTH_REASONS.notSynced]],
    ['not ready with an identity but no sync yet (stored SVID, server down)', { synced: false, lastSyncAt: undefined }, [HEALTH_REASONS.notSynced]],
    ['not ready without an identity after the server asked to re-attest (cache still synced)', { agentId: undefined, agentSvidExpiresAt: undefined }, [HEALTH_REASONS.noIdentity]],
    ['not ready once the agent SVID has expired', { agentSvidExpiresAt: NOW - 1 }, [expired]],
    ['ready until the very last millisecond of the SVID', { agentSvidExpiresAt: NOW + 1 }, []],
    ['not ready when the socket is not listening', { workloadApiServing: false }, [HEALTH_REASONS.notServing]],
    ['not ready while shutting down', { stopping: true, workloadApiServing: false }, [HEALTH_REASONS.stopping, HEALTH_REASONS.notServing]],
  ];
  for (const [name, change, reasons] of rows) {
    it(name, () => {
      const f = facts(change);
      expect(readiness(f)).toEqual({
        ready: reasons.length === 0,
        reasons,
        agent_id: f.agentId ?? null,
        last_sync: f.lastSyncAt === undefined ? null : new Date(f.lastSyncAt).toISOString(),
      });
    });
  }
});

describe('readiness with the k8s attestor: the last kubelet request', () => {
  const AT = NOW - 5_000;
  const AT_ISO = new Date(AT).toISOString();
  const LAST_SYNC = new Date(NOW - 2_000).toISOString();
  const forbidden =
    'kubelet: GET https://node1:10250/pods returned 403 (Forbidden (user=system:serviceaccount:spire:spire-agent, verb=get, resource=nodes, subresource(s)=[proxy])): ' +
    'the bearer token from /var/run/secrets/tokens/kubelet (sub "system:serviceaccount:spire:spire-agent", aud "https://kubernetes.default.svc") may not read pods from the kubelet. ' +
    'Grant it "get" on "nodes/proxy" (a ClusterRole rule apiGroups [""], resources ["nodes/proxy"], verbs ["get"], bound to the agent\'s service account; with KubeletFineGrainedAuthz, "nodes/pods" suffices).';
  const unauthorized = 'kubelet: GET https://node1:10250/pods returned 401 (Unauthorized): the kubelet did not accept the bearer token from /t';
  const tls = 'kubelet: the certificate of https://node1:10250/pods is not signed by the kubelet CA in /ca.crt (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain); set kubelet_ca_path to the CA that issued the kubelet serving certificates';
  const credentials = 'kubelet: unable to load the kubelet token (token_path) from /t: ENOENT: no such file or directory';
  const unreachable = 'kubelet: GET https://node1:10250/pods failed: connect ECONNREFUSED 10.0.0.1:10250 (ECONNREFUSED)';
  const timedOut = 'kubelet: GET https://node1:10250/pods timed out after 10s';
  const serverError = 'kubelet: GET https://node1:10250/pods returned 500 (internal error)';
  const json = (ready: boolean, reasons: string[], kubelet: string): string =>
    `{"ready":${ready},"reasons":${JSON.stringify(reasons)},"agent_id":"${ID}","last_sync":"${LAST_SYNC}","kubelet":${kubelet}}`;
  const refused = (error: string): string => `workload attestation cannot read pods from the kubelet: ${error}`;
  const rows: Array<[string, KubeletFact, string]> = [
    ['ready after a successful request', { outcome: 'ok', at: AT, error: undefined }, json(true, [], `{"last_request":"ok","at":"${AT_ISO}"}`)],
    [
      'not ready while the kubelet refuses the agent (403: nodes/proxy missing), naming the permission',
      { outcome: 'forbidden', at: AT, error: forbidden },
      json(false, [refused(forbidden)], `{"last_request":"forbidden","at":"${AT_ISO}","error":${JSON.stringify(forbidden)}}`),
    ],
    [
      'not ready while the kubelet rejects the credentials (401)',
      { outcome: 'unauthorized', at: AT, error: unauthorized },
      json(false, [refused(unauthorized)], `{"last_request":"unauthorized","at":"${AT_ISO}","error":${JSON.stringify(unauthorized)}}`),
    ],
    [
      'not ready while the kubelet certificate fails verification',
      { outcome: 'tls_error', at: AT, error: tls },
      json(false, [refused(tls)], `{"last_request":"tls_error","at":"${AT_ISO}","error":${JSON.stringify(tls)}}`),
    ],
    [
      'not ready while the credential files cannot be read',
      { outcome: 'credentials_error', at: AT, error: credentials },
      json(false, [refused(credentials)], `{"last_request":"credentials_error","at":"${AT_ISO}","error":${JSON.stringify(credentials)}}`),
    ],
    [
      'still ready while the kubelet is unreachable (transient), saying so in the body',
      { outcome: 'unreachable', at: AT, error: unreachable },
      json(true, [], `{"last_request":"unreachable","at":"${AT_ISO}","error":${JSON.stringify(unreachable)}}`),
    ],
    ['still ready after a kubelet timeout', { outcome: 'timeout', at: AT, error: timedOut }, json(true, [], `{"last_request":"timeout","at":"${AT_ISO}","error":${JSON.stringify(timedOut)}}`)],
    ['still ready after a kubelet 500', { outcome: 'http_error', at: AT, error: serverError }, json(true, [], `{"last_request":"http_error","at":"${AT_ISO}","error":${JSON.stringify(serverError)}}`)],
  ];
  for (const [name, kubelet, body] of rows) {
    it(name, () => {
      const report = readiness(facts({ kubelet }));
      expect(JSON.stringify(report)).toBe(body);
      expect(liveness(facts({ kubelet })).live).toBe(true);
    });
  }

  it('lists the kubelet refusal after the more fundamental reasons', () => {
    expect(readiness(facts({ synced: false, kubelet: { outcome: 'forbidden', at: AT, error: forbidden } })).reasons).toEqual([
      HEALTH_REASONS.notSynced,
      refused(forbidden),
    ]);
  });

  it('has no kubelet member without the k8s attestor or before its first request', () => {
    expect(JSON.stringify(readiness(facts()))).toBe(`{"ready":true,"reasons":[],"agent_id":"${ID}","last_sync":"${LAST_SYNC}"}`);
  });
});

describe('liveness', () => {
  const rows: Array<[string, Partial<AgentHealthFacts>, string[]]> = [
    ['live when healthy', {}, []],
    ['live before node attestation and sync: a restart would not help', { agentId: undefined, agentSvidExpiresAt: undefined, synced: false, workloadApiServing: false }, []],
    ['live while the server is unreachable and the SVID still valid', { synced: false }, []],
    ['not live once the agent SVID has expired without rotation', { agentSvidExpiresAt: NOW - 1 }, [expired]],
    ['not live while shutting down', { stopping: true }, [HEALTH_REASONS.stopping]],
  ];
  for (const [name, change, reasons] of rows) {
    it(name, () => {
      const f = facts(change);
      expect(liveness(f)).toEqual({
        live: reasons.length === 0,
        reasons,
        agent_id: f.agentId ?? null,
        agent_svid_expires_at: f.agentSvidExpiresAt === undefined ? null : new Date(f.agentSvidExpiresAt).toISOString(),
      });
    });
  }
});

describe('startHealthServer', () => {
  let listener: HttpListener | undefined;
  let current = facts();
  afterEach(async () => {
    await listener?.close();
    listener = undefined;
  });

  async function start(): Promise<string> {
    listener = await startHealthServer({
      config: { bindAddress: '127.0.0.1', bindPort: 0, livePath: '/healthz/live', readyPath: '/healthz/ready' },
      facts: () => current,
      logger: createLogger({ name: 'test', level: 'silent' }),
    });
    return `http://127.0.0.1:${listener.port}`;
  }

  async function get(url: string, method = 'GET'): Promise<[number, string | null, string]> {
    const res = await fetch(url, { method });
    return [res.status, res.headers.get('content-type'), await res.text()];
  }

  it('answers the configured paths with 200 or 500 and a JSON body, evaluated per request', async () => {
    const base = await start();
    current = facts();
    expect(await get(`${base}/healthz/ready`)).toEqual([200, 'application/json', JSON.stringify(readiness(current))]);
    current = facts({ synced: false });
    expect(await get(`${base}/healthz/ready?verbose=1`)).toEqual([
      500,
      'application/json',
      `{"ready":false,"reasons":["agent has not synced with the server yet"],"agent_id":"${ID}","last_sync":"${new Date(NOW - 2_000).toISOString()}"}`,
    ]);
    expect(await get(`${base}/healthz/live`)).toEqual([200, 'application/json', `{"live":true,"reasons":[],"agent_id":"${ID}","agent_svid_expires_at":"${new Date(EXPIRES).toISOString()}"}`]);
    current = facts({ stopping: true });
    expect((await get(`${base}/healthz/live`))[0]).toBe(500);
  });

  it('answers 500 naming the missing kubelet permission while the kubelet refuses the agent, 200 once it answers', async () => {
    const base = await start();
    const error = 'kubelet: GET https://node1:10250/pods returned 403 (Forbidden): Grant it "get" on "nodes/proxy"';
    current = facts({ kubelet: { outcome: 'forbidden', at: NOW, error } });
    expect(await get(`${base}/healthz/ready`)).toEqual([
      500,
      'application/json',
      `{"ready":false,"reasons":["workload attestation cannot read pods from the kubelet: kubelet: GET https://node1:10250/pods returned 403 (Forbidden): Grant it \\"get\\" on \\"nodes/proxy\\""],` +
        `"agent_id":"${ID}","last_sync":"${new Date(NOW - 2_000).toISOString()}","kubelet":{"last_request":"forbidden","at":"${new Date(NOW).toISOString()}","error":${JSON.stringify(error)}}}`,
    ]);
    expect((await get(`${base}/healthz/live`))[0]).toBe(200);
    current = facts({ kubelet: { outcome: 'ok', at: NOW + 1_000, error: undefined } });
    expect(await get(`${base}/healthz/ready`)).toEqual([
      200,
      'application/json',
      `{"ready":true,"reasons":[],"agent_id":"${ID}","last_sync":"${new Date(NOW - 2_000).toISOString()}","kubelet":{"last_request":"ok","at":"${new Date(NOW + 1_000).toISOString()}"}}`,
    ]);
  });

  it('answers HEAD without a body, 405 for other methods and 404 for other paths', async () => {
    const base = await start();
    current = facts();
    const head = await fetch(`${base}/healthz/ready`, { method: 'HEAD' });
    expect([head.status, head.headers.get('content-length'), await head.text()]).toEqual([200, String(JSON.stringify(readiness(current)).length), '']);
    const post = await fetch(`${base}/healthz/ready`, { method: 'POST' });
    expect([post.status, post.headers.get('allow'), await post.text()]).toEqual([405, 'GET, HEAD', '{"error":"method POST not allowed"}']);
    expect(await get(`${base}/live`)).toEqual([404, 'application/json', '{"error":"not found: health is served at /healthz/live and /healthz/ready"}']);
  });

  it('fails to start with a clear error when the port is taken', async () => {
    const base = await start();
    const port = Number(new URL(base).port);
    await expect(
      startHealthServer({
        config: { bindAddress: '127.0.0.1', bindPort: port, livePath: '/live', readyPath: '/ready' },
        facts: () => current,
        logger: createLogger({ name: 'test', level: 'silent' }),
      }),
    ).rejects.toThrow(`health_checks: cannot listen on 127.0.0.1:${port}: EADDRINUSE`);
  });
});
