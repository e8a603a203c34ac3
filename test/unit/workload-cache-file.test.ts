/**
 * The workload cache file format: round trip, and every way a file can be unusable
 * (foreign, other version, truncated anywhere, scribbled, trailing bytes) fails cleanly.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { CACHE_FILE_VERSION, decodeCacheFile, encodeCacheFile, type CacheFileContent } from '../../src/agent/manager/cache-file.ts';

const content: CacheFileContent = {
  writtenAt: Date.UTC(2026, 5, 1, 12, 0, 0, 123),
  trustDomain: 'example.org',
  agentId: 'spiffe://example.org/spire/agent/join_token/abc',
  bundles: [
    { trustDomain: 'example.org', x509: randomBytes(300), jwtKeys: [{ keyId: 'k1', spki: randomBytes(91) }] },
    { trustDomain: 'other.org', x509: randomBytes(250), jwtKeys: [] },
  ],
  svids: [
    {
      entryId: 'entry-1',
      spiffeId: 'spiffe://example.org/wörkload',
      hint: 'internal',
      createdAt: 1_750_000_000,
      revisionNumber: 2 ** 40,
      selectors: [
        { type: 'unix', value: 'uid:1000' },
        { type: 'k8s', value: 'ns:default' },
      ],
      federatesWith: ['other.org'],
      certChain: randomBytes(700),
      privateKey: randomBytes(138),
    },
    {
      entryId: 'entry-2',
      spiffeId: 'spiffe://example.org/b',
      hint: '',
      createdAt: 0,
      revisionNumber: 0,
      selectors: [{ type: 'unix', value: 'uid:0' }],
      federatesWith: [],
      certChain: randomBytes(650),
      privateKey: randomBytes(138),
    },
  ],
};

describe('workload cache file', () => {
  it('decodes what it encodes, field for field', () => {
    const decoded = decodeCacheFile(encodeCacheFile(content));
    expect(decoded).toEqual({ ok: true, value: content });
  });

  it('round-trips an empty cache', () => {
    const empty: CacheFileContent = { ...content, bundles: [], svids: [] };
    expect(decodeCacheFile(encodeCacheFile(empty))).toEqual({ ok: true, value: empty });
  });

  it('copies bytes out of the file buffer (served keys do not pin the whole file)', () => {
    const file = encodeCacheFile(content);
    const decoded = decodeCacheFile(file);
    if (!decoded.ok) throw new Error(decoded.error);
    const key = decoded.value.svids[0]?.privateKey as Buffer;
    const before = Buffer.from(key);
    file.fill(0);
    expect(key.equals(before)).toBe(true);
  });

  const failures: Array<[string, (file: Buffer) => Buffer, RegExp]> = [
    ['an empty file', () => Buffer.alloc(0), /truncated: 0 bytes/],
    ['another kind of file', () => Buffer.from('{"version":1}\n'), /not a workload cache file/],
    ['a file cut inside the header', (f) => f.subarray(0, 20), /truncated: 20 bytes, shorter than the header/],
    ['a file cut inside the payload', (f) => f.subarray(0, f.length - 100), /truncated: the payload is/],
    ['another format version', (f) => {
      const copy = Buffer.from(f);
      copy.writeUInt16BE(CACHE_FILE_VERSION + 1, 8);
      return copy;
    }, new RegExp(`format version ${CACHE_FILE_VERSION + 1} is not the supported version ${CACHE_FILE_VERSION}`)],
    ['a flipped payload byte', (f) => {
      const copy = Buffer.from(f);
      copy[copy.length - 10] = (copy[copy.length - 10] as number) ^ 0x01;
      return copy;
    }, /checksum mismatch/],
    ['a flipped checksum byte', (f) => {
      const copy = Buffer.from(f);
      copy[20] = (copy[20] as number) ^ 0x80;
      return copy;
    }, /checksum mismatch/],
    ['bytes appended', (f) => Buffer.concat([f, Buffer.from([0])]), /truncated: the payload is \d+ bytes, the header says/],
  ];
  for (const [name, damage, error] of failures) {
    it(`refuses ${name}`, () => {
      const decoded = decodeCacheFile(damage(encodeCacheFile(content)));
      expect(decoded.ok).toBe(false);
      if (!decoded.ok) expect(decoded.error).toMatch(error);
    });
  }

  it('refuses the file cut at every length, never throwing', () => {
    const file = encodeCacheFile(content);
    for (let n = 0; n < file.length; n++) expect(decodeCacheFile(file.subarray(0, n)).ok).toBe(false);
  });
});
