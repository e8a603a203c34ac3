/**
 * Wire-compatibility checks for the hand-written protos under proto/.
 *
 * Every expected name, number, type and streaming flag below was copied from
 * the upstream definitions (spiffe/go-spiffe proto/spiffe/workload/workload.proto,
 * spiffe/spire-api-sdk proto/spire/api/**, grpc/grpc-proto grpc/health/v1/health.proto),
 * not from the local files.
 */
import { describe, it, expect } from 'vitest';
import { readdirSync } from 'node:fs';
import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import {
  AgentService,
  BundleService,
  EntryService,
  HealthService,
  SvidService,
  WorkloadApiService,
  AgentClient,
  BundleClient,
  EntryClient,
  HealthClient,
  SvidClient,
  WorkloadApiClient,
  PROTO_DIR,
  PROTO_LOADER_OPTIONS,
  listProtoFiles,
  loadProtoPackageDefinition,
  methodAlias,
} from '../../src/common/proto.ts';
import { loadSync } from '@grpc/proto-loader';

const protoDir = fileURLToPath(new URL('../../proto/', import.meta.url));

function loadRoot(): protobuf.Root {
  const files = readdirSync(protoDir, { recursive: true, encoding: 'utf8' })
    .filter((p) => p.endsWith('.proto'))
    .map((p) => p.split(sep).join('/'));
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(protoDir, target);
  root.loadSync(files, { keepCase: true });
  root.resolveAll();
  return root;
}

const root = loadRoot();

/** Field label: plain, `repeated`, `map` (map<string, V>) or proto3 `optional`. */
type Label = 'repeated' | 'map' | 'optional' | undefined;
/** [field name, field number, value type (fully qualified for messages/enums), label]. */
type FieldSpec = readonly [name: string, id: number, type: string, label?: Label];

function typeName(field: protobuf.FieldBase): string {
  return field.resolvedType ? field.resolvedType.fullName.replace(/^\./, '') : field.type;
}

function labelOf(field: protobuf.FieldBase): Label {
  if (field instanceof protobuf.MapField) return 'map';
  if (field.repeated) return 'repeated';
  if (field.partOf?.name === `_${field.name}`) return 'optional';
  return undefined;
}

