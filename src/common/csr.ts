/**
 * Builds PKCS#10 certificate signing requests for agent and workload keys (RFC 2986) with the
 * project's small DER encoder: no OpenSSL parsing, so a key + CSR costs little more than the
 * key generation and one signature. Subject `C=US, O=SPIRE` as SPIRE's agent sends.
 */
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { Tag, ctxConstructed, ctxPrimitive, bitString, octetString, oid, seq, set, str, uint } from './der.ts';

const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID_COUNTRY = '2.5.4.6';
const OID_ORGANIZATION = '2.5.4.10';

const SUBJECT = seq(
  set(seq(oid(OID_COUNTRY), str(Tag.PRINTABLE_STRING, 'US'))),
  set(seq(oid(OID_ORGANIZATION), str(Tag.UTF8_STRING, 'SPIRE'))),
);

/** An EC P-256 key pair and a CSR for it. */
export interface KeyAndCsr {
  privateKey: KeyObject;
  /** DER PKCS#10. */
  csr: Buffer;
}

/**
 * Creates a CSR for the key pair whose only SAN is the URI `spiffeId`, or with no SAN when
 * `spiffeId` is undefined (agents do not know their ID before attestation).
 */
export function createCsr(privateKey: KeyObject, publicKey: KeyObject, spiffeId?: string): Buffer {
  return createCsrWithSans(privateKey, publicKey, { uris: spiffeId === undefined ? [] : [spiffeId] });
}

/**
 * Creates an ECDSA-SHA256 CSR for an EC key pair with the given URI and DNS SANs (none: no
 * extension request) and the subject `C=US, O=SPIRE`, or an empty subject with `emptySubject`
 * (as Go's `x509.CreateCertificateRequest` writes for a zero `pkix.Name`).
 */
export function createCsrWithSans(
  privateKey: KeyObject,
  publicKey: KeyObject,
  sans: { uris?: readonly string[]; dnsNames?: readonly string[]; emptySubject?: boolean },
): Buffer {
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const names = [
    ...(sans.dnsNames ?? []).map((n) => ctxPrimitive(2, Buffer.from(n, 'utf8'))),
    ...(sans.uris ?? []).map((u) => ctxPrimitive(6, Buffer.from(u, 'utf8'))),
  ];
  const attributes =
    names.length === 0
      ? ctxConstructed(0, Buffer.alloc(0))
      : ctxConstructed(0, seq(oid(OID_EXTENSION_REQUEST), set(seq(seq(oid(OID_SUBJECT_ALT_NAME), octetString(seq(...names)))))));
  const info = seq(uint(0), sans.emptySubject === true ? seq() : SUBJECT, spki, attributes);
  const signature = sign('sha256', info, privateKey);
  return seq(info, seq(oid(OID_ECDSA_SHA256)), bitString(signature));
}

/** Generates a fresh EC P-256 key and its CSR. */
export function newKeyAndCsr(spiffeId?: string): KeyAndCsr {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, csr: createCsr(privateKey, publicKey, spiffeId) };
}
