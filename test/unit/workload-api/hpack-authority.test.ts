/**
 * The gate's reader of a first header block's authorities (hpack-authority.ts): the same
 * answers as a full HPACK decode, for hand-made blocks of every representation and for blocks
 * from a real encoder.
 */
import { describe, expect, it } from 'vitest';
import { firstBlockAuthorities } from '../../../src/agent/workload-api/hpack-authority.ts';
import { HpackDecoder, HpackEncoder, type HeaderField } from '../../../src/agent/workload-api/hpack.ts';

const raw = (text: string): Buffer => Buffer.concat([Buffer.from([text.length]), Buffer.from(text, 'latin1')]);
const field = (name: string, value: string, neverIndex = false): HeaderField => ({ name, value, neverIndex });
const SOCKET_PATH = '/run/spire/sockets/agent.sock';

describe('firstBlockAuthorities', () => {
  it.each([
    { name: 'an indexed static :authority (empty value)', block: Buffer.from([0x81]), authorities: [''] },
    { name: 'a literal with indexing, static name, raw value', block: Buffer.concat([Buffer.from([0x41]), raw('localhost')]), authorities: ['localhost'] },
    { name: 'a literal without indexing, literal name', block: Buffer.concat([Buffer.from([0x00]), raw(':authority'), raw(SOCKET_PATH)]), authorities: [SOCKET_PATH] },
    { name: 'a never-indexed host (static name 38)', block: Buffer.concat([Buffer.from([0x1f, 38 - 15]), raw('example.org')]), authorities: ['example.org'] },
    { name: 'no authority at all', block: Buffer.concat([Buffer.from([0x83, 0x86]), Buffer.from([0x44]), raw('/SpiffeWorkloadAPI/FetchX509SVID')]), authorities: [] },
    { name: 'a reference to an entry the block inserted', block: Buffer.concat([Buffer.from([0x41]), raw('a/b'), Buffer.from([0x80 | 62])]), authorities: ['a/b', 'a/b'] },
    { name: 'a reference to an entry inserted before another one', block: Buffer.concat([Buffer.from([0x41]), raw('a/b'), Buffer.from([0x40]), raw('x'), raw('y'), Buffer.from([0x80 | 63])]), authorities: ['a/b', 'a/b'] },
  ])('reads $name', ({ block, authorities }) => {
    expect(firstBlockAuthorities(block)).toEqual(authorities);
  });

  it.each([
    { name: 'a reference to index 0', block: Buffer.from([0x80]), message: 'hpack: index 0' },
    { name: 'a reference past the table', block: Buffer.from([0x80 | 62]), message: 'hpack: index 62 beyond the dynamic table' },
    { name: 'a reference to an entry evicted by a size update', block: Buffer.concat([Buffer.from([0x41]), raw('a'), Buffer.from([0x20, 0x80 | 62])]), message: 'hpack: index 62 beyond the dynamic table' },
    { name: 'a table size update above 4096', block: Buffer.from([0x3f, 0xe2, 0x1f]), message: 'hpack: table size update to 4097 exceeds 4096' },
    { name: 'a truncated authority', block: Buffer.from([0x41, 0x05, 0x61]), message: 'hpack: truncated string literal' },
    { name: 'a Huffman authority padded with zeros (not EOS)', block: Buffer.from([0x41, 0x81, 0x00]), message: /^hpack: / },
  ])('rejects $name', ({ block, message }) => {
    expect(() => firstBlockAuthorities(block)).toThrow(message);
  });

  it('agrees with a full decode of blocks from a real encoder (Huffman, incremental indexing)', () => {
    const cases: HeaderField[][] = [
      [field(':method', 'POST'), field(':scheme', 'http'), field(':path', '/SpiffeWorkloadAPI/FetchX509SVID'), field(':authority', 'localhost'), field('content-type', 'application/grpc'), field('workload.spiffe.io', 'true')],
      [field(':method', 'POST'), field(':authority', SOCKET_PATH), field('te', 'trailers'), field('user-agent', 'grpc-java-netty/1.70.0')],
      [field(':authority', 'a'), field('host', 'b/c'), field(':authority', 'a'), field('x-secret', 'v', true)],
      [field(':method', 'POST'), ...Array.from({ length: 60 }, (_, i) => field(`x-filler-${i}`, 'v'.repeat(90))), field(':authority', 'late/one')],
    ];
    for (const fields of cases) {
      const block = new HpackEncoder().encode(fields);
      const expected = new HpackDecoder().decode(block).filter((f) => f.name === ':authority' || f.name === 'host').map((f) => f.value);
      expect(firstBlockAuthorities(block)).toEqual(expected);
    }
  });
});