const messages: ReadonlyArray<readonly [message: string, fields: readonly FieldSpec[]]> = [
  // SPIFFE Workload API (no proto package).
  ['X509SVIDRequest', []],
  [
    'X509SVIDResponse',
    [
      ['svids', 1, 'X509SVID', 'repeated'],
      ['crl', 2, 'bytes', 'repeated'],
      ['federated_bundles', 3, 'bytes', 'map'],
    ],
  ],
  [
    'X509SVID',
    [
      ['spiffe_id', 1, 'string'],
      ['x509_svid', 2, 'bytes'],
      ['x509_svid_key', 3, 'bytes'],
      ['bundle', 4, 'bytes'],
      ['hint', 5, 'string'],
    ],
  ],
  ['X509BundlesRequest', []],
  [
    'X509BundlesResponse',
    [
      ['crl', 1, 'bytes', 'repeated'],
      ['bundles', 2, 'bytes', 'map'],
    ],
  ],
  [
    'JWTSVIDRequest',
    [
      ['audience', 1, 'string', 'repeated'],
      ['spiffe_id', 2, 'string'],
    ],
  ],
  ['JWTSVIDResponse', [['svids', 1, 'JWTSVID', 'repeated']]],
  [
    'JWTSVID',
    [
      ['spiffe_id', 1, 'string'],
      ['svid', 2, 'string'],
      ['hint', 3, 'string'],
    ],
  ],
  ['JWTBundlesRequest', []],
  ['JWTBundlesResponse', [['bundles', 1, 'bytes', 'map']]],
  [
    'ValidateJWTSVIDRequest',
    [
      ['audience', 1, 'string'],
      ['svid', 2, 'string'],
    ],
  ],
  [
    'ValidateJWTSVIDResponse',
    [
      ['spiffe_id', 1, 'string'],
      ['claims', 2, 'google.protobuf.Struct'],
    ],
  ],
  ['WITSVIDRequest', [['spiffe_id', 1, 'string']]],
  ['WITSVIDResponse', [['svids', 1, 'WITSVID', 'repeated']]],
  [
    'WITSVID',
    [
      ['spiffe_id', 1, 'string'],
      ['wit_svid', 2, 'string'],
      ['wit_svid_key', 3, 'string'],
      ['hint', 4, 'string'],
    ],
  ],
  ['WITBundlesRequest', []],
  ['WITBundlesResponse', [['bundles', 1, 'string', 'map']]],

  // spire.api.types
  [
    'spire.api.types.SPIFFEID',
    [
      ['trust_domain', 1, 'string'],
      ['path', 2, 'string'],
    ],
  ],
  [
    'spire.api.types.Selector',
    [
      ['type', 1, 'string'],
      ['value', 2, 'string'],
    ],
  ],
  [
    'spire.api.types.SelectorMatch',
    [
      ['selectors', 1, 'spire.api.types.Selector', 'repeated'],
      ['match', 2, 'spire.api.types.SelectorMatch.MatchBehavior'],
    ],
  ],
  [
    'spire.api.types.FederatesWithMatch',
    [
      ['trust_domains', 1, 'string', 'repeated'],
      ['match', 2, 'spire.api.types.FederatesWithMatch.MatchBehavior'],
    ],
  ],
  [
    'spire.api.types.Entry',
    [
      ['id', 1, 'string'],
      ['spiffe_id', 2, 'spire.api.types.SPIFFEID'],
      ['parent_id', 3, 'spire.api.types.SPIFFEID'],
      ['selectors', 4, 'spire.api.types.Selector', 'repeated'],
      ['x509_svid_ttl', 5, 'int32'],
      ['federates_with', 6, 'string', 'repeated'],
      ['admin', 7, 'bool'],
      ['downstream', 8, 'bool'],
      ['expires_at', 9, 'int64'],
      ['dns_names', 10, 'string', 'repeated'],
      ['revision_number', 11, 'int64'],
      ['store_svid', 12, 'bool'],
      ['jwt_svid_ttl', 13, 'int32'],
      ['hint', 14, 'string'],
      ['created_at', 15, 'int64'],
      ['additional_attributes', 16, 'spire.api.types.Entry.AdditionalAttributes', 'optional'],
    ],
  ],
  [
    'spire.api.types.Entry.AdditionalAttributes',
    [
      ['disable_x509_svid_prefetch', 1, 'bool'],
      ['jwt_svid_include_jti', 2, 'bool'],
    ],
  ],
  [
    'spire.api.types.EntryMask',
    [
      ['spiffe_id', 2, 'bool'],
      ['parent_id', 3, 'bool'],
      ['selectors', 4, 'bool'],
      ['x509_svid_ttl', 5, 'bool'],
      ['federates_with', 6, 'bool'],
      ['admin', 7, 'bool'],
      ['downstream', 8, 'bool'],
      ['expires_at', 9, 'bool'],
      ['dns_names', 10, 'bool'],
      ['revision_number', 11, 'bool'],
      ['store_svid', 12, 'bool'],
      ['jwt_svid_ttl', 13, 'bool'],
      ['hint', 14, 'bool'],
      ['created_at', 15, 'bool'],
      ['additional_attributes', 16, 'bool'],
    ],
  ],
  [
    'spire.api.types.Agent',
    [
      ['id', 1, 'spire.api.types.SPIFFEID'],
      ['attestation_type', 2, 'string'],
      ['x509svid_serial_number', 3, 'string'],
      ['x509svid_expires_at', 4, 'int64'],
      ['selectors', 5, 'spire.api.types.Selector', 'repeated'],
      ['banned', 6, 'bool'],
      ['can_reattest', 7, 'bool'],
      ['agent_version', 8, 'string'],
    ],
  ],
  [
    'spire.api.types.AgentMask',
    [
      ['attestation_type', 2, 'bool'],
      ['x509svid_serial_number', 3, 'bool'],
      ['x509svid_expires_at', 4, 'bool'],
      ['selectors', 5, 'bool'],
      ['banned', 6, 'bool'],
      ['can_reattest', 7, 'bool'],
      ['agent_version', 8, 'bool'],
    ],
  ],
  [
    'spire.api.types.AttestationData',
    [
      ['type', 1, 'string'],
      ['payload', 2, 'bytes'],
    ],
  ],
  [
    'spire.api.types.JoinToken',
    [
      ['value', 1, 'string'],
      ['expires_at', 2, 'int64'],
    ],
  ],
  [
    'spire.api.types.X509SVID',
    [
      ['cert_chain', 1, 'bytes', 'repeated'],
      ['id', 2, 'spire.api.types.SPIFFEID'],
      ['expires_at', 3, 'int64'],
      ['hint', 4, 'string'],
    ],
  ],
  [
    'spire.api.types.JWTSVID',
    [
      ['token', 1, 'string'],
      ['id', 2, 'spire.api.types.SPIFFEID'],
      ['expires_at', 3, 'int64'],
      ['issued_at', 4, 'int64'],
      ['hint', 5, 'string'],
    ],
  ],
  [
    'spire.api.types.WITSVID',
    [
      ['token', 1, 'string'],
      ['id', 2, 'spire.api.types.SPIFFEID'],
      ['expires_at', 3, 'int64'],
      ['issued_at', 4, 'int64'],
      ['hint', 5, 'string'],
    ],
  ],
  [
    'spire.api.types.Bundle',
    [
      ['trust_domain', 1, 'string'],
      ['x509_authorities', 2, 'spire.api.types.X509Certificate', 'repeated'],
      ['jwt_authorities', 3, 'spire.api.types.JWTKey', 'repeated'],
      ['refresh_hint', 4, 'int64'],
      ['sequence_number', 5, 'uint64'],
      ['wit_authorities', 6, 'spire.api.types.WITKey', 'repeated'],
    ],
  ],
  [
    'spire.api.types.X509Certificate',
    [
      ['asn1', 1, 'bytes'],
      ['tainted', 2, 'bool'],
    ],
  ],
  [
    'spire.api.types.JWTKey',
    [
      ['public_key', 1, 'bytes'],
      ['key_id', 2, 'string'],
      ['expires_at', 3, 'int64'],
      ['tainted', 4, 'bool'],
    ],
  ],
  [
    'spire.api.types.BundleMask',
    [
      ['x509_authorities', 2, 'bool'],
      ['jwt_authorities', 3, 'bool'],
      ['refresh_hint', 4, 'bool'],
      ['sequence_number', 5, 'bool'],
      ['wit_authorities', 6, 'bool'],
    ],
  ],
  [
    'spire.api.types.Status',
    [
      ['code', 1, 'int32'],
      ['message', 2, 'string'],
    ],
  ],
  [
    'spire.api.types.PermissionDeniedDetails',
    [['reason', 1, 'spire.api.types.PermissionDeniedDetails.Reason']],
  ],

  // spire.api.server.agent.v1
  [
    'spire.api.server.agent.v1.AttestAgentRequest',
    [
      ['params', 1, 'spire.api.server.agent.v1.AttestAgentRequest.Params'],
      ['challenge_response', 2, 'bytes'],
    ],
  ],
  [
    'spire.api.server.agent.v1.AttestAgentRequest.Params',
    [
      ['data', 1, 'spire.api.types.AttestationData'],
      ['params', 2, 'spire.api.server.agent.v1.AgentX509SVIDParams'],
    ],
  ],
  [
    'spire.api.server.agent.v1.AttestAgentResponse',
    [
      ['result', 1, 'spire.api.server.agent.v1.AttestAgentResponse.Result'],
      ['challenge', 2, 'bytes'],
    ],
  ],
  [
    'spire.api.server.agent.v1.AttestAgentResponse.Result',
    [
      ['svid', 1, 'spire.api.types.X509SVID'],
      ['reattestable', 2, 'bool'],
    ],
  ],
  ['spire.api.server.agent.v1.AgentX509SVIDParams', [['csr', 1, 'bytes']]],
  ['spire.api.server.agent.v1.RenewAgentRequest', [['params', 1, 'spire.api.server.agent.v1.AgentX509SVIDParams']]],
  ['spire.api.server.agent.v1.RenewAgentResponse', [['svid', 1, 'spire.api.types.X509SVID']]],
  [
    'spire.api.server.agent.v1.CreateJoinTokenRequest',
    [
      ['ttl', 1, 'int32'],
      ['token', 2, 'string'],
      ['agent_id', 3, 'spire.api.types.SPIFFEID'],
    ],
  ],
  [
    'spire.api.server.agent.v1.ListAgentsRequest',
    [
      ['filter', 1, 'spire.api.server.agent.v1.ListAgentsRequest.Filter'],
      ['output_mask', 2, 'spire.api.types.AgentMask'],
      ['page_size', 3, 'int32'],
      ['page_token', 4, 'string'],
    ],
  ],
  [
    'spire.api.server.agent.v1.ListAgentsRequest.Filter',
    [
      ['by_attestation_type', 1, 'string'],
      ['by_selector_match', 2, 'spire.api.types.SelectorMatch'],
      ['by_banned', 3, 'google.protobuf.BoolValue'],
      ['by_can_reattest', 4, 'google.protobuf.BoolValue'],
      ['by_expires_before', 5, 'string'],
    ],
  ],
  [
    'spire.api.server.agent.v1.PostStatusRequest',
    [
      ['current_bundle_serial', 1, 'uint64'],
      ['agent_version', 2, 'string'],
    ],
  ],
  ['spire.api.server.agent.v1.PostStatusResponse', []],

  // spire.api.server.svid.v1
  ['spire.api.server.svid.v1.BatchNewX509SVIDRequest', [['params', 1, 'spire.api.server.svid.v1.NewX509SVIDParams', 'repeated']]],
  [
    'spire.api.server.svid.v1.NewX509SVIDParams',
    [
      ['entry_id', 1, 'string'],
      ['csr', 2, 'bytes'],
    ],
  ],
  [
    'spire.api.server.svid.v1.BatchNewX509SVIDResponse',
    [['results', 1, 'spire.api.server.svid.v1.BatchNewX509SVIDResponse.Result', 'repeated']],
  ],
  [
    'spire.api.server.svid.v1.BatchNewX509SVIDResponse.Result',
    [
      ['status', 1, 'spire.api.types.Status'],
      ['svid', 2, 'spire.api.types.X509SVID'],
    ],
  ],
  [
    'spire.api.server.svid.v1.NewJWTSVIDRequest',
    [
      ['entry_id', 1, 'string'],
      ['audience', 2, 'string', 'repeated'],
    ],
  ],
  ['spire.api.server.svid.v1.NewJWTSVIDResponse', [['svid', 1, 'spire.api.types.JWTSVID']]],
  [
    'spire.api.server.svid.v1.MintX509SVIDRequest',
    [
      ['csr', 1, 'bytes'],
      ['ttl', 2, 'int32'],
    ],
  ],
  [
    'spire.api.server.svid.v1.MintJWTSVIDRequest',
    [
      ['id', 1, 'spire.api.types.SPIFFEID'],
      ['audience', 2, 'string', 'repeated'],
      ['ttl', 3, 'int32'],
    ],
  ],
  [
    'spire.api.server.svid.v1.NewDownstreamX509CARequest',
    [
      ['csr', 1, 'bytes'],
      ['preferred_ttl', 2, 'int32'],
    ],
  ],
  [
    'spire.api.server.svid.v1.NewDownstreamX509CAResponse',
    [
      ['ca_cert_chain', 1, 'bytes', 'repeated'],
      ['x509_authorities', 2, 'bytes', 'repeated'],
    ],
  ],
  [
    'spire.api.server.svid.v1.NewWITSVIDParams',
    [
      ['entry_id', 1, 'string'],
      ['public_key', 2, 'bytes'],
      ['signing_algorithm', 3, 'string'],
    ],
  ],

  // spire.api.server.entry.v1
  [
    'spire.api.server.entry.v1.ListEntriesRequest',
    [
      ['filter', 1, 'spire.api.server.entry.v1.ListEntriesRequest.Filter'],
      ['output_mask', 2, 'spire.api.types.EntryMask'],
      ['page_size', 3, 'int32'],
      ['page_token', 4, 'string'],
    ],
  ],
  [
    'spire.api.server.entry.v1.ListEntriesRequest.Filter',
    [
      ['by_spiffe_id', 1, 'spire.api.types.SPIFFEID'],
      ['by_parent_id', 2, 'spire.api.types.SPIFFEID'],
      ['by_selectors', 3, 'spire.api.types.SelectorMatch'],
      ['by_federates_with', 4, 'spire.api.types.FederatesWithMatch'],
      ['by_hint', 5, 'google.protobuf.StringValue'],
      ['by_downstream', 6, 'google.protobuf.BoolValue'],
    ],
  ],
  [
    'spire.api.server.entry.v1.BatchUpdateEntryRequest',
    [
      ['entries', 1, 'spire.api.types.Entry', 'repeated'],
      ['input_mask', 2, 'spire.api.types.EntryMask'],
      ['output_mask', 3, 'spire.api.types.EntryMask'],
    ],
  ],
  [
    'spire.api.server.entry.v1.BatchDeleteEntryResponse.Result',
    [
      ['status', 1, 'spire.api.types.Status'],
      ['id', 2, 'string'],
    ],
  ],
  ['spire.api.server.entry.v1.GetAuthorizedEntriesRequest', [['output_mask', 1, 'spire.api.types.EntryMask']]],
  ['spire.api.server.entry.v1.GetAuthorizedEntriesResponse', [['entries', 1, 'spire.api.types.Entry', 'repeated']]],
  [
    'spire.api.server.entry.v1.SyncAuthorizedEntriesRequest',
    [
      ['output_mask', 1, 'spire.api.types.EntryMask'],
      ['ids', 2, 'string', 'repeated'],
    ],
  ],
  [
    'spire.api.server.entry.v1.SyncAuthorizedEntriesResponse',
    [
      ['entry_revisions', 1, 'spire.api.server.entry.v1.EntryRevision', 'repeated'],
      ['entries', 2, 'spire.api.types.Entry', 'repeated'],
      ['more', 3, 'bool'],
    ],
  ],
  [
    'spire.api.server.entry.v1.EntryRevision',
    [
      ['id', 1, 'string'],
      ['revision_number', 2, 'int64'],
      ['created_at', 3, 'int64'],
    ],
  ],

  // spire.api.server.bundle.v1
  ['spire.api.server.bundle.v1.GetBundleRequest', [['output_mask', 1, 'spire.api.types.BundleMask']]],
  [
    'spire.api.server.bundle.v1.AppendBundleRequest',
    [
      ['x509_authorities', 1, 'spire.api.types.X509Certificate', 'repeated'],
      ['jwt_authorities', 2, 'spire.api.types.JWTKey', 'repeated'],
      ['output_mask', 3, 'spire.api.types.BundleMask'],
      ['wit_authorities', 4, 'spire.api.types.WITKey', 'repeated'],
    ],
  ],
  ['spire.api.server.bundle.v1.PublishJWTAuthorityRequest', [['jwt_authority', 1, 'spire.api.types.JWTKey']]],
  [
    'spire.api.server.bundle.v1.GetFederatedBundleRequest',
    [
      ['trust_domain', 1, 'string'],
      ['output_mask', 2, 'spire.api.types.BundleMask'],
    ],
  ],
  [
    'spire.api.server.bundle.v1.BatchSetFederatedBundleRequest',
    [
      ['bundle', 1, 'spire.api.types.Bundle', 'repeated'],
      ['output_mask', 2, 'spire.api.types.BundleMask'],
    ],
  ],
  [
    'spire.api.server.bundle.v1.BatchDeleteFederatedBundleRequest',
    [
      ['trust_domains', 1, 'string', 'repeated'],
      ['mode', 2, 'spire.api.server.bundle.v1.BatchDeleteFederatedBundleRequest.Mode'],
    ],
  ],

  // grpc.health.v1
  ['grpc.health.v1.HealthCheckRequest', [['service', 1, 'string']]],
  ['grpc.health.v1.HealthCheckResponse', [['status', 1, 'grpc.health.v1.HealthCheckResponse.ServingStatus']]],
];

