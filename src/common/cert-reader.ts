/**
 * A minimal X.509 certificate reader (no OpenSSL): the fields the CA needs from its own
 * certificates, upstream certificates and bundle roots. Signatures are not checked here.
 */
import {
  DerError,
  Tag,
  children,
  content,
  decodeOid,
  decodeTime,
  expectTlv,
  raw,
  readTlv,
  type Tlv,
} from './der.ts';
import { ExtOid } from './x509-oids.ts';

/** One extension of a certificate or request. */
export interface RawExtension {
  readonly critical: boolean;
  /** The extnValue content (the DER inside the OCTET STRING). */
  readonly value: Buffer;
}

/** The parts of a certificate the CA reads. Buffers are views into `der`. */
export interface CertificateInfo {
  readonly der: Buffer;
  readonly tbsDer: Buffer;
  readonly version: number;
  readonly serial: Buffer;
  readonly issuerDer: Buffer;
  readonly subjectDer: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly spkiDer: Buffer;
  readonly signatureAlgorithm: string;
  readonly signature: Buffer;
  readonly extensions: ReadonlyMap<string, RawExtension>;
  /** basicConstraints cA; `undefined` when the extension is absent. */
  readonly isCa: boolean | undefined;
  readonly pathLen: number | undefined;
  /** keyUsage as a set of bit numbers (see `KeyUsage`); `undefined` when absent. */
  readonly keyUsage: ReadonlySet<number> | undefined;
  readonly subjectKeyId: Buffer | undefined;
  readonly authorityKeyId: Buffer | undefined;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
}

/** Reads the Extensions SEQUENCE at `t` into a map; duplicate extensions are malformed. */
export function readExtensions(buf: Buffer, t: Tlv): Map<string, RawExtension> {
  const out = new Map<string, RawExtension>();
  for (const ext of children(buf, t)) {
    if (ext.tag !== Tag.SEQUENCE) throw new DerError('extension is not a SEQUENCE');
    const parts = children(buf, ext);
    const idT = parts[0];
    if (!idT || idT.tag !== Tag.OID) throw new DerError('extension without an OID');
    let i = 1;
    let critical = false;
    if (parts[i]?.tag === Tag.BOOLEAN) {
      critical = buf[parts[i]!.contentStart] !== 0;
      i++;
    }
    const valT = parts[i];
    if (!valT || valT.tag !== Tag.OCTET_STRING || parts.length !== i + 1) throw new DerError('malformed extension');
    const id = decodeOid(content(buf, idT));
    if (out.has(id)) throw new DerError(`duplicate extension ${id}`);
    out.set(id, { critical, value: content(buf, valT) });
  }
  return out;
}

/** Reads URI and DNS names from a GeneralNames value (the subjectAltName extnValue). */
export function readGeneralNames(value: Buffer): { uris: string[]; dnsNames: string[] } {
  const top = expectTlv(value, 0, Tag.SEQUENCE, 'GeneralNames');
  if (top.end !== value.length) throw new DerError('trailing data after GeneralNames');
  const uris: string[] = [];
  const dnsNames: string[] = [];
  for (const n of children(value, top)) {
    if (n.tag === 0x86) uris.push(value.toString('latin1', n.contentStart, n.end));
    else if (n.tag === 0x82) dnsNames.push(value.toString('latin1', n.contentStart, n.end));
  }
  return { uris, dnsNames };
}

function readKeyUsage(value: Buffer): Set<number> {
  const t = expectTlv(value, 0, Tag.BIT_STRING, 'keyUsage');
  const bits = new Set<number>();
  for (let i = t.contentStart + 1; i < t.end; i++) {
    const byte = value[i]!;
    for (let b = 0; b < 8; b++) if (byte & (0x80 >> b)) bits.add((i - t.contentStart - 1) * 8 + b);
  }
  return bits;
}

