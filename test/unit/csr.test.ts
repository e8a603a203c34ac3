import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { parseAndVerifyCsr } from '../../src/server/ca/index.ts';
import { createCsrWithSans, newKeyAndCsr } from '../../src/common/csr.ts';
import { decodeName, encodeName } from '../../src/server/ca/x509-name.ts';

describe('newKeyAndCsr', () => {
  it('builds a CSR the server verifies, carrying the URI SAN', () => {
    const { privateKey, csr } = newKeyAndCsr('spiffe://example.org/workload');
    const parsed = parseAndVerifyCsr(csr);
    expect(parsed.uris).toEqual(['spiffe://example.org/workload']);
    expect(parsed.spkiDer.equals(createPublicKey(privateKey).export({ format: 'der', type: 'spki' }))).toBe(true);
  });
  it('builds a CSR without SANs for an agent that does not know its ID yet', () => {
    const parsed = parseAndVerifyCsr(newKeyAndCsr().csr);
    expect(parsed.uris).toEqual([]);
  });
  it('uses a fresh key every time', () => {
    const a = newKeyAndCsr();
    const b = newKeyAndCsr();
    expect(a.csr.equals(b.csr)).toBe(false);
  });
});

describe('createCsrWithSans', () => {
  it('carries the URI and DNS SANs, with an empty subject when asked (as spire-server x509 mint sends)', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const parsed = parseAndVerifyCsr(createCsrWithSans(privateKey, publicKey, { uris: ['spiffe://example.org/w'], dnsNames: ['a.example.org', '*.b.example.org'], emptySubject: true }));
    expect([parsed.uris, parsed.dnsNames, decodeName(parsed.subjectDer)]).toEqual([['spiffe://example.org/w'], ['a.example.org', '*.b.example.org'], {}]);
    const plain = parseAndVerifyCsr(createCsrWithSans(privateKey, publicKey, {}));
    expect([plain.uris, plain.dnsNames, decodeName(plain.subjectDer)]).toEqual([[], [], { country: ['US'], organization: ['SPIRE'] }]);
  });
});

describe('decodeName', () => {
  it('reads back what encodeName writes, keeping the last CN and serialNumber', () => {
    const name = { country: ['US'], province: ['CA'], locality: ['SF'], organization: ['A', 'B'], organizationalUnit: ['ü unit'], commonName: 'cn', serialNumber: '42' };
    expect(decodeName(encodeName(name))).toEqual(name);
  });
});
