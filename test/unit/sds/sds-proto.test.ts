/**
 * The hand-written Envoy SDS protos against upstream (envoyproxy/data-plane-api, as generated
 * into go-control-plane's descriptors): every field we declare has the upstream name, number
 * and type; fields we leave out are skipped on decode. The Go client in
 * test/integration/sds.test.ts checks the same on the wire.
 */
import { describe, expect, it } from 'vitest';
import protobuf from 'protobufjs';
import { loadProtoPackageDefinition, messageType } from '../../../src/common/proto.ts';

type FieldSpec = readonly [name: string, id: number, type: string, repeated?: 'repeated' | 'map'];

const E = 'envoy.';
const messages: ReadonlyArray<readonly [string, readonly FieldSpec[]]> = [
  [`${E}service.discovery.v3.DiscoveryRequest`, [['version_info', 1, 'string'], ['node', 2, `${E}config.core.v3.Node`], ['resource_names', 3, 'string', 'repeated'], ['type_url', 4, 'string'], ['response_nonce', 5, 'string'], ['error_detail', 6, 'google.rpc.Status']]],
  [`${E}service.discovery.v3.DiscoveryResponse`, [['version_info', 1, 'string'], ['resources', 2, 'google.protobuf.Any', 'repeated'], ['canary', 3, 'bool'], ['type_url', 4, 'string'], ['nonce', 5, 'string'], ['control_plane', 6, `${E}config.core.v3.ControlPlane`]]],
  [`${E}service.discovery.v3.DeltaDiscoveryRequest`, [['node', 1, `${E}config.core.v3.Node`], ['type_url', 2, 'string'], ['resource_names_subscribe', 3, 'string', 'repeated'], ['resource_names_unsubscribe', 4, 'string', 'repeated'], ['initial_resource_versions', 5, 'string', 'map'], ['response_nonce', 6, 'string'], ['error_detail', 7, 'google.rpc.Status']]],
  [`${E}service.discovery.v3.DeltaDiscoveryResponse`, [['system_version_info', 1, 'string'], ['resources', 2, `${E}service.discovery.v3.Resource`, 'repeated'], ['type_url', 4, 'string'], ['nonce', 5, 'string'], ['removed_resources', 6, 'string', 'repeated'], ['control_plane', 7, `${E}config.core.v3.ControlPlane`]]],
  [`${E}service.discovery.v3.Resource`, [['version', 1, 'string'], ['resource', 2, 'google.protobuf.Any'], ['name', 3, 'string'], ['aliases', 4, 'string', 'repeated']]],
  [`${E}config.core.v3.Node`, [['id', 1, 'string'], ['cluster', 2, 'string'], ['metadata', 3, 'google.protobuf.Struct'], ['locality', 4, `${E}config.core.v3.Locality`], ['user_agent_name', 6, 'string'], ['user_agent_version', 7, 'string'], ['user_agent_build_version', 8, `${E}config.core.v3.BuildVersion`], ['client_features', 10, 'string', 'repeated']]],
  [`${E}config.core.v3.BuildVersion`, [['version', 1, `${E}type.v3.SemanticVersion`], ['metadata', 2, 'google.protobuf.Struct']]],
  [`${E}type.v3.SemanticVersion`, [['major_number', 1, 'uint32'], ['minor_number', 2, 'uint32'], ['patch', 3, 'uint32']]],
  [`${E}config.core.v3.DataSource`, [['filename', 1, 'string'], ['inline_bytes', 2, 'bytes'], ['inline_string', 3, 'string'], ['environment_variable', 4, 'string']]],
  [`${E}config.core.v3.TypedExtensionConfig`, [['name', 1, 'string'], ['typed_config', 2, 'google.protobuf.Any']]],
  [`${E}extensions.transport_sockets.tls.v3.Secret`, [['name', 1, 'string'], ['tls_certificate', 2, `${E}extensions.transport_sockets.tls.v3.TlsCertificate`], ['validation_context', 4, `${E}extensions.transport_sockets.tls.v3.CertificateValidationContext`]]],
  [`${E}extensions.transport_sockets.tls.v3.TlsCertificate`, [['certificate_chain', 1, `${E}config.core.v3.DataSource`], ['private_key', 2, `${E}config.core.v3.DataSource`]]],
  [`${E}extensions.transport_sockets.tls.v3.CertificateValidationContext`, [['trusted_ca', 1, `${E}config.core.v3.DataSource`], ['custom_validator_config', 12, `${E}config.core.v3.TypedExtensionConfig`]]],
  [`${E}extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig`, [['trust_domains', 1, `${E}extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig.TrustDomain`, 'repeated'], ['trust_bundles', 2, `${E}config.core.v3.DataSource`]]],
  [`${E}extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig.TrustDomain`, [['name', 1, 'string'], ['trust_bundle', 2, `${E}config.core.v3.DataSource`]]],
  ['google.rpc.Status', [['code', 1, 'int32'], ['message', 2, 'string'], ['details', 3, 'google.protobuf.Any', 'repeated']]],
];

function spec(f: protobuf.Field): FieldSpec {
  const type = f.resolvedType ? f.resolvedType.fullName.replace(/^\./, '') : f.type;
  const label = f instanceof protobuf.MapField ? 'map' : f.repeated ? 'repeated' : undefined;
  return label === undefined ? [f.name, f.id, type] : [f.name, f.id, type, label];
}

describe('Envoy SDS protos match upstream', () => {
  it.each(messages)('%s', (name, fields) => {
    expect(messageType(name).fieldsArray.map(spec)).toEqual(fields);
  });

  it('serves SecretDiscoveryService with upstream method paths and streaming shapes', () => {
    const service = loadProtoPackageDefinition()['envoy.service.secret.v3.SecretDiscoveryService'] as Record<string, { path: string; requestStream: boolean; responseStream: boolean }>;
    expect(Object.values(service).map(({ path, requestStream, responseStream }) => [path, requestStream, responseStream])).toEqual([
      ['/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets', true, true],
      ['/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', true, true],
      ['/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets', false, false],
    ]);
  });

  it('skips the Node fields it leaves out (extensions 9, listening_addresses 11) when decoding', () => {
    const writer = protobuf.Writer.create();
    writer.uint32((1 << 3) | 2).string('envoy-1');
    // extensions { name: "envoy.filters.http.router" category: "envoy.filters.http" }
    const ext = protobuf.Writer.create().uint32((1 << 3) | 2).string('envoy.filters.http.router').uint32((2 << 3) | 2).string('envoy.filters.http').finish();
    writer.uint32((9 << 3) | 2).bytes(ext);
    writer.uint32((11 << 3) | 2).bytes(Buffer.from([0x0a, 0x00]));
    writer.uint32((6 << 3) | 2).string('envoy');
    const node = messageType('envoy.config.core.v3.Node');
    expect(node.toObject(node.decode(writer.finish()))).toEqual({ id: 'envoy-1', user_agent_name: 'envoy' });
  });
});
