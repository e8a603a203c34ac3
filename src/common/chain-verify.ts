/**
 * Checks that X.509 chains lead to one of a set of roots by signature: the leaf is signed
 * by the next certificate of its chain (or by a root), and so on until a root signs.
 *
 * Built for checking many SVIDs from the same CA at once (a restored workload cache): the
 * DER is read with the small reader (no OpenSSL parsing), issuer public keys are imported
 * once, and an intermediate found to lead to a root is remembered, so each further leaf
 * costs one signature check (about 0.2 ms for P-256 here), or none with
 * `leafSignatures: 'first-per-issuer'`. Validity periods, name constraints and key usages
 * are not checked here; callers check the leaf's expiry themselves.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { readCertificate, type CertificateInfo } from './cert-reader.ts';

const HASH_OF_SIGNATURE_ALGORITHM: ReadonlyMap<string, string> = new Map([
  ['1.2.840.10045.4.3.2', 'sha256'], // ecdsa-with-SHA256
  ['1.2.840.10045.4.3.3', 'sha384'],
  ['1.2.840.10045.4.3.4', 'sha512'],
  ['1.2.840.113549.1.1.11', 'sha256'], // sha256WithRSAEncryption
  ['1.2.840.113549.1.1.12', 'sha384'],
  ['1.2.840.113549.1.1.13', 'sha512'],
]);

interface Issuer {
  readonly info: CertificateInfo;
  key: KeyObject | undefined;
}

function issuerKey(issuer: Issuer): KeyObject {
  issuer.key ??= createPublicKey({ key: issuer.info.spkiDer, format: 'der', type: 'spki' });
  return issuer.key;
}

function signedBy(cert: CertificateInfo, issuer: Issuer): boolean {
  if (!cert.issuerDer.equals(issuer.info.subjectDer)) return false;
  const hash = HASH_OF_SIGNATURE_ALGORITHM.get(cert.signatureAlgorithm);
  if (hash === undefined) return false;
  try {
    return verify(hash, cert.tbsDer, issuerKey(issuer), cert.signature);
  } catch {
    return false; // a malformed key or signature fails like a wrong one
  }
}

export interface ChainVerifierOptions {
  /**
   * `all` (default): every leaf's signature is checked. `first-per-issuer`: once a leaf's
   * signature was checked, later leaves naming the same issuer and authority key ID are
   * accepted on those names. For re-checking certificates this process received from its
   * server earlier (a restored cache, integrity-checked): the question there is whether
   * these roots still vouch for their issuer (a new CA has a new key ID), not whether a leaf
   * was forged. Leaves without an authority key ID are always checked by signature.
   */
  leafSignatures?: 'all' | 'first-per-issuer';
}

/** A verifier for chains against fixed roots (see file comment). */
export class ChainVerifier {
  readonly #roots: Issuer[];
  /** Intermediates (by DER, base64) already shown to lead to a root. */
  readonly #trusted = new Map<string, Issuer>();
  /** With `first-per-issuer`: issuer name + key ID of leaves already checked by signature. */
  readonly #vouched: Set<string> | undefined;

  /** `roots`: DER certificates; unreadable ones are skipped. */
  constructor(roots: readonly Buffer[], options: ChainVerifierOptions = {}) {
    this.#vouched = options.leafSignatures === 'first-per-issuer' ? new Set() : undefined;
    this.#roots = [];
    for (const der of roots) {
      try {
        this.#roots.push({ info: readCertificate(der), key: undefined });
      } catch {
        // An unreadable root can sign nothing.
      }
    }
  }

  /** Whether the chain (DER, leaf first) is signed up to one of the roots. Never throws. */
  verify(chain: readonly Buffer[]): boolean {
    let certs: CertificateInfo[];
    try {
      certs = chain.map((der) => readCertificate(der));
    } catch {
      return false;
    }
    return this.verifyCertificates(certs);
  }

  /** {@link verify} for certificates the caller has already read (leaf first). */
  verifyCertificates(certs: readonly CertificateInfo[]): boolean {
    const leaf = certs[0];
    if (leaf === undefined) return false;
    const issuerKeyId = this.#vouched !== undefined && leaf.authorityKeyId !== undefined ? `${leaf.issuerDer.toString('base64')}|${leaf.authorityKeyId.toString('hex')}` : undefined;
    if (issuerKeyId !== undefined && this.#vouched?.has(issuerKeyId) === true) return true;
    const ok = this.#verifySignatures(certs);
    if (ok && issuerKeyId !== undefined) this.#vouched?.add(issuerKeyId);
    return ok;
  }

  #verifySignatures(certs: readonly CertificateInfo[]): boolean {
    const newlyTrusted: Issuer[] = [];
    for (let i = 0; i < certs.length; i++) {
      const cert = certs[i] as CertificateInfo;
      if (this.#roots.some((root) => signedBy(cert, root))) {
        for (const issuer of newlyTrusted) this.#trusted.set(issuer.info.der.toString('base64'), issuer);
        return true;
      }
      const next = certs[i + 1];
      if (next === undefined || next.isCa !== true) return false;
      const known = this.#trusted.get(next.der.toString('base64'));
      const issuer = known ?? { info: next, key: undefined };
      if (!signedBy(cert, issuer)) return false;
      if (known !== undefined) return true;
      newlyTrusted.push(issuer);
    }
    return false;
  }
}
