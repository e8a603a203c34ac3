/**
 * The server process with SPIRE's settings for the AWS STS flow (`ca_key_type = "rsa-2048"`,
 * `jwt_issuer`): agents get RSA-signed X509-SVIDs from an RSA CA, and NewJWTSVID mints RS256
 * tokens with the `iss` claim, verifiable with the JWT authorities of GetBundle.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { generateJoinToken, readBundlePem, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { connectToServer, type ServerClients } from '../../src/agent/server-client/connection.ts';
import { attestAgent } from '../../src/agent/server-client/attest.ts';
import { newKeyAndCsr } from '../../src/common/csr.ts';
import { certificatesToPem, decodePemCertificates } from '../../src/common/pem.ts';
import { unaryCall } from '../../src/common/grpc-client.ts';

const TD = 'example.org';
const ISSUER = 'https://oidc.example.org';

let server: ServerHandle;
const opened: ServerClients[] = [];

beforeAll(async () => {
  server = await startServerProcess({ trustDomain: TD, serverBlock: `  ca_key_type = "rsa-2048"\n  jwt_issuer = "${ISSUER}"` });
});

afterAll(async () => {
  for (const c of opened) c.close();
  await server?.cleanup();
});

describe('server with ca_key_type rsa-2048 and jwt_issuer', () => {
  it('signs agent SVIDs with an RSA CA and JWT-SVIDs RS256 with iss', async () => {
    const rootsPem = await readBundlePem(server);
    const [root] = decodePemCertificates(rootsPem);
    const rootKey = new X509Certificate(root!).publicKey;
    expect({ type: rootKey.asymmetricKeyType, bits: rootKey.asymmetricKeyDetails?.modulusLength }).toEqual({ type: 'rsa', bits: 2048 });

    const address = `127.0.0.1:${server.port}`;
    const anonymous = connectToServer({ address, trustDomain: TD, rootsPem });
    opened.push(anonymous);
    const { privateKey, csr } = newKeyAndCsr();
    const attested = await attestAgent(anonymous.agent, { type: 'join_token', payload: Buffer.from(await generateJoinToken(server)), csr });
    expect(new X509Certificate(attested.certChain[0]!).verify(rootKey)).toBe(true);
    const agent = connectToServer({
      address,
      trustDomain: TD,
      rootsPem,
      identity: { certChainPem: certificatesToPem(attested.certChain), keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() },
    });
    opened.push(agent);

    const created = await server.cli('entry', 'create', '-spiffeID', `spiffe://${TD}/workload`, '-parentID', attested.spiffeId, '-selector', 'unix:uid:1000');
    const entryId = /Entry ID\s+: (\S+)/.exec(created.stdout)?.[1] as string;
    const res = await unaryCall(agent.svid, 'NewJWTSVID', { entry_id: entryId, audience: ['sts.amazonaws.com'] });
    const token = res.svid?.token as string;
    const claims = decodeJwt(token);
    expect(claims).toEqual({ aud: ['sts.amazonaws.com'], exp: claims.iat! + 300, iat: claims.iat, iss: ISSUER, sub: `spiffe://${TD}/workload` });

    const bundle = await unaryCall(anonymous.bundle, 'GetBundle', {});
    const keys: JWK[] = bundle.jwt_authorities.map((k) => ({
      ...createPublicKey({ key: k.public_key, format: 'der', type: 'spki' }).export({ format: 'jwk' }),
      kid: k.key_id,
    }));
    expect(keys.map((k) => k.kty)).toEqual(['RSA']);
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', kid: keys[0]!.kid, typ: 'JWT' });
    const { payload } = await jwtVerify(token, createLocalJWKSet({ keys }), { audience: 'sts.amazonaws.com', issuer: ISSUER, algorithms: ['RS256'] });
    expect(payload.sub).toBe(`spiffe://${TD}/workload`);
  });
});
