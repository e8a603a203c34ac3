/** The server's certificate authority: public entry points. */
export { openCertificateAuthority } from './authority.ts';
export { parseAndVerifyCsr, type VerifiedCsr } from './csr.ts';
export { readCertificate, type CertificateInfo } from '../../common/cert-reader.ts';
export { certificatesToPem, decodePemCertificates, toPem } from '../../common/pem.ts';
export { splitConcatenated as splitDerCertificates } from '../../common/der.ts';
export { activationThreshold, preparationThreshold } from './rotation.ts';
export type {
  AuthorityInfo,
  AuthorityStatus,
  CaBundle,
  CaOptions,
  CertificateAuthority,
  CsrSvidRequest,
  DiskUpstreamConfig,
  DistinguishedName,
  JwtAuthority,
  JwtSvidRequest,
  JwtSvidResult,
  KeyType,
  RotationResult,
  ServerIdentity,
  X509SvidRequest,
  X509SvidResult,
} from './types.ts';
