/**
 * Recognises spire-server builds hit by spiffe/spire#7076 and picks the TLS mode they accept.
 *
 * spire-server 1.15.0–1.15.1 built with Go ≥ 1.26 disables session tickets on its listener's
 * outer `tls.Config` but not on the per-client config its `GetConfigForClient` returns. Go then
 * takes the ticket keys from the outer config (none) and the decision to send a ticket from
 * the inner one (yes), so every handshake whose ClientHello could use a ticket fails right
 * after the client has finished it ("tls: internal error: session ticket keys unavailable"),
 * and the client sees its connection reset:
 * - TLS 1.3: a ticket is sent whenever the ClientHello offers `psk_dhe_ke`, which OpenSSL (so
 *   Node) always does; `SSL_OP_NO_TICKET` does not remove it.
 * - TLS 1.2: a ticket is sent when the ClientHello has the session_ticket extension, which
 *   `SSL_OP_NO_TICKET` does remove. So TLS 1.2 without tickets completes.
 * - But under TLS 1.2 an empty client Certificate message reaches spire-server's
 *   VerifyPeerCertificate hook as an empty, non-nil list, and the hook skips verification only
 *   for nil (what TLS 1.3 passes), so a client without a certificate gets alert 42
 *   (bad_certificate). TLS 1.2 therefore works only with a client certificate: every call of an
 *   agent that holds an SVID (AttestAgent included, which ignores the certificate), but never
 *   the first attestation. Such a server has to be upgraded (1.15.2) for new agents.
 *
 * The fallback still verifies the server's chain against the trust bundle and its SPIFFE ID.
 *
 * Not to be confused with a server that refuses the agent's SVID: after `spire-server
 * localauthority x509 revoke` (or for an SVID from another CA), spire-server answers the
 * client certificate with alert 42 (bad_certificate). Under TLS 1.3 the client has finished
 * its handshake by then, so the alert arrives after it like #7076's close; the probe tells
 * the two apart by the alert and reports it, and the error policy decides what follows
 * (server-error-policy.ts: a reattestable agent attests again).
 */
import { connect, type ConnectionOptions, type PeerCertificate } from 'node:tls';
import { constants } from 'node:crypto';
import { isIP } from 'node:net';
import type { Logger } from '../../common/logger.ts';

/** How the agent dials the server: Node's default, or TLS 1.2 without session tickets. */
export type ServerTlsMode = 'default' | 'tls12-no-tickets';

/** What one probe handshake showed. */
export type ProbeOutcome =
  /** The handshake completed and the server then spoke HTTP/2. */
  | 'ok'
  /** The handshake completed (server verified) and the server then closed without a byte. */
  | 'closed-after-handshake'
  /**
   * The server answered the client certificate we presented with an alert that refuses it
   * (bad_certificate, certificate_revoked/expired/unknown, unknown_ca), during the handshake
   * or right after it (TLS 1.3): it does not accept our SVID. Not #7076.
   */
  | 'certificate-refused'
  /** The handshake did not complete (refused, alert, verification failure, timeout). */
  | 'failed';

export interface ProbeTarget {
  /** host:port, as given to grpc-js. */
  address: string;
  trustDomain: string;
  /** PEM roots; `undefined` skips chain verification (insecure bootstrap). */
  rootsPem: string | undefined;
  /** Client certificate chain and key (PEM), presented when set. */
  identity?: { certChainPem: string; keyPem: string };
  /** Checks the server's leaf; returns an Error to refuse it. */
  checkServerIdentity: (cert: PeerCertificate) => Error | undefined;
}

/** The HTTP/2 client preface and an empty SETTINGS frame: any HTTP/2 server answers it. */
const H2_PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/** TLS alerts a server sends about the client's certificate, by number (RFC 8446 §6). */
const CERTIFICATE_ALERTS: ReadonlyMap<number, string> = new Map([
  [42, 'bad_certificate'],
  [43, 'unsupported_certificate'],
  [44, 'certificate_revoked'],
  [45, 'certificate_expired'],
  [46, 'certificate_unknown'],
  [48, 'unknown_ca'],
]);

