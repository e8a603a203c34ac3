import { describe, expect, it } from 'vitest';
import { HpackBudget } from '../../../src/agent/workload-api/hpack-budget.ts';
import { HpackEncoder, type HeaderField } from '../../../src/agent/workload-api/hpack.ts';
import { Http2FrameReader, Http2InboundError, type HeaderBlock } from '../../../src/agent/workload-api/http2-frame-reader.ts';
import { CONNECTION_PREFACE, FrameFlag, FrameType, Http2ErrorCode } from '../../../src/agent/workload-api/http2-frames.ts';
import { frame, SETTINGS } from '../../support/http2-bytes.ts';

const f = (name: string, value: string): HeaderField => ({ name, value, neverIndex: false });
const grpcRequest = (path: string): HeaderField[] => [
  f(':method', 'POST'),
  f(':scheme', 'http'),
  f(':path', path),
  f(':authority', 'localhost'),
  f('content-type', 'application/grpc'),
  f('te', 'trailers'),
  f('user-agent', 'grpc-go/1.75.0'),
  f('workload.spiffe.io', 'true'),
];

/** Runs a reader over `input` in chunks of `chunk` bytes; returns what it reported, or the error. */
function read(input: Buffer, chunk = input.length): { payloadBytes: number; blocks: HeaderBlock[]; error?: Http2InboundError } {
  const blocks: HeaderBlock[] = [];
  let payloadBytes = 0;
  const reader = new Http2FrameReader({
    preface: () => {},
    frame: () => {},
    payload: (_h, piece) => (payloadBytes += piece.length),
    headerBlock: (b) => blocks.push(b),
  });
  try {
    for (let i = 0; i < input.length; i += chunk) reader.push(input.subarray(i, i + chunk));
  } catch (err) {
    return { payloadBytes, blocks, error: err as Http2InboundError };
  }
  return { payloadBytes, blocks };
}

describe('Http2FrameReader', () => {
  it.each([
    { name: 'bytes that are not HTTP/2', input: Buffer.from('GET / HTTP/1.1\r\n\r\n'), code: Http2ErrorCode.PROTOCOL_ERROR, message: 'http2: bad connection preface' },
    {
      name: 'a preface followed by junk',
      input: Buffer.concat([CONNECTION_PREFACE, Buffer.from('\x00\x00\x01junkjunkjunk')]),
      code: Http2ErrorCode.PROTOCOL_ERROR,
      message: 'http2: the connection preface is not followed by a SETTINGS frame',
    },
    {
      name: 'a frame header announcing 16 MiB (refused before any payload)',
      input: Buffer.concat([CONNECTION_PREFACE, SETTINGS, frame(0x0, 0, 1, 0xff_ffff)]),
      code: Http2ErrorCode.FRAME_SIZE_ERROR,
      message: 'http2: frame of 16777215 bytes exceeds SETTINGS_MAX_FRAME_SIZE 16384',
    },
    {
      name: 'a SETTINGS ACK with a payload',
      input: Buffer.concat([CONNECTION_PREFACE, SETTINGS, frame(FrameType.SETTINGS, FrameFlag.ACK, 0, Buffer.alloc(6))]),
      code: Http2ErrorCode.FRAME_SIZE_ERROR,
      message: 'http2: SETTINGS frame of 6 bytes',
    },
    {
      name: 'CONTINUATION without HEADERS',
      input: Buffer.concat([CONNECTION_PREFACE, SETTINGS, frame(FrameType.CONTINUATION, FrameFlag.END_HEADERS, 1, Buffer.alloc(2))]),
      code: Http2ErrorCode.PROTOCOL_ERROR,
      message: 'http2: CONTINUATION without HEADERS',
    },
    {
      name: 'a header block interrupted by another frame',
      input: Buffer.concat([CONNECTION_PREFACE, SETTINGS, frame(FrameType.HEADERS, 0, 1, Buffer.alloc(2)), frame(0x0, 0, 1, Buffer.alloc(1))]),
      code: Http2ErrorCode.PROTOCOL_ERROR,
      message: 'http2: header block interrupted by another frame',
    },
    {
      name: 'a header block over 16 KiB across CONTINUATIONs',
      input: Buffer.concat([
        CONNECTION_PREFACE,
        SETTINGS,
        frame(FrameType.HEADERS, 0, 1, Buffer.alloc(10_000)),
        frame(FrameType.CONTINUATION, FrameFlag.END_HEADERS, 1, Buffer.alloc(10_000)),
      ]),
      code: Http2ErrorCode.ENHANCE_YOUR_CALM,
      message: 'http2: header block over 16384 bytes',
    },
  ])('refuses $name', ({ input, code, message }) => {
    for (const chunk of [input.length, 1]) {
      const { error } = read(input, chunk);
      expect(error).toBeInstanceOf(Http2InboundError);
      expect(error?.errorCode).toBe(code);
      expect(error?.message).toBe(message);
    }
  });

  it('streams DATA payloads and reassembles header blocks at every split point', () => {
    const block = new HpackEncoder().encode(grpcRequest('/SpiffeWorkloadAPI/FetchX509SVID'));
    const input = Buffer.concat([
      CONNECTION_PREFACE,
      SETTINGS,
      frame(FrameType.HEADERS, FrameFlag.PRIORITY, 3, Buffer.concat([Buffer.from([0, 0, 0, 0, 16]), block.subarray(0, 10)])),
      frame(FrameType.CONTINUATION, FrameFlag.END_HEADERS, 3, block.subarray(10)),
      frame(0x0, FrameFlag.END_STREAM, 3, Buffer.alloc(5)),
    ]);
    for (const chunk of [1, 7, input.length]) {
      const { blocks, error, payloadBytes } = read(input, chunk);
      expect(error).toBeUndefined();
      expect(blocks).toHaveLength(1);
      expect(blocks[0]?.block.equals(block)).toBe(true);
      expect(blocks[0]?.priority?.equals(Buffer.from([0, 0, 0, 0, 16]))).toBe(true);
      expect(payloadBytes).toBe(5 + block.length + 5);
    }
  });
});

describe('HpackBudget', () => {
  it('accepts a long gRPC connection: hundreds of requests sharing the dynamic table', () => {
    const encoder = new HpackEncoder();
    const budget = new HpackBudget();
    for (let i = 0; i < 500; i++) budget.charge(encoder.encode(grpcRequest(`/SpiffeWorkloadAPI/Method${i % 7}`)));
  });

  it.each([
    { name: 'a 4000-byte entry referenced 2000 times (HPACK bomb)', block: Buffer.concat([Buffer.from([0x40, 1, 0x78, 0x7f, 0xa1, 0x1e]), Buffer.alloc(4000, 0x76), Buffer.alloc(2000, 0x80 | 62)]), message: 'hpack: header list may decode to more than 65536 bytes' },
    { name: '2000 static references', block: Buffer.alloc(2000, 0x82), message: 'hpack: header block has more than 128 fields' },
    { name: 'a reference to index 0', block: Buffer.from([0x80]), message: 'hpack: index 0' },
    { name: 'a truncated string', block: Buffer.from([0x40, 0x05, 0x61]), message: 'hpack: truncated string literal' },
    { name: 'a table size update above 4096', block: Buffer.from([0x3f, 0xe2, 0x1f]), message: 'hpack: table size update to 4097 exceeds 4096' },
  ])('refuses $name before decoding it', ({ block, message }) => {
    expect(() => new HpackBudget().charge(block)).toThrow(message);
  });
});