const enums: ReadonlyArray<readonly [enumName: string, values: Readonly<Record<string, number>>]> = [
  [
    'spire.api.types.PermissionDeniedDetails.Reason',
    {
      UNKNOWN: 0,
      AGENT_EXPIRED: 1,
      AGENT_NOT_ATTESTED: 2,
      AGENT_NOT_ACTIVE: 3,
      AGENT_BANNED: 4,
      AGENT_MUST_REATTEST: 5,
    },
  ],
  ['spire.api.types.SelectorMatch.MatchBehavior', { MATCH_EXACT: 0, MATCH_SUBSET: 1, MATCH_SUPERSET: 2, MATCH_ANY: 3 }],
  ['spire.api.types.FederatesWithMatch.MatchBehavior', { MATCH_EXACT: 0, MATCH_SUBSET: 1, MATCH_SUPERSET: 2, MATCH_ANY: 3 }],
  ['spire.api.server.bundle.v1.BatchDeleteFederatedBundleRequest.Mode', { RESTRICT: 0, DELETE: 1, DISSOCIATE: 2 }],
  ['grpc.health.v1.HealthCheckResponse.ServingStatus', { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 }],
];

/** [method, request type, response type, client streaming, server streaming]. */
type MethodSpec = readonly [name: string, request: string, response: string, requestStream: boolean, responseStream: boolean];

