/**
 * The secrets an SDS request asks for, built from a workload's state as SPIRE's SDS v3
 * handler builds them. Pure: no I/O, no clock.
 *
 * Resource names, each matched once:
 * - the agent's trust domain ID (`spiffe://td`), or else `default_bundle_name` (`ROOTCA`), or
 *   else `default_all_bundles_name` (`ALL`): a validation context (only the first of the three
 *   that is asked for is served, as in SPIRE: asking for two of them is refused);
 * - a federated trust domain ID the caller's entries federate with: its validation context;
 * - a SPIFFE ID of one of the caller's X509-SVIDs: a TLS certificate named by that ID;
 *   `default_svid_name` (`default`): the first SVID by entry ID, named `default` (not when the
 *   same request also names that SVID by its ID);
 * - no name at all: every bundle and every SVID, each under its ID.
 * Any name left unmatched refuses the whole request with InvalidArgument.
 *
 * Validation contexts carry the SPIFFE certificate validator (one trust domain, or every one
 * for `ALL`), or plain `trusted_ca` roots when the client disabled it or is too old for it.
 */
import { ApiError, Code } from '../../common/errors.ts';
import { messageType } from '../../common/proto.ts';
import { splitConcatenated } from '../../common/der.ts';
import { certificatesToPem, toPem } from '../../common/pem.ts';
import { trustDomainId } from '../../common/spiffe-id.ts';
import type { Node__Output } from '../../gen/envoy/config/core/v3/Node.ts';
import type { Secret } from '../../gen/envoy/extensions/transport_sockets/tls/v3/Secret.ts';
import type { SPIFFECertValidatorConfig } from '../../gen/envoy/extensions/transport_sockets/tls/v3/SPIFFECertValidatorConfig.ts';
import { servedFederatedDomains } from '../workload-api/bundle-responses.ts';
import type { WorkloadState, X509Identity } from '../manager/workload-state.ts';
import type { SdsConfig } from './sds-config.ts';
import { useSpiffeValidator } from './validator-choice.ts';

/** The type URL of every SDS resource. */
export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
/** The type URL of the SPIFFE validator's typed config. */
export const SPIFFE_VALIDATOR_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig';
/** The extension name Envoy knows the SPIFFE certificate validator by. */
export const SPIFFE_VALIDATOR_NAME = 'envoy.tls.cert_validator.spiffe';

/** What a request asks for. */
export interface SecretQuery {
  readonly resourceNames: readonly string[];
  readonly node: Node__Output | null | undefined;
}

/** A google.protobuf.Any with its value already encoded. */
export interface EncodedAny {
  type_url: string;
  value: Buffer;
}

/** One built resource: its name (for logs) and the Any that carries the encoded Secret. */
export interface BuiltSecret {
  readonly name: string;
  readonly resource: EncodedAny;
}

/** The secrets of a request, or why it is refused. */
export type SecretsOutcome = { readonly ok: true; readonly secrets: readonly BuiltSecret[] } | { readonly ok: false; readonly error: ApiError };

const secretType = messageType('envoy.extensions.transport_sockets.tls.v3.Secret');
const spiffeValidatorType = messageType('envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig');

function encodeSecret(secret: Secret): BuiltSecret {
  const value = Buffer.from(secretType.encode(secretType.fromObject(secret)).finish());
  return { name: secret.name ?? '', resource: { type_url: SECRET_TYPE_URL, value } };
}

/** Concatenated DER certificates as concatenated PEM blocks (empty for none). */
function pemCertificates(der: Buffer | undefined): Buffer {
  if (der === undefined || der.length === 0) return Buffer.alloc(0);
  return Buffer.from(certificatesToPem(splitConcatenated(der)));
}

function tlsCertificate(identity: X509Identity, name: string): BuiltSecret {
  return encodeSecret({
    name,
    tls_certificate: {
      certificate_chain: { inline_bytes: pemCertificates(identity.certChain) },
      private_key: { inline_bytes: Buffer.from(toPem('PRIVATE KEY', identity.privateKey)) },
    },
  });
}

/** Builds validation contexts over a fixed set of bundles (trust domain name → DER roots). */
interface ValidationContexts {
  one(resourceName: string, trustDomain: string): BuiltSecret;
  all(resourceName: string): BuiltSecret;
}

