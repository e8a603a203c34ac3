/**
 * The certificate profiles the CA issues, after SPIRE's `pkg/server/credtemplate`:
 *
 * - X509-SVID: subject `C=US, O=SPIRE` (or the caller's), CN = first DNS name; exactly one URI
 *   SAN (the SPIFFE ID) plus DNS SANs; basicConstraints CA=false (critical); keyUsage
 *   digitalSignature|keyEncipherment|keyAgreement (critical); EKU serverAuth+clientAuth; SKI; AKI.
 * - X.509 CA (self-signed root or upstream-signed intermediate): subject `C=US, O=SPIFFE` plus
 *   `serialNumber=<serial>` (as SPIRE sets it); URI SAN `spiffe://<td>`; basicConstraints CA=true
 *   (critical); keyUsage keyCertSign|cRLSign (critical); SKI; AKI when not self-signed.
 */
import { buildCertificate, newSerialNumber, serialToDecimal } from './cert-builder.ts';
import { subjectKeyId, type CertSigner } from './keys.ts';
import { DEFAULT_CA_SUBJECT, DEFAULT_SVID_SUBJECT, encodeName, isEmptyName, type DistinguishedName } from './x509-name.ts';
import {
  ExtOid,
  KeyUsage,
  authorityKeyIdentifier,
  basicConstraints,
  extKeyUsage,
  keyUsage,
  subjectAltName,
  subjectKeyIdentifier,
} from './x509-extensions.ts';

/** The signing side of an issuance: a CA key and the identity of its certificate. */
export interface Issuer {
  readonly signer: CertSigner;
  /** DER subject of the CA certificate (the issuer name of what it signs). */
  readonly subjectDer: Buffer;
  /** Subject key identifier of the CA certificate (the AKI of what it signs). */
  readonly subjectKeyId: Buffer;
}

/** A freshly signed certificate. */
export interface SignedCertificate {
  readonly der: Buffer;
  /** Serial number in decimal. */
  readonly serialNumber: string;
  readonly notAfter: number;
}

/** Inputs of an X509-SVID. Times are ms since the epoch; the caller has validated the ID and key. */
export interface X509SvidTemplate {
  readonly spiffeId: string;
  readonly spkiDer: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly dnsNames: readonly string[];
  /** Replaces the default `C=US, O=SPIRE` subject when given and not empty. */
  readonly subject?: DistinguishedName | undefined;
}

const SVID_KEY_USAGE = [KeyUsage.digitalSignature, KeyUsage.keyEncipherment, KeyUsage.keyAgreement];
const CA_KEY_USAGE = [KeyUsage.keyCertSign, KeyUsage.cRLSign];
const SVID_EKU = [ExtOid.SERVER_AUTH, ExtOid.CLIENT_AUTH];
const DEFAULT_SVID_SUBJECT_DER = encodeName(DEFAULT_SVID_SUBJECT);

// Both are constant; encode once.
const SVID_BASIC_CONSTRAINTS = basicConstraints(false);
const SVID_KEY_USAGE_EXT = keyUsage(SVID_KEY_USAGE);
const SVID_EKU_EXT = extKeyUsage(SVID_EKU);

/** Signs an X509-SVID. */
export function signX509SvidCertificate(t: X509SvidTemplate, issuer: Issuer): SignedCertificate {
  let subjectDer: Buffer;
  const custom = t.subject !== undefined && !isEmptyName(t.subject);
  const firstDns = t.dnsNames[0];
  if (firstDns !== undefined) {
    subjectDer = encodeName({ ...(custom ? t.subject : DEFAULT_SVID_SUBJECT), commonName: firstDns });
  } else {
    subjectDer = custom ? encodeName(t.subject!) : DEFAULT_SVID_SUBJECT_DER;
  }
  const serial = newSerialNumber();
  const der = buildCertificate(
    {
      serial,
      issuerDer: issuer.subjectDer,
      subjectDer,
      notBefore: t.notBefore,
      notAfter: t.notAfter,
      spkiDer: t.spkiDer,
      extensions: [
        SVID_KEY_USAGE_EXT,
        SVID_EKU_EXT,
        SVID_BASIC_CONSTRAINTS,
        subjectKeyIdentifier(subjectKeyId(t.spkiDer)),
        authorityKeyIdentifier(issuer.subjectKeyId),
        subjectAltName([t.spiffeId], t.dnsNames, false),
      ],
    },
    issuer.signer,
  );
  return { der, serialNumber: serialToDecimal(serial), notAfter: Math.floor(t.notAfter / 1000) * 1000 };
}

/** Inputs of an X.509 CA certificate. */
export interface CaTemplate {
  /** `spiffe://<td>`, placed as the URI SAN. */
  readonly trustDomainId: string;
  readonly spkiDer: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly subject?: DistinguishedName | undefined;
  /** pathLenConstraint; omitted (unlimited) when undefined, as SPIRE does for its roots. */
  readonly pathLen?: number | undefined;
}

/**
 * Signs a CA certificate: self-signed when `issuer` is undefined (then `selfSigner` must hold the
 * CA's own key), otherwise signed by the upstream issuer.
 */
export function signCaCertificate(t: CaTemplate, issuer: Issuer | undefined, selfSigner?: CertSigner): SignedCertificate {
  const serial = newSerialNumber();
  const serialNumber = serialToDecimal(serial);
  const base = t.subject !== undefined && !isEmptyName(t.subject) ? t.subject : DEFAULT_CA_SUBJECT;
  const subjectDer = encodeName({ ...base, serialNumber: base.serialNumber ?? serialNumber });
  const ski = subjectKeyId(t.spkiDer);
  const extensions = [keyUsage(CA_KEY_USAGE), basicConstraints(true, t.pathLen), subjectKeyIdentifier(ski)];
  if (issuer) extensions.push(authorityKeyIdentifier(issuer.subjectKeyId));
  extensions.push(subjectAltName([t.trustDomainId], [], false));
  const signer = issuer?.signer ?? selfSigner;
  if (!signer) throw new Error('ca: a self-signed CA certificate needs its own signer');
  const der = buildCertificate(
    {
      serial,
      issuerDer: issuer?.subjectDer ?? subjectDer,
      subjectDer,
      notBefore: t.notBefore,
      notAfter: t.notAfter,
      spkiDer: t.spkiDer,
      extensions,
    },
    signer,
  );
  return { der, serialNumber, notAfter: Math.floor(t.notAfter / 1000) * 1000 };
}