const A = 'spire.api.server.agent.v1.';
const S = 'spire.api.server.svid.v1.';
const E = 'spire.api.server.entry.v1.';
const B = 'spire.api.server.bundle.v1.';
const T = 'spire.api.types.';

const services: ReadonlyArray<readonly [service: string, methods: readonly MethodSpec[]]> = [
  [
    'SpiffeWorkloadAPI',
    [
      ['FetchX509SVID', 'X509SVIDRequest', 'X509SVIDResponse', false, true],
      ['FetchX509Bundles', 'X509BundlesRequest', 'X509BundlesResponse', false, true],
      ['FetchJWTSVID', 'JWTSVIDRequest', 'JWTSVIDResponse', false, false],
      ['FetchJWTBundles', 'JWTBundlesRequest', 'JWTBundlesResponse', false, true],
      ['ValidateJWTSVID', 'ValidateJWTSVIDRequest', 'ValidateJWTSVIDResponse', false, false],
      ['FetchWITSVID', 'WITSVIDRequest', 'WITSVIDResponse', false, true],
      ['FetchWITBundles', 'WITBundlesRequest', 'WITBundlesResponse', false, true],
    ],
  ],
  [
    'spire.api.server.agent.v1.Agent',
    [
      ['CountAgents', `${A}CountAgentsRequest`, `${A}CountAgentsResponse`, false, false],
      ['ListAgents', `${A}ListAgentsRequest`, `${A}ListAgentsResponse`, false, false],
      ['GetAgent', `${A}GetAgentRequest`, `${T}Agent`, false, false],
      ['DeleteAgent', `${A}DeleteAgentRequest`, 'google.protobuf.Empty', false, false],
      ['BanAgent', `${A}BanAgentRequest`, 'google.protobuf.Empty', false, false],
      ['AttestAgent', `${A}AttestAgentRequest`, `${A}AttestAgentResponse`, true, true],
      ['RenewAgent', `${A}RenewAgentRequest`, `${A}RenewAgentResponse`, false, false],
      ['CreateJoinToken', `${A}CreateJoinTokenRequest`, `${T}JoinToken`, false, false],
      ['PostStatus', `${A}PostStatusRequest`, `${A}PostStatusResponse`, false, false],
    ],
  ],
  [
    'spire.api.server.svid.v1.SVID',
    [
      ['MintX509SVID', `${S}MintX509SVIDRequest`, `${S}MintX509SVIDResponse`, false, false],
      ['MintJWTSVID', `${S}MintJWTSVIDRequest`, `${S}MintJWTSVIDResponse`, false, false],
      ['MintWITSVID', `${S}MintWITSVIDRequest`, `${S}MintWITSVIDResponse`, false, false],
      ['BatchNewX509SVID', `${S}BatchNewX509SVIDRequest`, `${S}BatchNewX509SVIDResponse`, false, false],
      ['NewJWTSVID', `${S}NewJWTSVIDRequest`, `${S}NewJWTSVIDResponse`, false, false],
      ['BatchNewWITSVID', `${S}BatchNewWITSVIDRequest`, `${S}BatchNewWITSVIDResponse`, false, false],
      ['NewDownstreamX509CA', `${S}NewDownstreamX509CARequest`, `${S}NewDownstreamX509CAResponse`, false, false],
    ],
  ],
  [
    'spire.api.server.entry.v1.Entry',
    [
      ['CountEntries', `${E}CountEntriesRequest`, `${E}CountEntriesResponse`, false, false],
      ['ListEntries', `${E}ListEntriesRequest`, `${E}ListEntriesResponse`, false, false],
      ['GetEntry', `${E}GetEntryRequest`, `${T}Entry`, false, false],
      ['BatchCreateEntry', `${E}BatchCreateEntryRequest`, `${E}BatchCreateEntryResponse`, false, false],
      ['BatchUpdateEntry', `${E}BatchUpdateEntryRequest`, `${E}BatchUpdateEntryResponse`, false, false],
      ['BatchDeleteEntry', `${E}BatchDeleteEntryRequest`, `${E}BatchDeleteEntryResponse`, false, false],
      ['GetAuthorizedEntries', `${E}GetAuthorizedEntriesRequest`, `${E}GetAuthorizedEntriesResponse`, false, false],
      ['SyncAuthorizedEntries', `${E}SyncAuthorizedEntriesRequest`, `${E}SyncAuthorizedEntriesResponse`, true, true],
    ],
  ],
  [
    'spire.api.server.bundle.v1.Bundle',
    [
      ['CountBundles', `${B}CountBundlesRequest`, `${B}CountBundlesResponse`, false, false],
      ['GetBundle', `${B}GetBundleRequest`, `${T}Bundle`, false, false],
      ['AppendBundle', `${B}AppendBundleRequest`, `${T}Bundle`, false, false],
      ['PublishJWTAuthority', `${B}PublishJWTAuthorityRequest`, `${B}PublishJWTAuthorityResponse`, false, false],
      ['PublishWITAuthority', `${B}PublishWITAuthorityRequest`, `${B}PublishWITAuthorityResponse`, false, false],
      ['ListFederatedBundles', `${B}ListFederatedBundlesRequest`, `${B}ListFederatedBundlesResponse`, false, false],
      ['GetFederatedBundle', `${B}GetFederatedBundleRequest`, `${T}Bundle`, false, false],
      ['BatchCreateFederatedBundle', `${B}BatchCreateFederatedBundleRequest`, `${B}BatchCreateFederatedBundleResponse`, false, false],
      ['BatchUpdateFederatedBundle', `${B}BatchUpdateFederatedBundleRequest`, `${B}BatchUpdateFederatedBundleResponse`, false, false],
      ['BatchSetFederatedBundle', `${B}BatchSetFederatedBundleRequest`, `${B}BatchSetFederatedBundleResponse`, false, false],
      ['BatchDeleteFederatedBundle', `${B}BatchDeleteFederatedBundleRequest`, `${B}BatchDeleteFederatedBundleResponse`, false, false],
    ],
  ],
  [
    'grpc.health.v1.Health',
    [
      ['Check', 'grpc.health.v1.HealthCheckRequest', 'grpc.health.v1.HealthCheckResponse', false, false],
      ['List', 'grpc.health.v1.HealthListRequest', 'grpc.health.v1.HealthListResponse', false, false],
      ['Watch', 'grpc.health.v1.HealthCheckRequest', 'grpc.health.v1.HealthCheckResponse', false, true],
    ],
  ],
];

