/**
 * Reads URI SANs from a TLS peer certificate as Node reports it (`subjectaltname` is
 * "URI:spiffe://…, DNS:…"), without parsing the certificate again.
 */
import type { PeerCertificate } from 'node:tls';

/** The certificate's URI SANs, in order. */
export function uriSans(cert: PeerCertificate): string[] {
  return (cert.subjectaltname ?? '')
    .split(', ')
    .filter((san) => san.startsWith('URI:'))
    .map((san) => san.slice(4));
}
