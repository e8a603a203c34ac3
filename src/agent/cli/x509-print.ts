/**
 * The text `api fetch x509` and `api watch` print for an X509-SVID response, in
 * spire-agent's layout (`cmd/spire-agent/cli/api/printer.go`) with RFC 3339 times and the
 * remaining lifetime after each "Valid Until".
 */
import { X509Certificate } from 'node:crypto';
import { ApiError, Code } from '../../common/errors.ts';
import type { X509Context, X509Svid } from '../workload-client/index.ts';
import { formatElapsed, formatExpiry, formatTimestamp } from './format.ts';

/** How to print one response. */
export interface X509PrintOptions {
  /** Time between the request (or the previous update) and this response. */
  elapsedMs: number;
  /** Now, for "expires in …". */
  nowMs: number;
  /** When set, " at <RFC 3339>" follows the "Received …" line (used by `api watch`). */
  receivedAtMs?: number;
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

function validityLines(label: string, der: Buffer, nowMs: number): string[] {
  const { notBefore, notAfter } = validity(der);
  return [`${label} Valid After:\t${formatTimestamp(notBefore)}`, `${label} Valid Until:\t${formatTimestamp(notAfter)} (${formatExpiry(notAfter, nowMs)})`];
}

function svidLines(svid: X509Svid, nowMs: number): string[] {
  // The SPIFFE ID comes first so a certificate that fails to parse is attributed.
  const lines = [`SPIFFE ID:\t\t${svid.spiffeId}`];
  if (svid.hint !== '') lines.push(`Hint:\t\t\t${svid.hint}`);
  const [leaf, ...intermediates] = svid.certificates;
  if (leaf !== undefined) lines.push(...validityLines('SVID', leaf, nowMs));
  intermediates.forEach((der, i) => lines.push(...validityLines(`Intermediate #${i + 1}`, der, nowMs)));
  svid.bundle.forEach((der, i) => lines.push(...validityLines(`CA #${i + 1}`, der, nowMs)));
  return lines;
}

/** Formats a response: a "Received N svid(s) after …" line, then a block per SVID, then a blank line. */
export function formatX509Context(context: X509Context, options: X509PrintOptions): string {
  const n = context.svids.length;
  const at = options.receivedAtMs === undefined ? '' : ` at ${formatTimestamp(options.receivedAtMs)}`;
  const lines = [`Received ${n} svid${n === 1 ? '' : 's'} after ${formatElapsed(options.elapsedMs)}${at}`];
  for (const svid of context.svids) {
    lines.push('', ...svidLines(svid, options.nowMs));
    for (const [td, certs] of context.federatedBundles) {
      certs.forEach((der, i) => lines.push(...validityLines(`[${options.federatedLabel(td)}] CA #${i + 1}`, der, options.nowMs)));
    }
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}
