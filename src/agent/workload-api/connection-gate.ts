/**
 * The gate every accepted connection passes before HTTP/2 starts: it holds a bounded amount
 * of the client's first bytes, refuses what is not a well-formed HTTP/2 client start, closes
 * connections that send no request in time, and then hands grpc-js either the raw socket
 * (every normal client) or a repaired connection for clients whose `:authority` Node would
 * reject (grpc-java/java-spiffe sends the socket path; see authority-rewrite.ts).
 *
 * How: at accept the agent sends an empty SETTINGS frame itself (a valid server preface
 * announcing defaults), because many clients (grpc-go, grpc-js) send no request before they
 * have the server's preface, and the HTTP/2 server can only start once we have chosen. The
 * client's bytes are read through {@link Http2FrameReader} (frame sizes checked at each frame
 * header, SETTINGS first, header blocks bounded) until both its first header block and its
 * acknowledgement of our SETTINGS have arrived. The acknowledgement is removed (nghttp2 never
 * sent that frame and would treat the ACK as a protocol error); its own SETTINGS follow once
 * it starts, and clients accept several SETTINGS frames. An acceptable authority puts the
 * held bytes back (`unshift`) and injects the raw socket: nothing is in the path afterwards.
 *
 * Bounds (why: the socket is open to every local user, and nothing about the caller is known
 * yet): at most {@link MAX_GATE_BYTES} read before the first header block (and at most one
 * initial flow-control window more until the acknowledgement), a decision within
 * `firstRequestDeadlineMs` of accept, the first header block's decoding cost bounded before it
 * is decoded (hpack-budget.ts). Every refusal writes a GOAWAY and destroys the socket at once.
 *
 * Why a socketpair for repaired connections rather than a JS Duplex: Node wraps a non-native
 * stream in a JSStreamSocket whose `remoteAddress` cannot be set from outside, and
 * `call.getPeer()` reads exactly that property to find the caller's credentials. A real
 * socket (one end of a socketpair, the other relayed to the client) keeps the override
 * working through public API, and keeps nghttp2 on a native stream.
 */
import { Socket } from 'node:net';
import type { Logger } from '../../common/logger.ts';
import { firstBlockNeedsRewrite, InboundHeaderRewriter } from './authority-rewrite.ts';
import { Http2FrameReader, Http2InboundError, type HeaderBlock } from './http2-frame-reader.ts';
import { EMPTY_SETTINGS_FRAME, goawayFrame, Http2ErrorCode, isSettingsAck } from './http2-frames.ts';
import { unixSocketPair } from './libc.ts';

/** How long a connection may take to send its first request (header block) after accept. */
export const DEFAULT_FIRST_REQUEST_DEADLINE_MS = 10_000;
/** Bytes read from a client before its first request's headers; a real client needs under 1 KiB. */
export const MAX_GATE_BYTES = 32 * 1024;
/**
 * What a client may send after its first headers and before it acknowledges our SETTINGS: the
 * request's DATA, up to the initial flow-control window (65,535 bytes) plus frame headers.
 * A client that writes its request before reading our preface (gRPC C-core may) needs it.
 */
const INITIAL_WINDOW_WITH_FRAMING = 65_535 + 16 * 9;

/** Why the gate closed a connection (the `reason` label of its metric). */
export type GateRefusal = 'protocol_error' | 'frame_too_large' | 'header_block_too_large' | 'request_deadline' | 'too_many_bytes';

/** Options of {@link gateConnection}. */
export interface ConnectionGateOptions {
  readonly logger: Logger;
  readonly firstRequestDeadlineMs?: number;
  /** Called once per refused connection. */
  readonly onRefused?: (reason: GateRefusal) => void;
}

/** Held bytes and what has been seen of the client's start. */
class ClientStart {
  readonly held: Buffer[] = [];
  received = 0;
  ackSeen = false;
  firstBlock: HeaderBlock | undefined;
  #skipping = false;