describe('proto messages match upstream field names, numbers and types', () => {
  it.each(messages)('%s', (name, fields) => {
    const type = root.lookupType(name);
    expect(type.fullName).toBe(`.${name}`);
    const actual = type.fieldsArray.map((f): FieldSpec => [f.name, f.id, typeName(f), labelOf(f)]);
    const expected = fields.map(([n, id, t, label]): FieldSpec => [n, id, t, label]);
    expect(actual).toEqual(expected);
    for (const f of type.fieldsArray) {
      if (f instanceof protobuf.MapField) expect(f.keyType).toBe('string');
    }
  });
});

describe('proto enums match upstream', () => {
  it.each(enums)('%s', (name, values) => {
    expect(root.lookupEnum(name).values).toEqual(values);
  });
});

describe('oneofs match upstream', () => {
  const oneofs: ReadonlyArray<readonly [message: string, oneof: string, members: readonly string[]]> = [
    ['spire.api.server.agent.v1.AttestAgentRequest', 'step', ['params', 'challenge_response']],
    ['spire.api.server.agent.v1.AttestAgentResponse', 'step', ['result', 'challenge']],
  ];
  it.each(oneofs)('%s.%s', (message, oneof, members) => {
    expect(root.lookupType(message).oneofs?.[oneof]?.oneof).toEqual(members);
  });
});

