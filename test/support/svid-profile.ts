/**
 * An independent checker of the X509-SVID profile (SPIFFE X509-SVID spec plus what clients rely
 * on, MISSION §4), for tests of the CA, the server and the agent.
 *
 * It deliberately shares no code with `src/`: certificates are parsed with @peculiar/x509 and
 * signatures checked with node:crypto's X509Certificate, so a bug in our own DER code cannot
 * hide itself.
 */
import 'reflect-metadata';

import * as x509 from '@peculiar/x509';
import { X509Certificate, webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** Options of {@link checkX509SvidProfile}. */
export interface SvidProfileOptions {
  /** The SPIFFE ID the leaf must carry as its one URI SAN. */
  expectedId: string;
  /** DER trust anchors the chain must verify to (the bundle's X.509 authorities). */
  bundleRootsDer: readonly Uint8Array[];
  /** Validity is checked at this time. Default: now. */
  now?: Date;
}

/**
 * Splits concatenated DER certificates (as in `X509SVIDResponse.x509_svid` or `bundle`) by
 * reading each outer SEQUENCE's length. Throws on anything that is not a sequence of SEQUENCEs.
 */
export function splitDerCertificates(buf: Uint8Array): Buffer[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < b.length) {
    if (b[pos] !== 0x30) throw new Error(`byte ${pos}: expected a SEQUENCE (0x30), got 0x${(b[pos] ?? 0).toString(16)}`);
    if (pos + 2 > b.length) throw new Error(`byte ${pos}: truncated header`);
    let len = b[pos + 1]!;
    let header = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4) throw new Error(`byte ${pos}: unsupported length form`);
      if (pos + 2 + n > b.length) throw new Error(`byte ${pos}: truncated length`);
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + b[pos + 2 + i]!;
      header += n;
    }
    const end = pos + header + len;
    if (end > b.length) throw new Error(`byte ${pos}: certificate runs past the end (${end} > ${b.length})`);
    out.push(b.subarray(pos, end));
    pos = end;
  }
  return out;
}

/** The X.509 version (1-based) read from the TBSCertificate's explicit [0] tag. */
function certVersion(der: Buffer): number {
  // Certificate SEQUENCE → tbsCertificate SEQUENCE → first element.
  const skipHeader = (pos: number): number => {
    const l = der[pos + 1]!;
    return pos + 2 + (l & 0x80 ? l & 0x7f : 0);
  };
  const tbs = skipHeader(0);
  const first = skipHeader(tbs);
  if (der[first] !== 0xa0) return 1;
  const inner = skipHeader(first);
  return der[inner] === 0x02 ? der[inner + 2]! + 1 : 1;
}

interface Parsed {
  der: Buffer;
  p: x509.X509Certificate;
  n: X509Certificate;
}

function uriSans(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return san ? san.names.items.filter((i) => i.type === 'url').map((i) => i.value) : [];
}

function withinValidity(c: Parsed, now: Date, label: string, out: string[]): void {
  if (now < c.p.notBefore) out.push(`${label}: not yet valid at ${now.toISOString()} (notBefore ${c.p.notBefore.toISOString()})`);
  if (now > c.p.notAfter) out.push(`${label}: expired at ${now.toISOString()} (notAfter ${c.p.notAfter.toISOString()})`);
}

function signedBy(child: Parsed, parent: Parsed): boolean {
  try {
    return child.n.checkIssued(parent.n) && child.n.verify(parent.n.publicKey);
  } catch {
    return false;
  }
}