function spiffeValidatorSecret(resourceName: string, domains: ReadonlyArray<readonly [string, Buffer | undefined]>): BuiltSecret {
  const config: SPIFFECertValidatorConfig = {
    trust_domains: domains.map(([name, roots]) => ({ name, trust_bundle: { inline_bytes: pemCertificates(roots) } })),
  };
  const typedConfig = Buffer.from(spiffeValidatorType.encode(spiffeValidatorType.fromObject(config)).finish());
  return encodeSecret({
    name: resourceName,
    validation_context: { custom_validator_config: { name: SPIFFE_VALIDATOR_NAME, typed_config: { type_url: SPIFFE_VALIDATOR_TYPE_URL, value: typedConfig } } },
  });
}

function spiffeValidatorContexts(bundles: ReadonlyMap<string, Buffer | undefined>): ValidationContexts {
  return {
    one: (resourceName, td) => spiffeValidatorSecret(resourceName, [[td, bundles.get(td)]]),
    all: (resourceName) => spiffeValidatorSecret(resourceName, [...bundles].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  };
}

function trustedCaContexts(bundles: ReadonlyMap<string, Buffer | undefined>): ValidationContexts {
  return {
    one: (resourceName, td) => encodeSecret({ name: resourceName, validation_context: { trusted_ca: { inline_bytes: pemCertificates(bundles.get(td)) } } }),
    all: () => {
      throw new ApiError(Code.INTERNAL, 'unable to use "SPIFFE validator" on Envoy below 1.17');
    },
  };
}

/** A string as Go's %q writes it. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (c === 7) out += '\\a';
    else if (c === 8) out += '\\b';
    else if (c === 12) out += '\\f';
    else if (c === 10) out += '\\n';
    else if (c === 13) out += '\\r';
    else if (c === 9) out += '\\t';
    else if (c === 11) out += '\\v';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** InvalidArgument for names the caller is not entitled to, worded as SPIRE (Go's %q of a sorted []string). */
export function notAuthorized(names: Iterable<string>): ApiError {
  const sorted = [...names].sort();
  return new ApiError(Code.INVALID_ARGUMENT, `workload is not authorized for the requested identities [${sorted.map(goQuote).join(' ')}]`);
}

/** Builds the secrets a query asks for from a workload's state. */
export function buildSecrets(state: WorkloadState, query: SecretQuery, config: SdsConfig): SecretsOutcome {
  try {
    return { ok: true, secrets: build(state, query, config) };
  } catch (err) {
    if (err instanceof ApiError) return { ok: false, error: err };
    throw err;
  }
}

function build(state: WorkloadState, query: SecretQuery, config: SdsConfig): BuiltSecret[] {
  const names = new Set(query.resourceNames.filter((name) => name !== ''));
  const everything = names.size === 0;
  const { bundles } = state;
  const own = bundles.trustDomain;
  const federated = servedFederatedDomains(state);
  const roots = new Map<string, Buffer | undefined>([own, ...federated].map((td) => [td, bundles.x509.get(td)]));
  const contexts = useSpiffeValidator(query.node, config.disableSpiffeCertValidation) ? spiffeValidatorContexts(roots) : trustedCaContexts(roots);
  const out: BuiltSecret[] = [];

  const ownId = trustDomainId(own);
  if (everything || names.has(ownId)) {
    out.push(contexts.one(ownId, own));
    names.delete(ownId);
  } else if (names.has(config.defaultBundleName)) {
    out.push(contexts.one(config.defaultBundleName, own));
    names.delete(config.defaultBundleName);
  } else if (names.has(config.defaultAllBundlesName)) {
    out.push(contexts.all(config.defaultAllBundlesName));
    names.delete(config.defaultAllBundlesName);
  }

  for (const td of federated) {
    const id = trustDomainId(td);
    if (everything || names.has(id)) {
      out.push(contexts.one(id, td));
      names.delete(id);
    }
  }

  state.identities.forEach((identity, i) => {
    if (everything || names.has(identity.spiffeId)) {
      out.push(tlsCertificate(identity, identity.spiffeId));
      names.delete(identity.spiffeId);
    } else if (i === 0 && names.has(config.defaultSvidName)) {
      out.push(tlsCertificate(identity, config.defaultSvidName));
      names.delete(config.defaultSvidName);
    }
  });

  if (names.size > 0) throw notAuthorized(names);
  return out;
}
