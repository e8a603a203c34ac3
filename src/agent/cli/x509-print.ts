/**
 * The text `api fetch x509` and `api watch` print for an X509-SVID response, exactly as
 * spire-agent's `cmd/spire-agent/cli/api/printer.go`: times in Go's `time.Time` format in UTC
 * (`2006-01-02 15:04:05 +0000 UTC`, how Go prints a certificate's NotBefore/NotAfter), so
 * scripts written against spire-agent parse ours.
 */
import { X509Certificate } from 'node:crypto';
import { ApiError, Code } from '../../common/errors.ts';
import type { X509Context, X509Svid } from '../workload-client/index.ts';
import { formatGoTimeUtc } from '../../common/go-time.ts';
import { formatElapsed } from './format.ts';

/** How to print one response. */
export interface X509PrintOptions {
  /** Time between the request (or the previous update) and this response. */
  elapsedMs: number;
  /** How a federated trust domain is labelled: `spiffe://td` (fetch) or `td` (watch), as spire-agent does. */
  federatedLabel: (trustDomain: string) => string;
}

function validity(der: Buffer): { notBefore: number; notAfter: number } {
  try {
    const cert = new X509Certificate(der);
    return { notBefore: cert.validFromDate.getTime(), notAfter: cert.validToDate.getTime() };
  } catch (err) {
    throw new ApiError(Code.INTERNAL, `workload response holds a certificate that cannot be parsed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function validityLines(label: string, der: Buffer): string[] {
  const { notBefore, notAfter } = validity(der);
  return [`${label} Valid After:\t${formatGoTimeUtc(notBefore)}`, `${label} Valid Until:\t${formatGoTimeUtc(notAfter)}`];
}

function svidLines(svid: X509Svid): string[] {
  // The SPIFFE ID comes first so a certificate that fails to parse is attributed.
  const lines = [`SPIFFE ID:\t\t${svid.spiffeId}`];
  if (svid.hint !== '') lines.push(`Hint:\t\t\t${svid.hint}`);
  const [leaf, ...intermediates] = svid.certificates;
  if (leaf !== undefined) lines.push(...validityLines('SVID', leaf));
  intermediates.forEach((der, i) => lines.push(...validityLines(`Intermediate #${i + 1}`, der)));
  svid.bundle.forEach((der, i) => lines.push(...validityLines(`CA #${i + 1}`, der)));
  return lines;
}

/** Formats a response: a "Received N svid(s) after …" line, then a block per SVID, then a blank line. */
export function formatX509Context(context: X509Context, options: X509PrintOptions): string {
  const n = context.svids.length;
  const lines = [`Received ${n} svid${n === 1 ? '' : 's'} after ${formatElapsed(options.elapsedMs)}`];
  for (const svid of context.svids) {
    lines.push('', ...svidLines(svid));
    for (const [td, certs] of context.federatedBundles) {
      certs.forEach((der, i) => lines.push(...validityLines(`[${options.federatedLabel(td)}] CA #${i + 1}`, der)));
    }
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}