function readBasicConstraints(value: Buffer): { isCa: boolean; pathLen: number | undefined } {
  const t = expectTlv(value, 0, Tag.SEQUENCE, 'basicConstraints');
  let isCa = false;
  let pathLen: number | undefined;
  for (const c of children(value, t)) {
    if (c.tag === Tag.BOOLEAN) isCa = value[c.contentStart] !== 0;
    else if (c.tag === Tag.INTEGER) pathLen = value.readUIntBE(c.contentStart, Math.min(6, c.end - c.contentStart));
  }
  return { isCa, pathLen };
}

/** Parses a DER certificate. Throws `DerError` (or `Error`) on malformed input. */
export function readCertificate(der: Buffer): CertificateInfo {
  const top = expectTlv(der, 0, Tag.SEQUENCE, 'Certificate');
  if (top.end !== der.length) throw new DerError('trailing data after certificate');
  const [tbsT, algT, sigT] = children(der, top);
  if (!tbsT || !algT || !sigT || tbsT.tag !== Tag.SEQUENCE || algT.tag !== Tag.SEQUENCE || sigT.tag !== Tag.BIT_STRING) {
    throw new DerError('certificate is not SEQUENCE { tbs, algorithm, signature }');
  }
  const tbs = children(der, tbsT);
  let i = 0;
  let version = 1;
  if (tbs[0]?.tag === 0xa0) {
    const v = readTlv(der, tbs[0].contentStart, tbs[0].end);
    version = der[v.contentStart]! + 1;
    i = 1;
  }
  const serialT = tbs[i];
  const issuerT = tbs[i + 2];
  const validityT = tbs[i + 3];
  const subjectT = tbs[i + 4];
  const spkiT = tbs[i + 5];
  if (!serialT || serialT.tag !== Tag.INTEGER || !issuerT || !validityT || !subjectT || !spkiT) {
    throw new DerError('truncated TBSCertificate');
  }
  const [nbT, naT] = children(der, validityT);
  if (!nbT || !naT) throw new DerError('malformed validity');
  let extensions = new Map<string, RawExtension>();
  for (const t of tbs.slice(i + 6)) {
    if (t.tag === 0xa3) {
      const extSeq = readTlv(der, t.contentStart, t.end);
      extensions = readExtensions(der, extSeq);
    }
  }
  const algChildren = children(der, algT);
  if (!algChildren[0] || algChildren[0].tag !== Tag.OID) throw new DerError('malformed signature algorithm');

  const bc = extensions.get(ExtOid.BASIC_CONSTRAINTS);
  const basic = bc ? readBasicConstraints(bc.value) : undefined;
  const ku = extensions.get(ExtOid.KEY_USAGE);
  const ski = extensions.get(ExtOid.SUBJECT_KEY_ID);
  const aki = extensions.get(ExtOid.AUTHORITY_KEY_ID);
  let authorityKeyId: Buffer | undefined;
  if (aki) {
    const akiT = expectTlv(aki.value, 0, Tag.SEQUENCE, 'authorityKeyIdentifier');
    const idT = children(aki.value, akiT).find((c) => c.tag === 0x80);
    if (idT) authorityKeyId = content(aki.value, idT);
  }
  const san = extensions.get(ExtOid.SUBJECT_ALT_NAME);
  const names = san ? readGeneralNames(san.value) : { uris: [], dnsNames: [] };
  let serial = content(der, serialT);
  while (serial.length > 1 && serial[0] === 0) serial = serial.subarray(1);

  return {
    der,
    tbsDer: raw(der, tbsT),
    version,
    serial,
    issuerDer: raw(der, issuerT),
    subjectDer: raw(der, subjectT),
    notBefore: decodeTime(der, nbT),
    notAfter: decodeTime(der, naT),
    spkiDer: raw(der, spkiT),
    signatureAlgorithm: decodeOid(content(der, algChildren[0])),
    signature: der.subarray(sigT.contentStart + 1, sigT.end),
    extensions,
    isCa: basic?.isCa,
    pathLen: basic?.pathLen,
    keyUsage: ku ? readKeyUsage(ku.value) : undefined,
    subjectKeyId: ski ? content(ski.value, expectTlv(ski.value, 0, Tag.OCTET_STRING, 'subjectKeyIdentifier')) : undefined,
    authorityKeyId,
    uris: names.uris,
    dnsNames: names.dnsNames,
  };
}
