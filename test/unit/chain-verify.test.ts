/**
 * ChainVerifier with certificates made independently (@peculiar/x509): direct and
 * intermediate chains, EC and RSA roots, and every way a chain must fail.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { ChainVerifier } from '../../src/common/chain-verify.ts';
import { HOUR, issueTestLeaf, makeTestCa, type TestCa } from '../support/ca-fixtures.ts';

const der = (pem: string): Buffer => new X509Certificate(pem).raw;
const window = { notBefore: new Date(Date.now() - HOUR), notAfter: new Date(Date.now() + HOUR) };

let root: TestCa;
let rsaRoot: TestCa;
let intermediate: TestCa;
let impostor: TestCa;
let leafOfRoot: Buffer;
let leafOfIntermediate: Buffer;
let leafOfRsa: Buffer;
let leafOfImpostor: Buffer;

beforeAll(async () => {
  root = await makeTestCa({ ...window, name: 'C=US, O=Test, CN=root' });
  rsaRoot = await makeTestCa({ ...window, keyType: 'RSA-2048', name: 'C=US, O=Test, CN=rsa root' });
  intermediate = await makeTestCa({ ...window, name: 'C=US, O=Test, CN=intermediate', issuer: root });
  // Same name as the root, another key: only a signature check tells them apart.
  impostor = await makeTestCa({ ...window, name: 'C=US, O=Test, CN=root' });
  leafOfRoot = der((await issueTestLeaf(root, { cn: 'a', usage: 'client' })).certPem);
  leafOfIntermediate = der((await issueTestLeaf(intermediate, { cn: 'b', usage: 'client' })).certPem);
  leafOfRsa = der((await issueTestLeaf(rsaRoot, { cn: 'c', usage: 'client' })).certPem);
  leafOfImpostor = der((await issueTestLeaf(impostor, { cn: 'd', usage: 'client' })).certPem);
});

describe('ChainVerifier', () => {
  const cases: Array<[string, () => Buffer[], () => Buffer[], boolean]> = [
    ['a leaf signed by a root', () => [leafOfRoot], () => [root.der], true],
    ['a leaf signed by an RSA root', () => [leafOfRsa], () => [root.der, rsaRoot.der], true],
    ['a leaf through an intermediate in its chain', () => [leafOfIntermediate, intermediate.der], () => [root.der], true],
    ['a leaf whose intermediate is missing', () => [leafOfIntermediate], () => [root.der], false],
    ['a leaf of another CA', () => [leafOfRoot], () => [rsaRoot.der], false],
    ['a leaf of a CA with the root’s name but another key', () => [leafOfImpostor], () => [root.der], false],
    ['an empty chain', () => [], () => [root.der], false],
    ['bytes that are not a certificate', () => [Buffer.from('not a certificate')], () => [root.der], false],
    ['no roots', () => [leafOfRoot], () => [], false],
    ['a chain through a non-CA certificate', () => [leafOfRoot, leafOfIntermediate], () => [intermediate.der], false],
  ];
  for (const [name, chain, roots, expected] of cases) {
    it(`${expected ? 'accepts' : 'refuses'} ${name}`, () => {
      expect(new ChainVerifier(roots()).verify(chain())).toBe(expected);
      expect(new ChainVerifier(roots(), { leafSignatures: 'first-per-issuer' }).verify(chain())).toBe(expected);
    });
  }

  it('skips unreadable roots', () => {
    expect(new ChainVerifier([Buffer.from('junk'), root.der]).verify([leafOfRoot])).toBe(true);
  });

  it('remembers a verified intermediate and still checks every leaf signed by it', () => {
    const v = new ChainVerifier([root.der]);
    expect(v.verify([leafOfIntermediate, intermediate.der])).toBe(true);
    expect(v.verify([leafOfIntermediate, intermediate.der])).toBe(true);
    const scribbled = Buffer.from(leafOfIntermediate);
    scribbled[scribbled.length - 5] = (scribbled[scribbled.length - 5] as number) ^ 0x01;
    expect(v.verify([scribbled, intermediate.der])).toBe(false);
  });

  it('with first-per-issuer, still checks the signature of leaves without an authority key ID', () => {
    const v = new ChainVerifier([root.der], { leafSignatures: 'first-per-issuer' });
    expect(v.verify([leafOfRoot])).toBe(true);
    expect(v.verify([leafOfImpostor])).toBe(false); // same issuer name, no key ID to go by
  });
});
