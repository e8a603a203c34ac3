/**
 * The Workload API's JWT RPCs (FetchJWTSVID, ValidateJWTSVID), the WIT profile and the
 * health service, over a real Unix socket with real grpc-js clients.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { Writable } from 'node:stream';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { ApiError, Code } from '../../src/common/errors.ts';
import { HealthClient, WorkloadApiClient } from '../../src/common/proto.ts';
import { createLogger } from '../../src/common/logger.ts';
import type { JWTSVIDResponse__Output } from '../../src/gen/JWTSVIDResponse.ts';
import type { ValidateJWTSVIDResponse__Output } from '../../src/gen/ValidateJWTSVIDResponse.ts';
import {
  FakeIdentitySource,
  first,
  identity,
  securityHeader,
  snapshot,
  startTestWorkloadApi,
  unaryCall as unary,
  type TestWorkloadApi,
} from '../support/workload-api-fixtures.ts';

const TD = 'example.org';
const SELF = `unix:uid:${process.geteuid?.() ?? 0}`;
const NOW = (): number => Math.floor(Date.now() / 1000);
type Pair = { privateKey: KeyObject; publicKey: KeyObject };

let api: TestWorkloadApi;
let source: FakeIdentitySource;
let ownKey: Pair;
let fedKey: Pair;

/** An ES256 JWT with the given claims. */
function token(key: Pair, kid: string, claims: Record<string, unknown>): string {
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg: 'ES256', kid, typ: 'JWT' })}.${b64(claims)}`;
  const signature = sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

function validate(audience: string, svid: string): Promise<ValidateJWTSVIDResponse__Output> {
  return unary<ValidateJWTSVIDResponse__Output>((cb) => api.client.ValidateJWTSVID({ audience, svid }, securityHeader(), cb));
}

beforeEach(async () => {
  ownKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  fedKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  source = new FakeIdentitySource(
    snapshot(TD, {
      x509: new Map([
        [TD, Buffer.from('own-roots')],
        ['fed.org', Buffer.from('fed-roots')],
      ]),
      jwtKeys: new Map([
        [TD, new Map([['own-kid', ownKey.publicKey]])],
        ['fed.org', new Map([['fed-kid', fedKey.publicKey]])],
      ]),
    }),
  );
  api = await startTestWorkloadApi(source, { allowedForeignJwtClaims: ['email'] });
});

afterEach(async () => {
  await api.close();
});

describe('FetchJWTSVID', () => {
  it.each([
    { name: 'no audience', req: { audience: [] }, code: Code.INVALID_ARGUMENT, details: 'audience must be specified' },
    {
      name: 'a malformed spiffe_id',
      req: { audience: ['a'], spiffe_id: 'http://x' },
      code: Code.INVALID_ARGUMENT,
      details: 'invalid requested SPIFFE ID: SPIFFE ID "http://x" must use the spiffe scheme',
    },
    { name: 'no matching entry', req: { audience: ['a'] }, code: Code.PERMISSION_DENIED, details: 'no identity issued' },
  ])('rejects $name', async ({ req, code, details }) => {
    const err = await unary((cb) => api.client.FetchJWTSVID(req, securityHeader(), cb)).catch((e: ServiceError) => e);
    expect(err).toMatchObject({ code, details });
  });

  it('returns hint-filtered tokens ordered by entry ID, optionally narrowed to one SPIFFE ID', async () => {
    source.setJwtSvids(SELF, [
      { entryId: 'e2', spiffeId: `spiffe://${TD}/two`, hint: 'h', createdAt: 5, token: 't2' },
      { entryId: 'e3', spiffeId: `spiffe://${TD}/three`, hint: 'h', createdAt: 9, token: 't3' },
      { entryId: 'e1', spiffeId: `spiffe://${TD}/one`, hint: '', createdAt: 1, token: 't1' },
    ]);
    const all = await unary<JWTSVIDResponse__Output>((cb) => api.client.FetchJWTSVID({ audience: ['aud1', 'aud2'] }, securityHeader(), cb));
    expect(all.svids.map((s) => [s.spiffe_id, s.svid, s.hint])).toEqual([
      [`spiffe://${TD}/one`, 't1', ''],
      [`spiffe://${TD}/two`, 't2', 'h'],
    ]);
    expect(source.jwtCalls.at(-1)).toEqual(['aud1', 'aud2']);
    const one = await unary<JWTSVIDResponse__Output>((cb) =>
      api.client.FetchJWTSVID({ audience: ['aud1'], spiffe_id: `spiffe://${TD}/two` }, securityHeader(), cb),
    );
    expect(one.svids.map((s) => s.svid)).toEqual(['t2']);
  });

  it('sends 5,000 JWT-SVIDs over 4 MiB in one response and warns with the count', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const big = new FakeIdentitySource(snapshot(TD));
    const jwtApi = await startTestWorkloadApi(big, { logger: createLogger({ name: 'test', level: 'warn', destination }) });
    const count = 5_000;
    big.setJwtSvids(
      SELF,
      Array.from({ length: count }, (_, i) => ({ entryId: `e${String(i).padStart(4, '0')}`, spiffeId: `spiffe://${TD}/w${i}`, hint: '', createdAt: 1, token: 'x'.repeat(900) })),
    );
    const client = new WorkloadApiClient(`unix://${jwtApi.socketPath}`, credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
    try {
      const res = await unary<JWTSVIDResponse__Output>((cb) => client.FetchJWTSVID({ audience: ['a'] }, securityHeader(), cb));
      expect(res.svids).toHaveLength(count);
      const err = await unary((cb) => jwtApi.client.FetchJWTSVID({ audience: ['a'] }, securityHeader(), cb)).catch((e: ServiceError) => e);
      expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, details: expect.stringMatching(/^Received message larger than max/) });
    } finally {
      client.close();
      await jwtApi.close();
    }
    expect(lines).toEqual([expect.objectContaining({ level: 'warn', method: 'FetchJWTSVID', caller_pid: process.pid, svids: count })]);
  });

  it('answers Unavailable "could not fetch JWT-SVID: …" when minting fails', async () => {
    source.jwtError = new ApiError(Code.UNAVAILABLE, 'server unreachable');
    const err = await unary((cb) => api.client.FetchJWTSVID({ audience: ['a'] }, securityHeader(), cb)).catch((e: ServiceError) => e);
    expect(err).toMatchObject({ code: Code.UNAVAILABLE, details: 'could not fetch JWT-SVID: server unreachable' });
  });
});

