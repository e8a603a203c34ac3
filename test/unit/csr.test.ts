import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { createPublicKey } from 'node:crypto';
import { parseAndVerifyCsr } from '../../src/server/ca/index.ts';
import { newKeyAndCsr } from '../../src/common/csr.ts';

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
