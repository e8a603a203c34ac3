/** Assembles and signs X.509 v3 certificates from already-encoded parts. */
import { randomBytes, sign } from 'node:crypto';

import { bitString, ctxConstructed, seq, time, uint, uintBytes } from '../../common/der.ts';
import type { CertSigner } from './keys.ts';

/** Everything a certificate needs, already DER-encoded where it is a structure. */
export interface CertificateParts {
  /** Serial number magnitude (big-endian, positive). */
  readonly serial: Buffer;
  readonly issuerDer: Buffer;
  readonly subjectDer: Buffer;
  /** Milliseconds since the epoch; encoded in whole seconds. */
  readonly notBefore: number;
  readonly notAfter: number;
  readonly spkiDer: Buffer;
  /** Encoded Extension elements, in order. */
  readonly extensions: readonly Buffer[];
}

/** A random positive 128-bit serial number, in [1, 2^128 − 1] as SPIRE draws it. */
export function newSerialNumber(): Buffer {
  for (;;) {
    const bytes = randomBytes(16);
    if (bytes.some((b) => b !== 0)) return bytes;
  }
}

/** The decimal form of a serial number (what Go's `big.Int.String()` prints, so logs compare with SPIRE's). */
export function serialToDecimal(serial: Buffer): string {
  return BigInt(`0x${serial.toString('hex') || '0'}`).toString(10);
}

/** Builds the TBSCertificate, signs it with `signer` and returns the certificate DER. */
export function buildCertificate(parts: CertificateParts, signer: CertSigner): Buffer {
  const tbs = seq(
    ctxConstructed(0, uint(2)), // version v3
    uintBytes(parts.serial),
    signer.algorithmIdentifier,
    parts.issuerDer,
    seq(time(parts.notBefore), time(parts.notAfter)),
    parts.subjectDer,
    parts.spkiDer,
    ctxConstructed(3, seq(...parts.extensions)),
  );
  // ECDSA signatures come out DER-encoded (the X.509 form); RSA ones as PKCS#1 v1.5.
  const signature = sign(signer.hash, tbs, signer.key);
  return seq(tbs, signer.algorithmIdentifier, bitString(signature));
}