describe('ValidateJWTSVID', () => {
  it.each([
    { name: 'an empty audience', audience: '', svid: 'x', details: 'audience must be specified' },
    { name: 'an empty svid', audience: 'a', svid: '', details: 'svid must be specified' },
  ])('rejects $name with InvalidArgument', async ({ audience, svid, details }) => {
    await expect(validate(audience, svid)).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details });
  });

  it('validates for a caller without any identity and returns the claims with aud as a list, numbers as numbers', async () => {
    const exp = NOW() + 600;
    const res = await validate('aud1', token(ownKey, 'own-kid', { sub: `spiffe://${TD}/w`, aud: 'aud1', exp, custom: { n: 1 } }));
    expect(res.spiffe_id).toBe(`spiffe://${TD}/w`);
    const fields = res.claims?.fields ?? {};
    expect(fields['aud']?.listValue?.values.map((v) => v.stringValue)).toEqual(['aud1']);
    expect(fields['exp']?.numberValue).toBe(exp);
    expect(fields['custom']?.structValue?.fields['n']?.numberValue).toBe(1);
  });

  it('rejects an expired token with InvalidArgument "token has expired"', async () => {
    const svid = token(ownKey, 'own-kid', { sub: `spiffe://${TD}/w`, aud: ['aud1'], exp: NOW() - 120 });
    await expect(validate('aud1', svid)).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: 'token has expired' });
  });

  it('uses a federated trust domain only when the caller federates with it, keeping allowed foreign claims', async () => {
    const svid = token(fedKey, 'fed-kid', { sub: 'spiffe://fed.org/w', aud: ['aud1'], exp: NOW() + 600, email: 'e@x', secret: 's' });
    await expect(validate('aud1', svid)).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: 'no keys found for trust domain "fed.org"' });
    source.setIdentities(SELF, [identity('entry-a', { federatesWith: ['fed.org'] })]);
    const res = await validate('aud1', svid);
    expect(res.spiffe_id).toBe('spiffe://fed.org/w');
    expect(Object.keys(res.claims?.fields ?? {}).sort()).toEqual(['aud', 'email', 'exp', 'sub']);
  });
});

describe('WIT profile and health', () => {
  it.each(['FetchWITSVID', 'FetchWITBundles'] as const)('%s is Unimplemented', async (method) => {
    const err = await first(api.client[method]({}, securityHeader())).catch((e: ServiceError) => e);
    expect(err).toMatchObject({ code: Code.UNIMPLEMENTED });
  });

  it('Health/Check rejects per-service health with InvalidArgument', async () => {
    const health = new HealthClient(`unix://${api.socketPath}`, credentials.createInsecure());
    const err = await unary((cb) => health.Check({ service: 'SpiffeWorkloadAPI' }, cb)).catch((e: ServiceError) => e);
    expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT, details: 'per-service health is not supported' });
    health.close();
  });
});