/**
 * The certificate alert a TLS error reports receiving from the peer (OpenSSL: "…alert bad
 * certificate…SSL alert number 42"), as `42 bad_certificate`; undefined for anything else.
 * Pure, for tests.
 */
export function receivedCertificateAlert(message: string): string | undefined {
  const match = /SSL alert number (\d+)/.exec(message);
  const name = match === null ? undefined : CERTIFICATE_ALERTS.get(Number(match[1]));
  return name === undefined ? undefined : `${match?.[1]} ${name}`;
}

/** The Node TLS options of a mode, beyond roots and identity. */
export function tlsModeOptions(mode: ServerTlsMode): Pick<ConnectionOptions, 'minVersion' | 'maxVersion' | 'secureOptions'> {
  return mode === 'default' ? {} : { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', secureOptions: constants.SSL_OP_NO_TICKET };
}

/** Splits `host:port` (`[v6]:port` too). */
function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(address.slice(i + 1)) };
}

/** Makes one TLS connection in `mode`, as the gRPC channel would, and reports what happened. */
export function probeServerTls(target: ProbeTarget, mode: ServerTlsMode, timeoutMs = 5_000): Promise<{ outcome: ProbeOutcome; detail: string }> {
  const { host, port } = splitAddress(target.address);
  return new Promise((resolve) => {
    let handshaken = false;
    let settled = false;
    const socket = connect({
      host,
      port,
      // As the channel: SNI carries the trust domain (never an IP address).
      ...(isIP(target.trustDomain) === 0 ? { servername: target.trustDomain } : {}),
      ALPNProtocols: ['h2'],
      ...(target.rootsPem === undefined ? { rejectUnauthorized: false } : { ca: target.rootsPem }),
      ...(target.identity === undefined ? {} : { cert: target.identity.certChainPem, key: target.identity.keyPem }),
      checkServerIdentity: (_host, cert) => target.checkServerIdentity(cert),
      ...tlsModeOptions(mode),
    });
    const finish = (outcome: ProbeOutcome, detail: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ outcome, detail });
    };
    const timer = setTimeout(() => finish('failed', `no answer within ${timeoutMs} ms`), timeoutMs);
    socket.on('secureConnect', () => {
      handshaken = true;
      socket.write(H2_PREFACE);
    });
    socket.on('data', () => finish('ok', `${socket.getProtocol() ?? 'TLS'} connection answered`));
    socket.on('error', (err) => {
      // Only a certificate we presented can be refused; without one, alert 42 is #7076's
      // TLS 1.2 hook (see file comment) and stays a plain failure.
      const refused = target.identity !== undefined && receivedCertificateAlert(err.message) !== undefined;
      finish(refused ? 'certificate-refused' : handshaken ? 'closed-after-handshake' : 'failed', err.message);
    });
    socket.on('close', () => finish(handshaken ? 'closed-after-handshake' : 'failed', 'connection closed'));
  });
}

/**
 * What a probe after a failed call found: the mode was switched (reconnect), the server
 * refuses the SVID presented (`alert` as `42 bad_certificate`), or nothing to act on.
 */
export type TlsFinding = { kind: 'switched' } | { kind: 'certificate-refused'; alert: string | undefined } | { kind: 'none' };

const NONE: TlsFinding = { kind: 'none' };

/** Least time between two probes: a server that is down is not probed at every retry. */
export const PROBE_SPACING_MS = 30_000;

/** How often a server that needed `tls12-no-tickets` is tried again in the default mode (it may have been upgraded). */
export const RECHECK_INTERVAL_MS = 60 * 60_000;

/**
 * The TLS mode for one server: `default` until a failed call's probe shows the #7076
 * signature (a TLS 1.3 handshake that completes and is then closed without a byte) and a
 * TLS 1.2 handshake without tickets works; then `tls12-no-tickets`, until a {@link recheck}
 * finds the default accepted again (the server was upgraded). A mode found by an earlier run
 * is restored with {@link restore} (the caller persists it). Each finding is logged once.
 * Probes are at least {@link PROBE_SPACING_MS} apart. No I/O but the probes.
 */
export class ServerTlsSelector {
  readonly #log: Logger;
  readonly #now: () => number;
  #mode: ServerTlsMode = 'default';
  #lastProbeAt: number | undefined;
  #lastRecheckAt: number | undefined;
  #warnedAnonymous = false;
  #warnedNoFallback = false;

