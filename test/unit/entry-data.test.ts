import { describe, expect, it } from 'vitest';
import { parseEntryData } from '../../src/server/cli/entry-data.ts';
import { ApiError } from '../../src/common/errors.ts';

function error(text: string): string {
  try {
    parseEntryData(text);
  } catch (err) {
    if (err instanceof ApiError) return err.message;
    throw err;
  }
  throw new Error('expected an error');
}

describe('parseEntryData (spire-server entry create -data)', () => {
  it('reads SPIRE JSON: snake_case keys (any case), entryExpiry, trust domains with or without spiffe://', () => {
    const entries = parseEntryData(
      JSON.stringify({
        entries: [
          {
            selectors: [{ type: 'unix', value: 'uid:1' }],
            spiffe_id: 'spiffe://example.org/a',
            PARENT_ID: 'spiffe://example.org/node',
            x509_svid_ttl: 60,
            jwt_svid_ttl: 30,
            federates_with: ['spiffe://fed.org', 'other.org'],
            entry_id: 'custom',
            admin: true,
            downstream: true,
            entryExpiry: 1893456000,
            dns_names: ['a.example'],
            store_svid: true,
            hint: 'h',
            revision_number: 7,
            unknown_key: 'ignored',
          },
        ],
      }),
    );
    expect(entries).toEqual([
      {
        id: 'custom',
        spiffe_id: { trust_domain: 'example.org', path: '/a' },
        parent_id: { trust_domain: 'example.org', path: '/node' },
        selectors: [{ type: 'unix', value: 'uid:1' }],
        x509_svid_ttl: 60,
        jwt_svid_ttl: 30,
        federates_with: ['fed.org', 'other.org'],
        admin: true,
        downstream: true,
        expires_at: 1893456000,
        dns_names: ['a.example'],
        store_svid: true,
        hint: 'h',
      },
    ]);
  });

  it('takes an empty document as no entries', () => expect(parseEntryData('{}')).toEqual([]));

  const bad: Array<[string, string, string]> = [
    ['not JSON', '{', 'invalid JSON: '],
    ['not an object', '[]', 'expected a JSON object with "entries"'],
    ['entries not a list', '{"entries":{}}', '"entries": expected a list'],
    ['a bad SPIFFE ID', '{"entries":[{"spiffe_id":"x","parent_id":"spiffe://example.org/p"}]}', 'entries[0]: invalid SPIFFE ID: '],
    ['a bad parent ID', '{"entries":[{"spiffe_id":"spiffe://example.org/a"}]}', 'entries[0]: invalid parent ID: '],
    ['a TTL that is not a number', '{"entries":[{"spiffe_id":"spiffe://example.org/a","parent_id":"spiffe://example.org/p","x509_svid_ttl":"60"}]}', 'entries[0].x509_svid_ttl: expected an integer'],
  ];
  for (const [name, text, message] of bad) {
    it(`refuses ${name}`, () => expect(error(text).startsWith(message)).toBe(true));
  }
});