function checkLeaf(leaf: Parsed, expectedId: string, out: string[]): void {
  if (certVersion(leaf.der) !== 3) out.push(`leaf: version is ${certVersion(leaf.der)}, expected 3`);
  const uris = uriSans(leaf.p);
  if (uris.length !== 1) out.push(`leaf: has ${uris.length} URI SANs, expected exactly 1`);
  if (uris.length >= 1 && uris[0] !== expectedId) out.push(`leaf: URI SAN is "${uris[0]}", expected "${expectedId}"`);
  for (const u of uris) {
    const m = /^spiffe:\/\/[^/]+(\/.*)?$/.exec(u);
    if (!m) out.push(`leaf: URI SAN "${u}" is not a SPIFFE ID`);
    else if (!m[1] || m[1] === '/') out.push(`leaf: URI SAN "${u}" has a root path (a leaf needs a workload path)`);
  }
  const bc = leaf.p.getExtension(x509.BasicConstraintsExtension);
  if (!bc) out.push('leaf: basicConstraints missing');
  else {
    if (bc.ca) out.push('leaf: basicConstraints CA=true');
    if (!bc.critical) out.push('leaf: basicConstraints is not critical');
  }
  const ku = leaf.p.getExtension(x509.KeyUsagesExtension);
  if (!ku) out.push('leaf: keyUsage missing');
  else {
    if (!ku.critical) out.push('leaf: keyUsage is not critical');
    if (!(ku.usages & x509.KeyUsageFlags.digitalSignature)) out.push('leaf: keyUsage lacks digitalSignature');
    if (ku.usages & x509.KeyUsageFlags.keyCertSign) out.push('leaf: keyUsage has keyCertSign');
    if (ku.usages & x509.KeyUsageFlags.cRLSign) out.push('leaf: keyUsage has cRLSign');
  }
  const eku = leaf.p.getExtension(x509.ExtendedKeyUsageExtension);
  const usages = (eku?.usages ?? []).map(String);
  if (!usages.includes(x509.ExtendedKeyUsage.serverAuth)) out.push('leaf: extKeyUsage lacks serverAuth');
  if (!usages.includes(x509.ExtendedKeyUsage.clientAuth)) out.push('leaf: extKeyUsage lacks clientAuth');
}

function checkSigningCert(c: Parsed, label: string, out: string[]): void {
  const bc = c.p.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) out.push(`${label}: not a CA (basicConstraints CA=true missing)`);
  const ku = c.p.getExtension(x509.KeyUsagesExtension);
  if (ku && !(ku.usages & x509.KeyUsageFlags.keyCertSign)) out.push(`${label}: keyUsage lacks keyCertSign`);
  for (const u of uriSans(c.p)) {
    if (!/^spiffe:\/\/[^/]+$/.test(u)) out.push(`${label}: URI SAN "${u}" is not a trust domain ID`);
  }
}

/**
 * Checks an X509-SVID chain (DER leaf then intermediates, as an array or concatenated) and
 * returns the violations found; an empty list means the SVID conforms.
 */
export function checkX509SvidProfile(chainDer: readonly Uint8Array[] | Uint8Array, opts: SvidProfileOptions): string[] {
  const out: string[] = [];
  const now = opts.now ?? new Date();
  let ders: Buffer[];
  try {
    ders = chainDer instanceof Uint8Array ? splitDerCertificates(chainDer) : chainDer.map((d) => Buffer.from(d));
  } catch (err) {
    return [`chain is not concatenated DER: ${(err as Error).message}`];
  }
  if (ders.length === 0) return ['chain is empty'];
  const parse = (der: Buffer, label: string): Parsed | undefined => {
    try {
      return { der, p: new x509.X509Certificate(new Uint8Array(der)), n: new X509Certificate(der) };
    } catch (err) {
      out.push(`${label}: does not parse: ${(err as Error).message}`);
      return undefined;
    }
  };
  const chain = ders.map((d, i) => parse(d, i === 0 ? 'leaf' : `chain[${i}]`));
  const roots = opts.bundleRootsDer.map((d, i) => parse(Buffer.from(d), `root[${i}]`));
  if (chain.some((c) => !c) || roots.some((r) => !r)) return out;
  const certs = chain as Parsed[];
  const anchors = roots as Parsed[];

  checkLeaf(certs[0]!, opts.expectedId, out);
  certs.slice(1).forEach((c, i) => checkSigningCert(c, `chain[${i + 1}]`, out));
  certs.forEach((c, i) => withinValidity(c, now, i === 0 ? 'leaf' : `chain[${i}]`, out));

  for (let i = 0; i + 1 < certs.length; i++) {
    if (!signedBy(certs[i]!, certs[i + 1]!)) out.push(`chain[${i}] is not signed by chain[${i + 1}]`);
  }
  const last = certs[certs.length - 1]!;
  if (anchors.length === 0) {
    out.push('no bundle roots to verify against');
  } else {
    const anchor = anchors.find((r) => r.der.equals(last.der)) ?? anchors.find((r) => signedBy(last, r));
    if (!anchor) out.push(`chain does not verify to any of the ${anchors.length} bundle root(s)`);
    else withinValidity(anchor, now, 'root', out);
  }
  return out;
}
