import { afterEach, describe, expect, it } from 'vitest';
import { HEALTH_REASONS, liveness, readiness, type AgentHealthFacts } from '../../src/agent/health/health-report.ts';
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
