import { describe, expect, it } from 'vitest';
import { MessageFraming } from '../../src/agent/workload-api/request-budget.ts';

/** A gRPC message: flag 0, 4-byte big-endian length, `body` bytes. */
const message = (body: number): Buffer => {
  const b = Buffer.alloc(5 + body);
  b.writeUInt32BE(body, 1);
  return b;
};

describe('MessageFraming', () => {
  it.each([
    { name: 'a whole message in one chunk holds nothing after it', chunks: [message(10)], deltas: [0], held: 0 },
    { name: 'an empty message completes with its prefix', chunks: [message(0)], deltas: [0], held: 0 },
    { name: 'a message split in its body holds what arrived', chunks: [message(10).subarray(0, 8), message(10).subarray(8)], deltas: [8, -8], held: 0 },
    { name: 'a message split inside its prefix', chunks: [message(300).subarray(0, 3), message(300).subarray(3, 100), message(300).subarray(100)], deltas: [3, 97, -100], held: 0 },
    { name: 'two messages and half a third in one chunk hold only the third', chunks: [Buffer.concat([message(4), message(6), message(20).subarray(0, 9)])], deltas: [9], held: 9 },
    { name: 'a large declared length counts only bytes received', chunks: [message(1024 * 1024).subarray(0, 4096)], deltas: [4096], held: 4096 },
  ])('$name', ({ chunks, deltas, held }) => {
    const framing = new MessageFraming();
    expect(chunks.map((c) => framing.feed(c))).toEqual(deltas);
    expect(framing.held).toBe(held);
  });
});