  constructor(logger: Logger, now: () => number = Date.now) {
    this.#log = logger;
    this.#now = now;
  }

  get mode(): ServerTlsMode {
    return this.#mode;
  }

  /** Starts from a mode an earlier run found for this server. */
  restore(mode: ServerTlsMode): void {
    this.#mode = mode;
  }

  /**
   * In `tls12-no-tickets` mode, at most every {@link RECHECK_INTERVAL_MS} (the first call at
   * once): tries the default mode, and goes back to it when the server now accepts it.
   * Returns whether the mode changed.
   */
  async recheck(target: ProbeTarget): Promise<boolean> {
    if (this.#mode === 'default') return false;
    const now = this.#now();
    if (this.#lastRecheckAt !== undefined && now - this.#lastRecheckAt < RECHECK_INTERVAL_MS) return false;
    this.#lastRecheckAt = now;
    const normal = await probeServerTls(target, 'default');
    if (normal.outcome !== 'ok') return false;
    this.#mode = 'default';
    this.#log.info(
      { server: target.address, issue: 'https://github.com/spiffe/spire/issues/7076' },
      `spiffe://${target.trustDomain}/spire/server accepts TLS 1.3 again (upgraded past spiffe/spire#7076): back to the default TLS mode`,
    );
    return true;
  }

  /**
   * Called after a call failed as Unavailable: probes the server and switches to TLS 1.2
   * without tickets when that is what it needs; reports a refused SVID (not logged here: the
   * error policy decides what it means for this agent).
   */
  async afterUnavailable(target: ProbeTarget): Promise<TlsFinding> {
    const now = this.#now();
    if (this.#lastProbeAt !== undefined && now - this.#lastProbeAt < PROBE_SPACING_MS) return NONE;
    this.#lastProbeAt = now;
    if (this.#mode !== 'default') {
      const current = await probeServerTls(target, this.#mode);
      return current.outcome === 'certificate-refused' ? refusedFinding(current.detail) : NONE;
    }
    const normal = await probeServerTls(target, 'default');
    const server = `spiffe://${target.trustDomain}/spire/server`;
    if (normal.outcome === 'certificate-refused') return refusedFinding(normal.detail);
    if (normal.outcome !== 'closed-after-handshake') return NONE;
    if (target.identity === undefined) {
      if (!this.#warnedAnonymous) {
        this.#warnedAnonymous = true;
        this.#log.error(
          { server: target.address, error: normal.detail, issue: 'https://github.com/spiffe/spire/issues/7076' },
          `${server} closes every TLS 1.3 connection right after the handshake (spire-server 1.15.0-1.15.1 built with Go 1.26, spiffe/spire#7076), and it refuses TLS 1.2 without a client certificate: an agent without an SVID cannot attest to it; upgrade the server to 1.15.2 or later`,
        );
      }
      return NONE;
    }
    const legacy = await probeServerTls(target, 'tls12-no-tickets');
    if (legacy.outcome === 'certificate-refused') return refusedFinding(legacy.detail);
    if (legacy.outcome !== 'ok') {
      if (!this.#warnedNoFallback) {
        this.#warnedNoFallback = true;
        this.#log.error(
          { server: target.address, error: normal.detail, tls12_error: legacy.detail, issue: 'https://github.com/spiffe/spire/issues/7076' },
          `${server} closes every TLS 1.3 connection right after the handshake (spiffe/spire#7076) and TLS 1.2 without session tickets failed too`,
        );
      }
      return NONE;
    }
    this.#mode = 'tls12-no-tickets';
    this.#log.warn(
      { server: target.address, error: normal.detail, issue: 'https://github.com/spiffe/spire/issues/7076' },
      `${server} closes every TLS 1.3 connection right after the handshake (spire-server 1.15.0-1.15.1 built with Go 1.26, spiffe/spire#7076): using TLS 1.2 without session tickets for it from now on, still verifying its certificate chain and SPIFFE ID`,
    );
    return { kind: 'switched' };
  }
}

function refusedFinding(detail: string): TlsFinding {
  return { kind: 'certificate-refused', alert: receivedCertificateAlert(detail) };
}
