import { describe, expect, it } from 'vitest';
import { responseClaims, toStruct, toValue } from '../../../src/agent/workload-api/claims-struct.ts';

const policy = { ownTrustDomain: 'example.org', allowedForeignClaims: new Set(['email']) };

describe('responseClaims', () => {
  it.each([
    { name: 'own trust domain keeps every claim, aud string becomes a list', td: 'example.org', claims: { sub: 's', aud: 'a', exp: 5, x: 1 }, out: { sub: 's', aud: ['a'], exp: 5, x: 1 } },
    { name: 'foreign trust domain keeps sub, exp, aud and allowed claims', td: 'fed.org', claims: { sub: 's', aud: ['a'], exp: 5, iat: 1, email: 'e', x: 1 }, out: { sub: 's', aud: ['a'], exp: 5, email: 'e' } },
  ])('$name', ({ td, claims, out }) => {
    expect(responseClaims(claims, td, policy)).toEqual(out);
  });
});

describe('toStruct', () => {
  it('maps JSON values to google.protobuf.Value kinds (numbers stay numbers)', () => {
    expect(toStruct({ n: 1.5, s: 'x', b: true, z: null, l: ['a', 2], o: { k: 'v' } })).toEqual({
      fields: {
        n: { numberValue: 1.5, kind: 'numberValue' },
        s: { stringValue: 'x', kind: 'stringValue' },
        b: { boolValue: true, kind: 'boolValue' },
        z: { nullValue: 'NULL_VALUE', kind: 'nullValue' },
        l: { listValue: { values: [toValue('a'), toValue(2)] }, kind: 'listValue' },
        o: { structValue: { fields: { k: { stringValue: 'v', kind: 'stringValue' } } }, kind: 'structValue' },
      },
    });
  });
});