describe('services match upstream methods and streaming shapes', () => {
  it.each(services)('%s', (name, methods) => {
    const service = root.lookupService(name);
    expect(service.fullName).toBe(`.${name}`);
    const actual = service.methodsArray.map((m): MethodSpec => [
      m.name,
      m.resolvedRequestType?.fullName.replace(/^\./, '') ?? '',
      m.resolvedResponseType?.fullName.replace(/^\./, '') ?? '',
      m.requestStream === true,
      m.responseStream === true,
    ]);
    expect(actual).toEqual(methods);
  });
});

describe('hand-encoded wire bytes (upstream field numbers)', () => {
  it('JWTSVIDRequest{audience:["x"], spiffe_id:"y"}', () => {
    const bytes = WorkloadApiService.FetchJWTSVID.requestSerialize({ audience: ['x'], spiffe_id: 'y' });
    // field 1 LEN "x", field 2 LEN "y"
    expect([...bytes]).toEqual([0x0a, 0x01, 0x78, 0x12, 0x01, 0x79]);
  });

  it('SyncAuthorizedEntriesRequest{ids:["a"]} and response more=true', () => {
    const req = EntryService.SyncAuthorizedEntries.requestSerialize({ ids: ['a'] });
    expect([...req]).toEqual([0x12, 0x01, 0x61]);
    const res = EntryService.SyncAuthorizedEntries.responseSerialize({ more: true });
    expect([...res]).toEqual([0x18, 0x01]);
  });

  it('AttestAgentRequest challenge_response is field 2', () => {
    const bytes = AgentService.AttestAgent.requestSerialize({ challenge_response: Buffer.from([0xff]) });
    expect([...bytes]).toEqual([0x12, 0x01, 0xff]);
    const decoded = AgentService.AttestAgent.requestDeserialize(Buffer.from([0x12, 0x01, 0xff]));
    expect(decoded.step).toBe('challenge_response');
    // Unset oneof members are absent (not null), even with `defaults: true`.
    expect(decoded.params).toBeUndefined();
    expect(decoded.challenge_response).toEqual(Buffer.from([0xff]));
  });

  it('PermissionDeniedDetails decodes enum numbers to upstream names', () => {
    const type = root.lookupType('spire.api.types.PermissionDeniedDetails');
    const msg = type.toObject(type.decode(Uint8Array.from([0x08, 0x05])), { enums: String });
    expect(msg).toEqual({ reason: 'AGENT_MUST_REATTEST' });
  });
});

