/** PEM encoding and decoding of DER blocks. */

/** Encodes DER as one PEM block of the given type (`CERTIFICATE`, `PRIVATE KEY`, ...). */
export function toPem(type: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${type}-----\n${lines.join('\n')}\n-----END ${type}-----\n`;
}

/** Encodes several certificates as concatenated PEM blocks. */
export function certificatesToPem(ders: readonly Uint8Array[]): string {
  return ders.map((d) => toPem('CERTIFICATE', d)).join('');
}

/** One decoded PEM block. */
export interface PemBlock {
  readonly type: string;
  readonly der: Buffer;
}

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** Decodes every PEM block in `text` (text outside blocks is ignored, as OpenSSL does). */
export function decodePem(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(PEM_RE)) {
    const body = m[2]!;
    // Headers such as Proc-Type are not supported: encrypted PEM is not a thing we load.
    if (body.includes(':')) throw new Error(`PEM block ${m[1]} has headers (encrypted PEM is not supported)`);
    const b64 = body.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new Error(`PEM block ${m[1]} is not valid base64`);
    out.push({ type: m[1]!, der: Buffer.from(b64, 'base64') });
  }
  return out;
}

/** Decodes the CERTIFICATE blocks of a PEM text; throws when there are none. */
export function decodePemCertificates(text: string): Buffer[] {
  const certs = decodePem(text)
    .filter((b) => b.type === 'CERTIFICATE')
    .map((b) => b.der);
  if (certs.length === 0) throw new Error('no CERTIFICATE PEM block found');
  return certs;
}
