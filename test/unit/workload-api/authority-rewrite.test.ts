import { describe, expect, it } from 'vitest';
import { HpackDecoder, HpackEncoder, type HeaderField } from '../../../src/agent/workload-api/hpack.ts';
import {
  CONNECTION_PREFACE,
  encodeHeaderBlock,
  FrameFlag,
  FrameType,
  parseHeadersPayload,
  readFrameHeader,
} from '../../../src/agent/workload-api/http2-frames.ts';
import { InboundHeaderRewriter, isAcceptableAuthority } from '../../../src/agent/workload-api/authority-rewrite.ts';

const f = (name: string, value: string): HeaderField => ({ name, value, neverIndex: false });
const request = (authority: string): HeaderField[] => [f(':method', 'POST'), f(':scheme', 'http'), f(':path', '/SpiffeWorkloadAPI/FetchX509SVID'), f(':authority', authority), f('workload.spiffe.io', 'true')];
const frame = (type: number, flags: number, streamId: number, payload: Buffer): Buffer => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
};
const settingsAck = frame(0x4, 0x1, 0, Buffer.alloc(0));

/** Splits the server-side output back into decoded header blocks (tracking the rewriter's encoder table). */
function decodeOutput(out: Buffer): { streamId: number; flags: number; fields: HeaderField[] }[] {
  const decoder = new HpackDecoder();
  const blocks: { streamId: number; flags: number; fields: HeaderField[] }[] = [];
  let offset = CONNECTION_PREFACE.length;
  expect(out.subarray(0, offset).equals(CONNECTION_PREFACE)).toBe(true);
  while (offset < out.length) {
    const h = readFrameHeader(out, offset)!;
    const payload = out.subarray(offset + 9, offset + 9 + h.length);
    offset += 9 + h.length;
    if (h.type === FrameType.HEADERS) {
      expect(h.flags & FrameFlag.END_HEADERS).toBe(FrameFlag.END_HEADERS);
      blocks.push({ streamId: h.streamId, flags: h.flags, fields: decoder.decode(parseHeadersPayload(h.flags, payload).fragment) });
    }
  }
  return blocks;
}

describe('isAcceptableAuthority', () => {
  it.each([
    ['localhost', true],
    ['%2Ftmp%2Fagent.sock', true],
    ['[::1]:8080', true],
    ['/tmp/x/agent.sock', false],
    ['a b', false],
  ])('%s → %s', (value, ok) => expect(isAcceptableAuthority(value)).toBe(ok));
});

describe('InboundHeaderRewriter', () => {
  it('rewrites a bad authority across two blocks sharing the dynamic table (Huffman, CONTINUATION, padding, priority)', () => {
    const client = new HpackEncoder();
    const block1 = client.encode(request('/tmp/x/agent.sock'));
    const block2 = client.encode(request('/tmp/x/agent.sock')); // indexed references to block1's entries
    expect(block2.length).toBeLessThan(block1.length);
    const padded = Buffer.concat([Buffer.from([3]), Buffer.from([0, 0, 0, 0, 16]), block1.subarray(0, 4), Buffer.alloc(3)]);
    const input = Buffer.concat([
      CONNECTION_PREFACE,
      frame(0x4, 0, 0, Buffer.alloc(0)),
      frame(FrameType.HEADERS, FrameFlag.PADDED | FrameFlag.PRIORITY, 1, padded),
      frame(FrameType.CONTINUATION, FrameFlag.END_HEADERS, 1, block1.subarray(4)),
      settingsAck,
      frame(FrameType.HEADERS, FrameFlag.END_HEADERS | FrameFlag.END_STREAM, 3, block2),
    ]);
    const rewriter = new InboundHeaderRewriter();
    // Byte by byte: every split point of every frame.
    const out = Buffer.concat([...input].flatMap((b) => rewriter.push(Buffer.from([b]))));
    const blocks = decodeOutput(out);
    expect(blocks.map((b) => b.streamId)).toEqual([1, 3]);
    expect(blocks[0]!.flags & FrameFlag.PRIORITY).toBe(FrameFlag.PRIORITY);
    expect(blocks[1]!.flags & FrameFlag.END_STREAM).toBe(FrameFlag.END_STREAM);
    for (const b of blocks) expect(b.fields).toEqual(request('localhost'));
    // Every other frame passes through untouched (the ACK included: the gate removes its own).
    expect(out.includes(settingsAck)).toBe(true);
  });

  it('passes a large DATA frame through piece by piece without holding it', () => {
    const rewriter = new InboundHeaderRewriter();
    const data = frame(0x0, 0, 1, Buffer.alloc(16_000, 7));
    const start = rewriter.push(Buffer.concat([CONNECTION_PREFACE, frame(0x4, 0, 0, Buffer.alloc(0)), data.subarray(0, 109)]));
    expect(Buffer.concat(start).length).toBe(CONNECTION_PREFACE.length + 9 + 109);
    expect(rewriter.push(data.subarray(109, 5_000))).toEqual([data.subarray(109, 5_000)]);
  });

  it('refuses a header block that would decode to too much (an HPACK bomb) before decoding it', () => {
    const rewriter = new InboundHeaderRewriter();
    const entry = Buffer.concat([Buffer.from([0x40, 1, 0x78, 0x7f, 0xa1, 0x1e]) /* new name "x", a 4000-byte raw value */, Buffer.alloc(4000, 0x76)]);
    const block = Buffer.concat([entry, Buffer.alloc(2000, 0x80 | 62)]);
    const input = Buffer.concat([CONNECTION_PREFACE, frame(0x4, 0, 0, Buffer.alloc(0)), frame(FrameType.HEADERS, FrameFlag.END_HEADERS, 1, block)]);
    expect(() => rewriter.push(input)).toThrow(/header list may decode to more than 65536 bytes/);
  });

  it('splits a re-encoded block over 16384 bytes into HEADERS + CONTINUATION', () => {
    const big = [...request('/x'), f('x-big', 'z'.repeat(40_000))];
    const out = encodeHeaderBlock({ streamId: 5, endStream: false, priority: undefined, block: new HpackEncoder().encode(big) });
    const first = readFrameHeader(out)!;
    expect(first.length).toBe(16_384);
    expect(first.flags & FrameFlag.END_HEADERS).toBe(0);
  });

  it('throws on CONTINUATION without HEADERS', () => {
    const input = Buffer.concat([CONNECTION_PREFACE, frame(0x4, 0, 0, Buffer.alloc(0)), frame(FrameType.CONTINUATION, 4, 1, Buffer.alloc(1))]);
    expect(() => new InboundHeaderRewriter().push(input)).toThrow('http2: CONTINUATION without HEADERS');
  });
});
