import { beforeAll, describe, expect, it } from 'vitest';
import { createSecretKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';
import { Code } from '../../../src/common/errors.ts';
import { validateJwtSvid, type JwtKeyLookup } from '../../../src/agent/workload-api/validate-jwt.ts';

const NOW_MS = Date.UTC(2026, 0, 1);
const NOW = NOW_MS / 1000;
const TD = 'example.org';
const SUB = `spiffe://${TD}/workload`;

type Pair = { privateKey: KeyObject; publicKey: KeyObject };
let es256: Pair;
let es384: Pair;
let rsa: Pair;
let impostor: Pair;
let foreign: Pair;
let keys: JwtKeyLookup;

beforeAll(() => {
  es256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  es384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  impostor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  foreign = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const own = new Map([
    ['k256', es256.publicKey],
    ['k384', es384.publicKey],
    ['krsa', rsa.publicKey],
  ]);
  // The caller may use its own trust domain only; "fed.org" is known but not federated.
  keys = (td) => (td === TD ? own : undefined);
});

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

function claims(over: Record<string, unknown> = {}): Record<string, unknown> {
  return { sub: SUB, aud: ['aud1'], exp: NOW + 300, iat: NOW - 10, ...over };
}

async function sign(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): Promise<string> {
  return new CompactSign(Buffer.from(JSON.stringify(payload))).setProtectedHeader(header as { alg: string }).sign(key);
}

const es = (payload = claims(), header: Record<string, unknown> = {}): Promise<string> =>
  sign({ alg: 'ES256', kid: 'k256', typ: 'JWT', ...header }, payload, es256.privateKey);

describe('validateJwtSvid', () => {
  it.each([
    { name: 'ES256', token: () => es() },
    { name: 'ES384', token: () => sign({ alg: 'ES384', kid: 'k384' }, claims(), es384.privateKey) },
    { name: 'RS256', token: () => sign({ alg: 'RS256', kid: 'krsa' }, claims(), rsa.privateKey) },
    { name: 'PS512', token: () => sign({ alg: 'PS512', kid: 'krsa', typ: 'JOSE' }, claims(), rsa.privateKey) },
    { name: 'a string aud', token: () => es(claims({ aud: 'aud1' })) },
    { name: 'exp 59 s ago (within the 60 s leeway)', token: () => es(claims({ exp: NOW - 59 })) },
  ])('accepts a good token: $name', async ({ token }) => {
    const result = await validateJwtSvid({ token: await token(), audience: 'aud1', keys, nowMs: NOW_MS });
    expect(result.spiffeId.uri).toBe(SUB);
    expect(result.claims['sub']).toBe(SUB);
  });

  it.each([
    { name: 'the wrong audience', token: () => es(claims({ aud: ['other', 'x'] })), message: 'expected audience in ["aud1"] (audience=["other" "x"])' },
    { name: 'no audience claim', token: () => es(claims({ aud: undefined })), message: 'expected audience in ["aud1"] (audience=[])' },
    { name: 'an expired token', token: () => es(claims({ exp: NOW - 61 })), message: 'token has expired' },
    { name: 'an unknown kid', token: () => es(claims(), { kid: 'nope' }), message: `public key "nope" not found in trust domain "${TD}"` },
    { name: 'alg none', token: async () => `${b64({ alg: 'none', kid: 'k256' })}.${b64(claims())}.`, message: 'unable to parse JWT token: unexpected signature algorithm "none"; expected ["ES256" "ES384" "ES512" "RS256" "RS384" "RS512" "PS256" "PS384" "PS512"]' },
    { name: 'HS256', token: () => sign({ alg: 'HS256', kid: 'k256' }, claims(), createSecretKey(Buffer.alloc(32, 7))), message: /^unable to parse JWT token: unexpected signature algorithm "HS256"/ },
    { name: 'a missing kid', token: () => es(claims(), { kid: undefined }), message: 'token header missing key id' },
    { name: 'an empty kid', token: () => es(claims(), { kid: '' }), message: 'token header missing key id' },
    { name: 'a typ other than JWT or JOSE', token: () => es(claims(), { typ: 'at+jwt' }), message: 'token header type not equal to either JWT or JOSE' },
    { name: 'a non-SPIFFE sub', token: () => es(claims({ sub: 'user@example.org' })), message: 'token has an invalid subject claim: SPIFFE ID "user@example.org" must use the spiffe scheme' },
    { name: 'a missing sub', token: () => es(claims({ sub: undefined })), message: 'token missing subject claim' },
    { name: 'a missing exp', token: () => es(claims({ exp: undefined })), message: 'token missing exp claim' },
    { name: 'a trust domain the caller has no bundle for', token: () => sign({ alg: 'ES256', kid: 'f1' }, claims({ sub: 'spiffe://fed.org/w' }), foreign.privateKey), message: 'no keys found for trust domain "fed.org"' },
    { name: 'a signature by another key with the same kid', token: () => sign({ alg: 'ES256', kid: 'k256' }, claims(), impostor.privateKey), message: 'go-jose/go-jose: error in cryptographic primitive' },
    { name: 'an alg that does not fit the key', token: () => sign({ alg: 'ES384', kid: 'k256' }, claims(), es384.privateKey), message: /^unable to verify token signature: / },
    { name: 'nbf beyond the leeway', token: () => es(claims({ nbf: NOW + 61 })), message: 'token is not valid yet' },
    { name: 'iat beyond the leeway', token: () => es(claims({ iat: NOW + 61 })), message: 'token issued in the future' },
    { name: 'a token that is not a compact JWS', token: async () => 'abc.def', message: 'unable to parse JWT token: go-jose/go-jose: compact JWS format must have three parts' },
  ])('rejects $name with InvalidArgument', async ({ token, message }) => {
    const err = await validateJwtSvid({ token: await token(), audience: 'aud1', keys, nowMs: NOW_MS }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT });
    if (typeof message === 'string') expect((err as Error).message).toBe(message);
    else expect((err as Error).message).toMatch(message);
  });

  it.each([
    { audience: '', svid: 'x', message: 'audience must be specified' },
    { audience: 'a', svid: '', message: 'svid must be specified' },
  ])('requires audience and svid ($message)', async ({ audience, svid, message }) => {
    await expect(validateJwtSvid({ token: svid, audience, keys, nowMs: NOW_MS })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, message });
  });
});
