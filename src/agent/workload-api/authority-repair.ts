/**
 * Chooses, per accepted connection, between handing the raw socket to grpc-js (every normal
 * client) and a repaired connection for clients whose `:authority` Node would reject
 * (grpc-java/java-spiffe sends the socket path; see authority-rewrite.ts).
 *
 * The peek: at accept the agent sends an empty SETTINGS frame itself (a valid server
 * preface announcing defaults), because many clients (grpc-go, grpc-js) send no request
 * before they have the server's preface, and the HTTP/2 server can only start once we have
 * chosen. The client's bytes are then read until both its first header block and its
 * acknowledgement of that SETTINGS have arrived. The acknowledgement is removed (nghttp2
 * never sent that frame and would treat the ACK as a protocol error); its own SETTINGS
 * follow once it starts, and clients accept several SETTINGS frames. An acceptable
 * authority puts the remaining bytes back (`unshift`) and injects the raw socket: nothing
 * is in the path afterwards. Anything odd (timeout, bytes that are not HTTP/2) goes to the
 * repaired path, which is correct for every client, only slower.
 *
 * Why a socketpair for repaired connections rather than a JS Duplex: Node wraps a non-native
 * stream in a JSStreamSocket whose `remoteAddress` cannot be set from outside, and
 * `call.getPeer()` reads exactly that property to find the caller's credentials. A real
 * socket (one end of a socketpair, the other relayed to the client) keeps the override
 * working through public API, and keeps nghttp2 on a native stream.
 */
import { Socket } from 'node:net';
import type { Logger } from '../../common/logger.ts';
import { HpackDecoder } from './hpack.ts';
import { EMPTY_SETTINGS_FRAME, scanClientStart } from './http2-frames.ts';
import { InboundHeaderRewriter, needsAuthorityRewrite } from './authority-rewrite.ts';
import { unixSocketPair } from './libc.ts';

/** How long to wait for the client's first header block before injecting the raw socket. */
export const DEFAULT_PEEK_TIMEOUT_MS = 100;
/** Peeked bytes beyond which we stop looking and inject the raw socket. */
const MAX_PEEK_BYTES = 64 * 1024;

/** Options of {@link injectWithAuthorityRepair}. */
export interface AuthorityRepairOptions {
  readonly logger: Logger;
  readonly peekTimeoutMs?: number;
}

type Verdict = { readonly choice: 'raw' | 'repair'; readonly rest: Buffer } | undefined;

/** What to do with a connection whose client sent `peeked`; undefined while more is needed. */
function verdict(peeked: Buffer): Verdict {
  const start = scanClientStart(peeked);
  if (start.notHttp2) return { choice: 'repair', rest: peeked };
  if (start.headerBlock === undefined || start.settingsAck === undefined) {
    return peeked.length >= MAX_PEEK_BYTES ? { choice: 'repair', rest: peeked } : undefined;
  }
  const { start: ackStart, end: ackEnd } = start.settingsAck;
  const rest = Buffer.concat([peeked.subarray(0, ackStart), peeked.subarray(ackEnd)]);
  let repair: boolean;
  try {
    repair = needsAuthorityRewrite(new HpackDecoder().decode(start.headerBlock));
  } catch {
    // Malformed HPACK: the relay closes the connection when it fails to decode it too.
    repair = true;
  }
  return { choice: repair ? 'repair' : 'raw', rest };
}

/**
 * Peeks at an accepted (and already tracked) socket's first header block, then calls
 * `inject` with the raw socket or with a repaired connection. The socket's `remoteAddress`
 * override is carried over to the repaired connection.
 */
export function injectWithAuthorityRepair(socket: Socket, inject: (connection: Socket) => void, opts: AuthorityRepairOptions): void {
  const chunks: Buffer[] = [];
  let decided = false;
  const decide = (choice: 'raw' | 'repair', rest: Buffer, ackRemoved: boolean): void => {
    decided = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.pause();
    if (socket.destroyed) return;
    if (choice === 'raw') {
      if (rest.length > 0) socket.unshift(rest);
      inject(socket);
      return;
    }
    const repaired = repairConnection(socket, rest, !ackRemoved, opts.logger);
    if (repaired !== undefined) inject(repaired);
  };
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    const v = verdict(chunks.length === 1 ? chunk : Buffer.concat(chunks));
    if (v !== undefined) decide(v.choice, v.rest, v.rest.length < sizeOf(chunks));
  };
  // A client that half-closes before sending a request has nothing to be served.
  const onEnd = (): void => {
    if (!decided) socket.destroy();
  };
  const timer = setTimeout(() => {
    if (!decided) decide('repair', Buffer.concat(chunks), false);
  }, opts.peekTimeoutMs ?? DEFAULT_PEEK_TIMEOUT_MS);
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('close', () => clearTimeout(timer));
  socket.write(EMPTY_SETTINGS_FRAME);
}

function sizeOf(chunks: readonly Buffer[]): number {
  let n = 0;
  for (const c of chunks) n += c.length;
  return n;
}

/**
 * A socket for grpc-js whose inbound header blocks have their authority repaired: one end of
 * a socketpair, the other relayed to and from the client. Undefined (client dropped) if no
 * socketpair could be made.
 */
function repairConnection(client: Socket, peeked: Buffer, dropSettingsAck: boolean, logger: Logger): Socket | undefined {
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

  const rewriter = new InboundHeaderRewriter({ dropSettingsAck });
  const toServer = (chunk: Buffer): void => {
    let out: Buffer;
    try {
      out = rewriter.push(chunk);
    } catch (err) {
      logger.debug({ error: (err as Error).message }, 'closing workload connection: malformed HTTP/2 from client');
      client.destroy();
      return;
    }
    if (out.length > 0 && !relay.write(out)) {
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
  if (peeked.length > 0) toServer(peeked);
  client.resume();
  return serverSide;
}