  readonly reader = new Http2FrameReader({
    preface: (raw) => this.held.push(raw),
    frame: (header, raw) => {
      // The first SETTINGS ACK answers the SETTINGS the gate sent; nghttp2 must not see it.
      this.#skipping = !this.ackSeen && isSettingsAck(header);
      if (this.#skipping) this.ackSeen = true;
      else this.held.push(raw);
    },
    payload: (_header, piece) => {
      if (!this.#skipping) this.held.push(piece);
    },
    headerBlock: (block) => {
      this.firstBlock ??= block;
    },
  });
}

function refusalOf(err: Http2InboundError): GateRefusal {
  switch (err.errorCode) {
    case Http2ErrorCode.FRAME_SIZE_ERROR:
      return 'frame_too_large';
    case Http2ErrorCode.ENHANCE_YOUR_CALM:
    case Http2ErrorCode.COMPRESSION_ERROR:
      return 'header_block_too_large';
    default:
      return 'protocol_error';
  }
}

/**
 * Runs the gate on an accepted (and already tracked) socket, then calls `inject` with the raw
 * socket or with a repaired connection. The socket's `remoteAddress` override is carried over
 * to the repaired connection.
 */
export function gateConnection(socket: Socket, inject: (connection: Socket) => void, opts: ConnectionGateOptions): void {
  const logger = opts.logger;
  const start = new ClientStart();
  let done = false;

  const finish = (): void => {
    done = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.pause();
  };
  const refuse = (reason: GateRefusal, errorCode: number, detail: string): void => {
    finish();
    opts.onRefused?.(reason);
    logger.debug({ reason, error: detail }, 'closing workload connection before its first request');
    if (socket.destroyed) return;
    // The GOAWAY tells a real client why; the socket goes at once whether or not it reads it.
    socket.write(goawayFrame(errorCode), () => socket.destroy());
    setImmediate(() => socket.destroy());
  };
  const onData = (chunk: Buffer): void => {
    start.received += chunk.length;
    try {
      start.reader.push(chunk);
    } catch (err) {
      const violation = err instanceof Http2InboundError ? err : new Http2InboundError(Http2ErrorCode.PROTOCOL_ERROR, String(err));
      refuse(refusalOf(violation), violation.errorCode, violation.message);
      return;
    }
    if (start.firstBlock !== undefined && start.ackSeen) {
      decide();
      return;
    }
    const allowed = start.firstBlock === undefined ? MAX_GATE_BYTES : MAX_GATE_BYTES + INITIAL_WINDOW_WITH_FRAMING;
    if (start.received > allowed) {
      refuse('too_many_bytes', Http2ErrorCode.ENHANCE_YOUR_CALM, `no request within the first ${allowed} bytes`);
    }
  };
  const decide = (): void => {
    let repair: boolean;
    try {
      repair = firstBlockNeedsRewrite((start.firstBlock as HeaderBlock).block);
    } catch (err) {
      const violation = err as Http2InboundError;
      refuse(refusalOf(violation), violation.errorCode, violation.message);
      return;
    }
    finish();
    if (socket.destroyed) return;
    const held = Buffer.concat(start.held);
    if (!repair) {
      socket.unshift(held);
      inject(socket);
      return;
    }
    const repaired = repairConnection(socket, held, logger);
    if (repaired !== undefined) inject(repaired);
  };
  // A client that half-closes before sending a request has nothing to be served.
  const onEnd = (): void => {
    if (!done) {
      finish();
      socket.destroy();
    }
  };
  const deadline = opts.firstRequestDeadlineMs ?? DEFAULT_FIRST_REQUEST_DEADLINE_MS;
  const timer = setTimeout(() => {
    if (!done) refuse('request_deadline', Http2ErrorCode.NO_ERROR, `no request within ${deadline} ms`);
  }, deadline);
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('close', () => {
    if (!done) finish();
  });
  socket.write(EMPTY_SETTINGS_FRAME);
}

/**
 * A socket for grpc-js whose inbound header blocks have their authority repaired: one end of
 * a socketpair, the other relayed to and from the client. Undefined (client dropped) if no
 * socketpair could be made.
 */
function repairConnection(client: Socket, held: Buffer, logger: Logger): Socket | undefined {
  const pair = unixSocketPair();
  if (!pair.ok) {
    logger.error({ errno: pair.errno }, 'dropping workload connection: socketpair failed');
    client.destroy();
    return undefined;
  }
  const [serverFd, relayFd] = pair.value;
  const serverSide = new Socket({ fd: serverFd, readable: true, writable: true });
  const relay = new Socket({ fd: relayFd, readable: true, writable: true });
  // call.getPeer() reads remoteAddress: it must find the client's tracking key here too.
  Object.defineProperty(serverSide, 'remoteAddress', { value: client.remoteAddress, configurable: true, enumerable: false });
  logger.debug('workload connection sends an authority Node rejects: rewriting its header blocks');

  const rewriter = new InboundHeaderRewriter();
  const toServer = (chunk: Buffer): void => {
    let out: Buffer[];
    try {
      out = rewriter.push(chunk);
    } catch (err) {
      logger.debug({ error: (err as Error).message }, 'closing workload connection: malformed HTTP/2 from client');
      client.destroy();
      return;
    }
    if (out.length === 0) return;
    relay.cork();
    let flowing = true;
    for (const piece of out) flowing = relay.write(piece);
    relay.uncork();
    if (!flowing) {
      client.pause();
      relay.once('drain', () => client.resume());
    }
  };
  const toClient = (chunk: Buffer): void => {
    if (!client.write(chunk)) {
      relay.pause();
      client.once('drain', () => relay.resume());
    }
  };

  relay.on('error', (err) => logger.debug({ error: err.message }, 'workload relay error'));
  relay.on('data', toClient);
  relay.once('end', () => client.end());
  relay.once('close', () => {
    if (!client.writableEnded) client.destroy();
  });
  client.on('data', toServer);
  client.once('end', () => relay.end());
  // The peer tracker (dead caller) and shutdown act on the client socket: take the pair down with it.
  client.once('close', () => {
    relay.destroy();
    serverSide.destroy();
  });
  toServer(held);
  client.resume();
  return serverSide;
}