describe('src/common/proto.ts', () => {
  it('resolves the proto dir and loads every .proto', () => {
    expect(PROTO_DIR).toBe(protoDir);
    expect(listProtoFiles()).toContain('workload.proto');
    expect(listProtoFiles()).toContain('spire/api/server/entry/v1/entry.proto');
    expect(Object.keys(loadProtoPackageDefinition())).toContain('spire.api.server.entry.v1.Entry');
  });

  it('builds the same service definitions as @grpc/proto-loader (paths, streaming, method aliases, codecs)', () => {
    const reference = loadSync(listProtoFiles(), { ...PROTO_LOADER_OPTIONS });
    const ours = loadProtoPackageDefinition();
    const services = Object.entries(reference).filter(([, d]) => !('format' in d)) as unknown as [string, Record<string, Record<string, unknown>>][];
    expect(Object.keys(ours).sort()).toEqual(services.map(([name]) => name).sort());
    for (const [name, methods] of services) {
      const def = ours[name] as unknown as Record<string, Record<string, unknown>>;
      expect(Object.keys(def), name).toEqual(Object.keys(methods));
      for (const [method, expected] of Object.entries(methods)) {
        const actual = def[method] as Record<string, unknown>;
        for (const key of ['path', 'requestStream', 'responseStream', 'originalName']) expect(actual[key], `${name}.${method} ${key}`).toBe(expected[key]);
      }
    }
    // The codecs convert the same way (defaults, oneofs, enums as names, bytes as Buffers, 64-bit as numbers).
    const entry = { id: 'e1', spiffe_id: { trust_domain: 'example.org', path: '/w' }, selectors: [{ type: 'unix', value: 'uid:1' }], x509_svid_ttl: 3600, revision_number: 7, hint: 'h' };
    const request = { entries: [entry] };
    const refMethod = (reference['spire.api.server.entry.v1.Entry'] as Record<string, { requestSerialize: (v: object) => Buffer; requestDeserialize: (b: Buffer) => unknown; responseDeserialize: (b: Buffer) => unknown; responseSerialize: (v: object) => Buffer }>)['BatchCreateEntry'];
    const ourMethod = EntryService.BatchCreateEntry;
    const bytes = refMethod?.requestSerialize(request) as Buffer;
    expect(ourMethod.requestSerialize(request)).toEqual(bytes);
    expect(ourMethod.requestDeserialize(bytes)).toEqual(refMethod?.requestDeserialize(bytes));
    const response = { results: [{ status: { code: 6, message: 'exists' }, entry }] };
    const responseBytes = refMethod?.responseSerialize(response) as Buffer;
    expect(ourMethod.responseSerialize(response)).toEqual(responseBytes);
    expect(ourMethod.responseDeserialize(responseBytes)).toEqual(refMethod?.responseDeserialize(responseBytes));
  });

  it.each([
    ['FetchX509SVID', 'fetchX509Svid'],
    ['FetchJWTBundles', 'fetchJwtBundles'],
    ['NewJWTSVID', 'newJwtsvid'],
    ['BatchNewX509SVID', 'batchNewX509Svid'],
    ['Check', 'check'],
  ])('methodAlias(%s) is %s (lodash camelCase, as proto-loader)', (name, alias) => {
    expect(methodAlias(name)).toBe(alias);
  });

  it('exports client constructors carrying their service definitions', () => {
    expect(WorkloadApiClient.service).toBe(WorkloadApiService);
    expect(AgentClient.service).toBe(AgentService);
    expect(SvidClient.service).toBe(SvidService);
    expect(EntryClient.service).toBe(EntryService);
    expect(BundleClient.service).toBe(BundleService);
    expect(HealthClient.service).toBe(HealthService);
  });

  const methods: ReadonlyArray<
    readonly [path: string, actual: { path: string; requestStream: boolean; responseStream: boolean }, requestStream: boolean, responseStream: boolean]
  > = [
    ['/SpiffeWorkloadAPI/FetchX509SVID', WorkloadApiService.FetchX509SVID, false, true],
    ['/SpiffeWorkloadAPI/ValidateJWTSVID', WorkloadApiService.ValidateJWTSVID, false, false],
    ['/spire.api.server.agent.v1.Agent/AttestAgent', AgentService.AttestAgent, true, true],
    ['/spire.api.server.svid.v1.SVID/BatchNewX509SVID', SvidService.BatchNewX509SVID, false, false],
    ['/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries', EntryService.SyncAuthorizedEntries, true, true],
    ['/spire.api.server.bundle.v1.Bundle/GetBundle', BundleService.GetBundle, false, false],
    ['/grpc.health.v1.Health/Watch', HealthService.Watch, false, true],
  ];
  it.each(methods)('method %s has the upstream path and streaming shape', (path, actual, requestStream, responseStream) => {
    expect(actual.path).toBe(path);
    expect(actual.requestStream).toBe(requestStream);
    expect(actual.responseStream).toBe(responseStream);
  });

  it('decodes with the generator options (keepCase, Number longs, String enums, defaults)', () => {
    const bytes = EntryService.GetEntry.responseSerialize({ id: 'e1', revision_number: 7 });
    const entry = EntryService.GetEntry.responseDeserialize(bytes);
    expect(entry.id).toBe('e1');
    expect(entry.revision_number).toBe(7);
    expect(entry.dns_names).toEqual([]);
    expect(entry.spiffe_id).toBeNull();
    const health = HealthService.Check.responseDeserialize(Buffer.from([0x08, 0x01]));
    expect(health.status).toBe('SERVING');
  });
});
