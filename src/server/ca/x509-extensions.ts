/** Encoders for the X.509 v3 extensions the CA issues. */
import { ExtOid } from '../../common/x509-oids.ts';
import { bitString, bool, ctxPrimitive, octetString, oid, seq, uint } from '../../common/der.ts';

/** Key usage bits (RFC 5280 §4.2.1.3: bit 0 is the most significant bit of the first byte). */
export const KeyUsage = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

/** One Extension: SEQUENCE { extnID, critical DEFAULT FALSE, extnValue OCTET STRING }. */
export function extension(extOid: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(extOid), bool(true), octetString(value)) : seq(oid(extOid), octetString(value));
}

/** basicConstraints, always critical (as Go marks it). `pathLen` only for CAs. */
export function basicConstraints(isCa: boolean, pathLen?: number): Buffer {
  const parts: Buffer[] = [];
  if (isCa) {
    parts.push(bool(true));
    if (pathLen !== undefined) parts.push(uint(pathLen));
  }
  return extension(ExtOid.BASIC_CONSTRAINTS, true, seq(...parts));
}

/** keyUsage, critical, as a minimal named-bit BIT STRING. */
export function keyUsage(bits: readonly number[]): Buffer {
  let value = 0;
  for (const b of bits) value |= 1 << (15 - b);
  const bytes = value & 0xff ? [value >> 8, value & 0xff] : [value >> 8];
  const last = bytes[bytes.length - 1]!;
  let unused = 0;
  if (last !== 0) while (((last >> unused) & 1) === 0) unused++;
  return extension(ExtOid.KEY_USAGE, true, bitString(Buffer.from(bytes), unused));
}

/** extKeyUsage, non-critical. */
export function extKeyUsage(purposes: readonly string[]): Buffer {
  return extension(ExtOid.EXT_KEY_USAGE, false, seq(...purposes.map((p) => oid(p))));
}

/** subjectKeyIdentifier, non-critical. */
export function subjectKeyIdentifier(keyId: Buffer): Buffer {
  return extension(ExtOid.SUBJECT_KEY_ID, false, octetString(keyId));
}

/** authorityKeyIdentifier with keyIdentifier only, non-critical. */
export function authorityKeyIdentifier(keyId: Buffer): Buffer {
  return extension(ExtOid.AUTHORITY_KEY_ID, false, seq(ctxPrimitive(0, keyId)));
}

/**
 * subjectAltName with URIs then DNS names. Critical only when the subject is empty
 * (RFC 5280 §4.2.1.6).
 */
export function subjectAltName(uris: readonly string[], dnsNames: readonly string[], critical: boolean): Buffer {
  const names: Buffer[] = [];
  for (const u of uris) names.push(ctxPrimitive(6, Buffer.from(u, 'latin1')));
  for (const d of dnsNames) names.push(ctxPrimitive(2, Buffer.from(d, 'latin1')));
  return extension(ExtOid.SUBJECT_ALT_NAME, critical, seq(...names));
}

export { ExtOid };
