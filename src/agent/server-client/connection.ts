/**
 * A connection to a SPIRE-compatible server. The server is authenticated by its SPIFFE ID
 * (`spiffe://<td>/spire/server`) against the trust bundle, never by hostname; the agent
 * authenticates with its SVID when it has one (AttestAgent runs without).
 */
import { uriSans } from '../../common/peer-certificate.ts';
import type { PeerCertificate } from 'node:tls';
import { createSecureContext } from 'node:tls';
import { credentials, type ChannelOptions } from '@grpc/grpc-js';
import { AgentClient, BundleClient, EntryClient, SvidClient } from '../../common/proto.ts';
import { tlsModeOptions, type ServerTlsMode } from './tls-fallback.ts';

export interface ServerConnectionOptions {
  /** host:port of the server's TLS listener. */
  address: string;
  trustDomain: string;
  /**
   * PEM roots the server's SVID must chain to; `undefined` for insecure bootstrap, where
   * the chain is not verified but the server must still present its SPIFFE ID.
   */
  rootsPem: string | undefined;
  /** The agent's SVID (PEM chain, leaf first) and key (PKCS#8 PEM), for mTLS. */
  identity?: { certChainPem: string; keyPem: string };
  /**
   * Longest wait between the channel's own reconnection attempts (grpc-js default: 120 s).
   * The agent passes its sync interval, so a channel that outlived an outage reconnects
   * within about one interval of the server's return.
   */
  reconnectBackoffMaxMs?: number;
  /**
   * `tls12-no-tickets` for servers that close TLS 1.3 connections after the handshake
   * (spiffe/spire#7076, see tls-fallback.ts); default: Node's TLS defaults.
   */
  tlsMode?: ServerTlsMode;
}

/** Typed clients on one channel. */
export interface ServerClients {
  agent: AgentClient;
  entry: EntryClient;
  svid: SvidClient;
  bundle: BundleClient;
  close(): void;
}

/** Returns an Error unless the certificate's only URI SAN is `expected`. */
export function checkSpiffeIdentity(cert: PeerCertificate, expected: string): Error | undefined {
  const uris = uriSans(cert);
  if (uris.length === 1 && uris[0] === expected) return undefined;
  return new Error(`server-client: server presented ${uris.length === 0 ? 'no SPIFFE ID' : `"${uris.join(', ')}"`}, expected "${expected}"`);
}

/** Opens clients to the server (lazily: the first call connects). */
export function connectToServer(opts: ServerConnectionOptions): ServerClients {
  const expected = `spiffe://${opts.trustDomain}/spire/server`;
  const { minVersion, maxVersion, secureOptions } = tlsModeOptions(opts.tlsMode ?? 'default');
  const context = createSecureContext({
    ...(opts.rootsPem === undefined ? {} : { ca: opts.rootsPem }),
    ...(opts.identity === undefined ? {} : { cert: opts.identity.certChainPem, key: opts.identity.keyPem }),
    ...(minVersion === undefined ? {} : { minVersion }),
    ...(maxVersion === undefined ? {} : { maxVersion }),
    ...(secureOptions === undefined ? {} : { secureOptions }),
  });
  const creds = credentials.createFromSecureContext(context, {
    checkServerIdentity: (_host, cert) => checkSpiffeIdentity(cert, expected),
    // insecure_bootstrap only: trust on first use, as SPIRE. Node calls checkServerIdentity
    // only after the chain verified, so without roots the server is not checked at all
    // (an ID check would add nothing: anyone can sign a certificate naming that ID).
    ...(opts.rootsPem === undefined ? { rejectUnauthorized: false } : {}),
  });
  const channelOptions: ChannelOptions = {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    // Each identity gets its own channel: never reuse a connection made with another SVID.
    'grpc.use_local_subchannel_pool': 1,
    // SNI carries the trust domain, not the address (an IP address is not a valid SNI name);
    // the server is authenticated by its SPIFFE ID in checkServerIdentity either way.
    'grpc.ssl_target_name_override': opts.trustDomain,
    ...(opts.reconnectBackoffMaxMs === undefined
      ? {}
      : {
          'grpc.initial_reconnect_backoff_ms': Math.min(1_000, opts.reconnectBackoffMaxMs),
          'grpc.max_reconnect_backoff_ms': opts.reconnectBackoffMaxMs,
        }),
  };
  const agent = new AgentClient(opts.address, creds, channelOptions);
  const shared = { ...channelOptions, channelOverride: agent.getChannel() };
  const entry = new EntryClient(opts.address, creds, shared);
  const svid = new SvidClient(opts.address, creds, shared);
  const bundle = new BundleClient(opts.address, creds, shared);
  return { agent, entry, svid, bundle, close: () => agent.close() };
}
