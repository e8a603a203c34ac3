/**
 * SPIRE's `oidc-discovery-provider` v1.13.3 polling our agent's Workload API socket
 * (`workload_api { socket_path, trust_domain, poll_interval }`): the discovery document and
 * `/keys` are served, `/keys` equals our agent's FetchJWTBundles for the trust domain, and it
 * still serves after 1,000 polls. Each poll is go-spiffe's FetchJWTBundles: a stream opened and
 * cancelled on one long-lived connection, the pattern that trips nghttp2's reset-rate limit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateJoinToken, freePort, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { eventually } from '../support/eventually.ts';
import { startOidcProvider, type OidcProviderHandle } from './support/spire-processes.ts';
import { workloadClient } from '../support/workload-api-fixtures.ts';
import { fetchJwtBundles } from './support/workload.ts';
import type { WorkloadApiClient } from '../../src/common/proto.ts';

const TD = 'example.org';
const UID = process.getuid?.() ?? 0;
const POLLS = 1_000;

let server: ServerHandle;
let agent: AgentHandle;
let provider: OidcProviderHandle;
let client: WorkloadApiClient;
let metricsPort: number;
/** FetchJWTBundles calls finished before the provider started (this test's own). */
let before: Record<string, number>;

/** FetchJWTBundles calls our agent has finished, by status, from its Prometheus endpoint. */
async function jwtBundleCalls(): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const byStatus: Record<string, number> = {};
  for (const m of text.matchAll(/^spiffe_agent_workload_api_rpcs_total\{([^}]*)\} (\d+)$/gm)) {
    const labels = m[1] as string;
    if (!labels.includes('method="FetchJWTBundles"')) continue;
    const status = /status="([^"]+)"/.exec(labels)?.[1] ?? '?';
    byStatus[status] = (byStatus[status] ?? 0) + Number(m[2]);
  }
  return byStatus;
}

const total = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);

/** `after` minus `earlier`, by status (zero counts left out). */
function since(after: Record<string, number>, earlier: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (earlier[k] ?? 0)]).filter(([, v]) => v !== 0));
}

/** What the provider serves for a JWKS: the same keys, each with the `alg` it derives from the key. */
function withAlg(jwks: { keys: Record<string, unknown>[] }): { keys: Record<string, unknown>[] } {
  const algOf = (k: Record<string, unknown>): string => (k['kty'] === 'RSA' ? 'RS256' : k['crv'] === 'P-384' ? 'ES384' : 'ES256');
  return { keys: jwks.keys.map((k) => ({ ...k, alg: algOf(k) })) };
}

async function getJson(path: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${provider.url}${path}`);
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  const t0 = performance.now();
  const mark = (what: string): void => console.log(`${what} after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  server = await startServerProcess({ trustDomain: TD });
  const token = await generateJoinToken(server);
  metricsPort = await freePort();
  agent = await startAgentProcess({
    server,
    joinToken: token,
    extraTopLevel: `telemetry {\n  Prometheus {\n    host = "127.0.0.1"\n    port = ${metricsPort}\n  }\n}`,
  });
  // The provider runs as this uid: an entry gives it an identity, which FetchJWTBundles needs.
  const created = await server.cli(
    'entry', 'create', '-parentID', `spiffe://${TD}/spire/agent/join_token/${token}`, '-spiffeID', `spiffe://${TD}/oidc-provider`, '-selector', `unix:uid:${UID}`,
  );
  if (created.code !== 0) throw new Error(`entry create: ${created.stdout}${created.stderr}`);
  mark('server and agent started, entry created');
  client = workloadClient(agent.socketPath);
  await eventually(() => fetchJwtBundles(client), 20_000);
  mark('the entry is served');
  before = await jwtBundleCalls();
  provider = await startOidcProvider({ workloadSocketPath: agent.socketPath, trustDomain: TD, pollInterval: '10ms' });
  mark('oidc-discovery-provider serving');
});

afterAll(async () => {
  client?.close();
  await provider?.cleanup();
  await agent?.cleanup();
  await server?.cleanup();
});

describe('oidc-discovery-provider polling our agent', () => {
  it('serves /.well-known/openid-configuration naming its /keys', async () => {
    const doc = await getJson('/.well-known/openid-configuration');
    expect(doc.status).toBe(200);
    expect(doc.body).toMatchObject({
      issuer: provider.url,
      jwks_uri: `${provider.url}/keys`,
      response_types_supported: ['id_token'],
      id_token_signing_alg_values_supported: expect.arrayContaining(['ES256']),
    });
  });

  it("serves /keys equal to our agent's FetchJWTBundles for the trust domain (plus the alg the provider adds)", async () => {
    const ours = JSON.parse((await fetchJwtBundles(client))[`spiffe://${TD}`] as string) as { keys: Record<string, unknown>[] };
    expect(ours.keys.length).toBeGreaterThan(0);
    expect(ours.keys.every((k) => typeof k['kid'] === 'string' && k['alg'] === undefined && k['use'] === undefined)).toBe(true);
    const keys = await getJson('/keys');
    expect(keys.status).toBe(200);
    expect(keys.body).toEqual(withAlg(ours));
  });

  it(`still serves after ${POLLS} polls, none failed`, async () => {
    const started = performance.now();
    const counts = await eventually(async () => {
      const c = since(await jwtBundleCalls(), before);
      if (total(c) < POLLS) throw new Error(`${total(c)} FetchJWTBundles calls so far: ${JSON.stringify(c)}`);
      return c;
    }, 90_000, 500);
    console.log(`oidc-discovery-provider: ${total(counts)} FetchJWTBundles polls in ${((performance.now() - started) / 1000).toFixed(1)} s; by status ${JSON.stringify(counts)}`);
    // go-spiffe cancels each stream after its first message: Canceled (or OK) is every poll's end.
    expect(Object.keys(counts).filter((s) => s !== 'Canceled' && s !== 'OK')).toEqual([]);
    const keys = await getJson('/keys');
    expect(keys.status).toBe(200);
    expect(keys.body).toEqual(withAlg(JSON.parse((await fetchJwtBundles(client))[`spiffe://${TD}`] as string) as { keys: Record<string, unknown>[] }));
    // A failed poll is logged by the provider as a warning ("Failed to fetch JWKS from the
    // Workload API"); the only warning expected is the one about serving plain HTTP.
    const warnings = provider.logs().split('\n').filter((l) => /level=(warning|error|fatal)/.test(l));
    expect(warnings.map((l) => /msg="([^"]*)"/.exec(l)?.[1])).toEqual(['Serving HTTP (insecure)']);
    expect(agent.child?.exitCode).toBeNull();
  });
});
