/**
 * PKCS#10 certificate signing requests: parsed with the small DER reader and verified with
 * node:crypto. Error texts follow SPIRE's SVID service (`malformed CSR: …`,
 * `invalid CSR signature: …`) so clients see the same messages.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';

import { ApiError, Code } from '../../common/errors.ts';
import { readExtensions, readGeneralNames, type RawExtension } from '../../common/cert-reader.ts';
import { DerError, Tag, children, content, decodeOid, expectTlv, raw, readTlv } from '../../common/der.ts';
import { SigAlg, describeKey } from './keys.ts';
import { ExtOid } from './x509-extensions.ts';

/** A CSR whose self-signature verified. */
export interface VerifiedCsr {
  /** The requested public key. */
  readonly publicKey: KeyObject;
  /** Its DER SubjectPublicKeyInfo, exactly as in the request. */
  readonly spkiDer: Buffer;
  /** URI SANs requested through the extensionRequest attribute. */
  readonly uris: readonly string[];
  /** DNS SANs requested through the extensionRequest attribute. */
  readonly dnsNames: readonly string[];
  /** The requested subject (DER), which SPIRE ignores when signing. */
  readonly subjectDer: Buffer;
}

const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

const SIGNATURE_ALGORITHMS: ReadonlyMap<string, { hash: string; keyType: 'ec' | 'rsa'; name: string }> = new Map([
  [SigAlg.ECDSA_SHA256, { hash: 'sha256', keyType: 'ec', name: 'ECDSA-SHA256' }],
  [SigAlg.ECDSA_SHA384, { hash: 'sha384', keyType: 'ec', name: 'ECDSA-SHA384' }],
  [SigAlg.ECDSA_SHA512, { hash: 'sha512', keyType: 'ec', name: 'ECDSA-SHA512' }],
  [SigAlg.RSA_SHA256, { hash: 'sha256', keyType: 'rsa', name: 'SHA256-RSA' }],
  [SigAlg.RSA_SHA384, { hash: 'sha384', keyType: 'rsa', name: 'SHA384-RSA' }],
  [SigAlg.RSA_SHA512, { hash: 'sha512', keyType: 'rsa', name: 'SHA512-RSA' }],
]);

function malformed(reason: string): ApiError {
  return new ApiError(Code.INVALID_ARGUMENT, `malformed CSR: ${reason}`);
}

function badSignature(reason: string): ApiError {
  return new ApiError(Code.INVALID_ARGUMENT, `invalid CSR signature: ${reason}`);
}

interface CsrStructure {
  criDer: Buffer;
  subjectDer: Buffer;
  spkiDer: Buffer;
  extensions: Map<string, RawExtension>;
  signatureAlgorithm: string;
  signature: Buffer;
}

function readStructure(der: Buffer): CsrStructure {
  const top = expectTlv(der, 0, Tag.SEQUENCE, 'CertificationRequest');
  if (top.end !== der.length) throw new DerError('trailing data after the request');
  const [criT, algT, sigT] = children(der, top);
  if (!criT || !algT || !sigT || criT.tag !== Tag.SEQUENCE || algT.tag !== Tag.SEQUENCE || sigT.tag !== Tag.BIT_STRING) {
    throw new DerError('request is not SEQUENCE { info, algorithm, signature }');
  }
  const [versionT, subjectT, spkiT, attrsT] = children(der, criT);
  if (!versionT || versionT.tag !== Tag.INTEGER || !subjectT || subjectT.tag !== Tag.SEQUENCE || !spkiT || spkiT.tag !== Tag.SEQUENCE) {
    throw new DerError('malformed CertificationRequestInfo');
  }
  const version = content(der, versionT);
  if (version.length !== 1 || version[0] !== 0) throw new DerError('unsupported request version');
  let extensions = new Map<string, RawExtension>();
  if (attrsT) {
    if (attrsT.tag !== 0xa0) throw new DerError('malformed attributes');
    for (const attr of children(der, attrsT)) {
      const [idT, valuesT] = children(der, attr);
      if (!idT || idT.tag !== Tag.OID || !valuesT || valuesT.tag !== Tag.SET) throw new DerError('malformed attribute');
      if (decodeOid(content(der, idT)) !== OID_EXTENSION_REQUEST) continue;
      const first = readTlv(der, valuesT.contentStart, valuesT.end);
      if (first.tag !== Tag.SEQUENCE) throw new DerError('malformed extensionRequest');
      extensions = readExtensions(der, first);
    }
  }
  const algOid = children(der, algT)[0];
  if (!algOid || algOid.tag !== Tag.OID) throw new DerError('malformed signature algorithm');
  if (sigT.end - sigT.contentStart < 2 || der[sigT.contentStart] !== 0) throw new DerError('malformed signature');
  return {
    criDer: raw(der, criT),
    subjectDer: raw(der, subjectT),
    spkiDer: raw(der, spkiT),
    extensions,
    signatureAlgorithm: decodeOid(content(der, algOid)),
    signature: der.subarray(sigT.contentStart + 1, sigT.end),
  };
}

/**
 * Parses a DER PKCS#10 request and verifies its self-signature.
 *
 * Errors (all `INVALID_ARGUMENT`): `missing CSR`; `malformed CSR: <reason>` when it does not
 * parse; `invalid CSR signature: <reason>` when the signature does not verify with the
 * request's own public key.
 */
export function parseAndVerifyCsr(csrDer: Uint8Array): VerifiedCsr {
  if (csrDer.length === 0) throw new ApiError(Code.INVALID_ARGUMENT, 'missing CSR');
  const der = Buffer.isBuffer(csrDer) ? csrDer : Buffer.from(csrDer.buffer, csrDer.byteOffset, csrDer.byteLength);
  let s: CsrStructure;
  let uris: string[] = [];
  let dnsNames: string[] = [];
  try {
    s = readStructure(der);
    const san = s.extensions.get(ExtOid.SUBJECT_ALT_NAME);
    if (san) ({ uris, dnsNames } = readGeneralNames(san.value));
  } catch (err) {
    if (err instanceof DerError) throw malformed(err.message);
    throw err;
  }
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: s.spkiDer, format: 'der', type: 'spki' });
  } catch {
    throw malformed('failed to parse public key');
  }
  const alg = SIGNATURE_ALGORITHMS.get(s.signatureAlgorithm);
  if (!alg) throw badSignature(`unsupported signature algorithm ${s.signatureAlgorithm}`);
  if (publicKey.asymmetricKeyType !== alg.keyType) {
    throw badSignature(`signature algorithm ${alg.name} does not match the ${describeKey(publicKey)} public key`);
  }
  let ok = false;
  try {
    ok = verify(alg.hash, s.criDer, publicKey, s.signature);
  } catch {
    ok = false; // a signature that is not even well-formed fails like a wrong one
  }
  if (!ok) {
    // Go's texts, which SPIRE passes through.
    throw badSignature(alg.keyType === 'ec' ? 'x509: ECDSA verification failure' : 'crypto/rsa: verification error');
  }
  return { publicKey, spkiDer: s.spkiDer, uris, dnsNames, subjectDer: s.subjectDer };
}
