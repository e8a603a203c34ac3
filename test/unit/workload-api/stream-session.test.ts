import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { ApiError, Code } from '../../../src/common/errors.ts';
import type { EncodedMessage } from '../../../src/agent/workload-api/encode.ts';
import { DEFER_WRITE_FROM_BYTES, StreamRegistry, StreamSession, type StreamEnd } from '../../../src/agent/workload-api/stream-session.ts';

/** A server stream double: records writes (completing them on demand) and error statuses. */
class FakeCall extends EventEmitter {
  readonly written: string[] = [];
  readonly pending: Array<() => void> = [];
  readonly statuses: Array<{ code: number; details: string }> = [];
  constructor() {
    super();
    this.on('error', (status: { code: number; details: string }) => this.statuses.push(status));
  }
  write(bytes: Buffer, cb: () => void): boolean {
    this.written.push(bytes.toString());
    this.pending.push(cb);
    return true;
  }
}

const msg = (text: string): EncodedMessage => Buffer.from(text) as EncodedMessage;

function open(registry = new StreamRegistry()): { call: FakeCall; session: StreamSession; ends: StreamEnd[]; registry: StreamRegistry } {
  const call = new FakeCall();
  const ends: StreamEnd[] = [];
  const session = new StreamSession(call as unknown as ServerWritableStream<unknown, EncodedMessage>, registry, (e) => ends.push(e));
  return { call, session, ends, registry };
}

describe('StreamSession', () => {
  it('keeps only the latest message while a write is in flight', () => {
    const { call, session } = open();
    session.send(msg('1'));
    session.send(msg('2'));
    session.send(msg('3'));
    expect(call.written).toEqual(['1']);
    call.pending.shift()?.();
    expect(call.written).toEqual(['1', '3']);
    call.pending.shift()?.();
    session.send(msg('4'));
    expect(call.written).toEqual(['1', '3', '4']);
  });

  it('writes a message of 1 MiB or more on a later turn, keeping order and the latest-wins rule', async () => {
    const { call, session } = open();
    const big = Buffer.alloc(DEFER_WRITE_FROM_BYTES, 'b') as EncodedMessage;
    session.send(big);
    session.send(msg('2'));
    session.send(msg('3'));
    expect(call.written).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(call.written.map((w) => w.length)).toEqual([DEFER_WRITE_FROM_BYTES]);
    call.pending.shift()?.();
    expect(call.written.slice(1)).toEqual(['3']);
  });

  it('drops a deferred large message when the stream ends before its turn', async () => {
    const { call, session } = open();
    session.send(Buffer.alloc(DEFER_WRITE_FROM_BYTES) as EncodedMessage);
    call.emit('cancelled');
    await new Promise((r) => setImmediate(r));
    expect(call.written).toEqual([]);
  });

  it('ends once with the error status, runs cleanup once, and leaves the registry', () => {
    const { call, session, ends, registry } = open();
    let cleanups = 0;
    session.onEnd(() => (cleanups += 1));
    expect(registry.size).toBe(1);
    session.fail(new ApiError(Code.PERMISSION_DENIED, 'no identity issued'));
    session.fail(new ApiError(Code.UNAVAILABLE, 'again'));
    call.emit('cancelled');
    expect(call.statuses).toEqual([expect.objectContaining({ code: Code.PERMISSION_DENIED, details: 'no identity issued' })]);
    expect(ends).toEqual([{ code: Code.PERMISSION_DENIED, message: 'no identity issued' }]);
    expect(cleanups).toBe(1);
    expect(registry.size).toBe(0);
    expect(session.signal.aborted).toBe(true);
    // One shared reason, not a DOMException (with its stack) per stream.
    expect(session.signal.reason).toEqual(new ApiError(Code.CANCELLED, 'workload api: the stream has ended'));
    const other = open();
    other.call.emit('cancelled');
    expect(other.session.signal.reason).toBe(session.signal.reason);
  });

  it('treats a client cancel as the end (no status written) and stops sending', () => {
    const { call, session, ends } = open();
    call.emit('cancelled');
    session.send(msg('late'));
    expect(call.written).toEqual([]);
    expect(call.statuses).toEqual([]);
    expect(ends).toEqual([{ code: Code.CANCELLED, message: 'cancelled by the client' }]);
  });

  it('records a client cancel as OK once a response reached the transport, Canceled while it is still being written', () => {
    const answered = open();
    answered.session.send(msg('svids'));
    answered.call.pending.shift()?.();
    answered.call.emit('cancelled');
    expect(answered.ends).toEqual([{ code: Code.OK, message: 'cancelled by the client after a response' }]);
    expect(answered.call.statuses).toEqual([]);

    const inFlight = open();
    inFlight.session.send(msg('svids'));
    inFlight.call.emit('cancelled');
    expect(inFlight.ends).toEqual([{ code: Code.CANCELLED, message: 'cancelled by the client' }]);
  });

  it('runs cleanup registered after the end at once', () => {
    const { call, session } = open();
    call.emit('cancelled');
    let ran = false;
    session.onEnd(() => (ran = true));
    expect(ran).toBe(true);
  });
});

describe('StreamRegistry', () => {
  it('ends open streams and every later one with the closing status (never OK)', () => {
    const registry = new StreamRegistry();
    const before = open(registry);
    registry.closeAll(new ApiError(Code.UNAVAILABLE, 'shutting down'));
    const after = open(registry);
    for (const { call } of [before, after]) {
      expect(call.statuses).toEqual([expect.objectContaining({ code: Code.UNAVAILABLE, details: 'shutting down' })]);
    }
    expect(registry.size).toBe(0);
  });
});
