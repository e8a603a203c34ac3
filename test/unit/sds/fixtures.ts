/**
 * Small workload states for the SDS unit tests: certificates are short DER sequences (the
 * builder only splits and PEM-encodes them), so expected PEM can be written out.
 */
import type { BundleSnapshot, WorkloadState, X509Identity } from '../../../src/agent/manager/workload-state.ts';
import { messageType } from '../../../src/common/proto.ts';
import type { Node__Output } from '../../../src/gen/envoy/config/core/v3/Node.ts';
import type { DiscoveryRequest__Output } from '../../../src/gen/envoy/service/discovery/v3/DiscoveryRequest.ts';
import { PROTO_LOADER_OPTIONS } from '../../../src/common/proto.ts';
import type { EncodedAny } from '../../../src/agent/sds/secrets.ts';

/** A one-byte DER "certificate" (an OCTET STRING holding `n`). */
export function der(n: number): Buffer {
  return Buffer.from([0x04, 0x01, n]);
}

/** PEM of {@link der}(n) blocks of a type, as Go's pem.Encode writes them. */
export function pem(type: string, ...ns: number[]): string {
  return ns.map((n) => `-----BEGIN ${type}-----\n${der(n).toString('base64')}\n-----END ${type}-----\n`).join('');
}

export const TD = 'example.org';

export function svid(entryId: string, spiffeId: string, chain: number[], key: number, federatesWith: string[] = []): X509Identity {
  return {
    entryId,
    spiffeId,
    hint: '',
    createdAt: 1,
    certChain: Buffer.concat(chain.map(der)),
    privateKey: der(key),
    expiresAt: 2_000_000_000,
    federatesWith,
  };
}

/** Bundles: example.org roots 1+2, fed.org root 3, other.org root 4 (nobody federates with it), jwt-only.org JWT keys only. */
export function bundles(overrides: Partial<Record<string, Buffer>> = {}): BundleSnapshot {
  const x509 = new Map<string, Buffer>([
    [TD, overrides[TD] ?? Buffer.concat([der(1), der(2)])],
    ['fed.org', overrides['fed.org'] ?? der(3)],
    ['other.org', der(4)],
  ]);
  return { trustDomain: TD, x509, jwks: new Map([['jwt-only.org', Buffer.from('{"keys":[]}')]]), jwtKeys: new Map() };
}

export const A = svid('entry-a', `spiffe://${TD}/a`, [10, 11], 20, ['fed.org', 'jwt-only.org', 'unknown.org']);
export const B = svid('entry-b', `spiffe://${TD}/b`, [12], 21);

export function state(identities: X509Identity[] = [A, B], b: BundleSnapshot = bundles()): WorkloadState {
  return { identities, bundles: b };
}

/** A node as decoded (only what the tests set). */
export function node(fields: { metadata?: Record<string, { kind: 'boolValue'; boolValue: boolean } | { kind: 'stringValue'; stringValue: string }>; version?: [number, number] } = {}): Node__Output {
  return {
    id: 'envoy-1',
    cluster: 'c',
    metadata: fields.metadata === undefined ? null : { fields: fields.metadata },
    locality: null,
    user_agent_name: 'envoy',
    client_features: [],
    ...(fields.version === undefined
      ? {}
      : {
          user_agent_version_type: 'user_agent_build_version' as const,
          user_agent_build_version: { version: { major_number: fields.version[0], minor_number: fields.version[1], patch: 0 }, metadata: null },
        }),
  };
}

/** A decoded DiscoveryRequest. */
export function request(fields: Partial<Omit<DiscoveryRequest__Output, 'error_detail'>> & { error?: string } = {}): DiscoveryRequest__Output {
  return {
    version_info: fields.version_info ?? '',
    node: fields.node ?? null,
    resource_names: fields.resource_names ?? [],
    type_url: fields.type_url ?? 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
    response_nonce: fields.response_nonce ?? '',
    error_detail: fields.error === undefined ? null : { code: 3, message: fields.error, details: [] },
  };
}

const secretType = messageType('envoy.extensions.transport_sockets.tls.v3.Secret');
const validatorType = messageType('envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig');

/** A decoded secret, summarised: `tls name chain key`, `ca name pem`, or `spiffe name td=pem…`. */
export type SecretSummary =
  | { readonly name: string; readonly tls: { readonly chain: string; readonly key: string } }
  | { readonly name: string; readonly trustedCa: string }
  | { readonly name: string; readonly spiffe: ReadonlyArray<readonly [string, string]> };

/** Decodes one resource as Envoy would and summarises it. */
export function summarise(resource: EncodedAny): SecretSummary {
  const options = PROTO_LOADER_OPTIONS as Parameters<typeof secretType.toObject>[1];
  const secret = secretType.toObject(secretType.decode(resource.value), options) as {
    name: string;
    type?: string;
    tls_certificate?: { certificate_chain: { inline_bytes: Buffer }; private_key: { inline_bytes: Buffer } };
    validation_context?: { trusted_ca: { inline_bytes: Buffer } | null; custom_validator_config: { name: string; typed_config: { type_url: string; value: Buffer } } | null };
  };
  if (resource.type_url !== 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret') throw new Error(`type_url ${resource.type_url}`);
  if (secret.type === 'tls_certificate' && secret.tls_certificate !== undefined) {
    return { name: secret.name, tls: { chain: secret.tls_certificate.certificate_chain.inline_bytes.toString(), key: secret.tls_certificate.private_key.inline_bytes.toString() } };
  }
  const vc = secret.validation_context;
  if (vc?.trusted_ca !== null && vc?.trusted_ca !== undefined) return { name: secret.name, trustedCa: vc.trusted_ca.inline_bytes.toString() };
  const custom = vc?.custom_validator_config;
  if (custom === null || custom === undefined) throw new Error('empty validation context');
  if (custom.name !== 'envoy.tls.cert_validator.spiffe') throw new Error(`validator ${custom.name}`);
  if (custom.typed_config.type_url !== 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig') throw new Error(`typed_config ${custom.typed_config.type_url}`);
  const config = validatorType.toObject(validatorType.decode(custom.typed_config.value), options) as { trust_domains: Array<{ name: string; trust_bundle: { inline_bytes: Buffer } }> };
  return { name: secret.name, spiffe: config.trust_domains.map((td) => [td.name, td.trust_bundle.inline_bytes.toString()] as const) };
}
