/**
 * The AWS STS web-identity flow on one machine: our server (`ca_key_type = "rsa-2048"`,
 * `jwt_issuer` = the discovery provider's URL) → our agent → SPIRE's `oidc-discovery-provider`
 * v1.13.3 polling our agent's socket → a verifier that does what STS does with a web identity
 * token: take the token's `iss`, require it to be the registered provider, fetch
 * `<iss>/.well-known/openid-configuration` over HTTP, require its `issuer` to equal `iss`, follow
 * `jwks_uri`, and check the signature, `aud`, `sub` and `exp` of a JWT-SVID from our agent.
 */
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { generateJoinToken, freePort, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { eventually } from '../support/eventually.ts';
import { startOidcProvider, type OidcProviderHandle } from './support/spire-processes.ts';
import { securityHeader, workloadClient } from '../support/workload-api-fixtures.ts';
import type { WorkloadApiClient } from '../../src/common/proto.ts';

const TD = 'example.org';
const UID = process.getuid?.() ?? 0;
const WORKLOAD = `spiffe://${TD}/aws/s3-reader`;
const STS_AUDIENCE = 'sts.amazonaws.com';

let server: ServerHandle;
let agent: AgentHandle;
let provider: OidcProviderHandle;
let client: WorkloadApiClient;
/** The discovery provider's URL, which is also the server's jwt_issuer (the "registered IdP"). */
let issuer: string;

/** A JWT-SVID for WORKLOAD from our agent's FetchJWTSVID. */
function fetchJwtSvid(audience: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    client.FetchJWTSVID({ audience, spiffe_id: WORKLOAD }, securityHeader(), (err: ServiceError | null, res) =>
      err !== null ? reject(err) : resolve(res?.svids[0]?.svid ?? '')),
  );
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res.json();
}

/**
 * What STS checks of a web identity token, in its order: the issuer is a registered provider,
 * its discovery document names the same issuer, the signature verifies with a key from its
 * `jwks_uri`, the audience is the client ID, and the token is current at `now`.
 */
async function stsVerify(token: string, registered: { url: string; clientId: string }, now: Date): Promise<JWTPayload> {
  const iss = decodeJwt(token).iss;
  if (iss !== registered.url) throw new Error(`sts: no OpenIDConnect provider found for issuer ${JSON.stringify(iss)}`);
  const doc = (await getJson(`${iss}/.well-known/openid-configuration`)) as { issuer: string; jwks_uri: string };
  if (doc.issuer !== iss) throw new Error(`sts: discovery document issuer ${doc.issuer} is not ${iss}`);
  const jwks = (await getJson(doc.jwks_uri)) as JSONWebKeySet;
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: iss,
    audience: registered.clientId,
    algorithms: ['RS256'],
    currentDate: now,
    requiredClaims: ['sub', 'exp'],
  });
  return payload;
}

beforeAll(async () => {
  const t0 = performance.now();
  const mark = (what: string): void => console.log(`${what} after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const providerPort = await freePort();
  issuer = `http://127.0.0.1:${providerPort}`;
  server = await startServerProcess({ trustDomain: TD, serverBlock: `  ca_key_type = "rsa-2048"\n  jwt_issuer = "${issuer}"` });
  const token = await generateJoinToken(server);
  agent = await startAgentProcess({ server, joinToken: token });
  const created = await server.cli(
    'entry', 'create', '-parentID', `spiffe://${TD}/spire/agent/join_token/${token}`, '-spiffeID', WORKLOAD, '-selector', `unix:uid:${UID}`,
  );
  if (created.code !== 0) throw new Error(`entry create: ${created.stdout}${created.stderr}`);
  client = workloadClient(agent.socketPath);
  await eventually(() => fetchJwtSvid([STS_AUDIENCE]), 20_000);
  mark('server and agent started, the workload has a JWT-SVID');
  provider = await startOidcProvider({ workloadSocketPath: agent.socketPath, trustDomain: TD, pollInterval: '1s', port: providerPort });
  mark('oidc-discovery-provider serving');
});

afterAll(async () => {
  client?.close();
  await provider?.cleanup();
  await agent?.cleanup();
  await server?.cleanup();
});

describe('AWS STS web identity flow: our server + our agent + oidc-discovery-provider', () => {
  it('serves a discovery document whose issuer is the server jwt_issuer and whose keys are RSA', async () => {
    expect(provider.url).toBe(issuer);
    const doc = await getJson(`${issuer}/.well-known/openid-configuration`);
    expect(doc).toMatchObject({ issuer, jwks_uri: `${issuer}/keys`, id_token_signing_alg_values_supported: expect.arrayContaining(['RS256']) });
    const jwks = (await getJson(`${issuer}/keys`)) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys.map((k) => [k['kty'], k['alg']])).toEqual([['RSA', 'RS256']]);
  });

  it('a JWT-SVID from our agent passes the STS checks: iss, aud, sub, exp and the signature', async () => {
    const token = await fetchJwtSvid([STS_AUDIENCE]);
    const jwks = (await getJson(`${issuer}/keys`)) as { keys: Array<Record<string, unknown>> };
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', kid: jwks.keys[0]!['kid'], typ: 'JWT' });
    const now = new Date();
    const payload = await stsVerify(token, { url: issuer, clientId: STS_AUDIENCE }, now);
    expect(payload).toEqual({ aud: [STS_AUDIENCE], exp: payload.iat! + 300, iat: payload.iat, iss: issuer, sub: WORKLOAD });
    expect(payload.exp! * 1000).toBeGreaterThan(now.getTime());
  });

  it('the same verifier refuses another audience, an expired token, and a token of another issuer', async () => {
    const registered = { url: issuer, clientId: STS_AUDIENCE };
    const other = await fetchJwtSvid(['other-audience']);
    await expect(stsVerify(other, registered, new Date())).rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' });
    const token = await fetchJwtSvid([STS_AUDIENCE]);
    const later = new Date((decodeJwt(token).exp! + 1) * 1000);
    await expect(stsVerify(token, registered, later)).rejects.toBeInstanceOf(errors.JWTExpired);
    await expect(stsVerify(token, { url: 'https://oidc.example.org', clientId: STS_AUDIENCE }, new Date())).rejects.toThrow(
      `sts: no OpenIDConnect provider found for issuer "${issuer}"`,
    );
  });
});
