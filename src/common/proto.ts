/**
 * Loads the project's `.proto` files (under `<repo>/proto`) once and exposes
 * the gRPC service definitions and client constructors with the types
 * generated into `src/gen` by `scripts/gen-proto-types.ts`.
 *
 * Message types live in `src/gen`, e.g.
 * `import type { Entry, Entry__Output } from '../gen/spire/api/types/Entry.ts'`.
 */
import { readdirSync } from 'node:fs';
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { Options, PackageDefinition } from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../gen/index.ts';
import type { SpiffeWorkloadAPIClient as WorkloadApiClientType } from '../gen/SpiffeWorkloadAPI.ts';
import type { AgentClient as AgentClientType } from '../gen/spire/api/server/agent/v1/Agent.ts';
import type { SVIDClient as SvidClientType } from '../gen/spire/api/server/svid/v1/SVID.ts';
import type { EntryClient as EntryClientType } from '../gen/spire/api/server/entry/v1/Entry.ts';
import type { BundleClient as BundleClientType } from '../gen/spire/api/server/bundle/v1/Bundle.ts';
import type { HealthClient as HealthClientType } from '../gen/grpc/health/v1/Health.ts';

/**
 * Absolute path of the `proto/` include directory. Resolved relative to this
 * module, which sits two levels below the repo root both as
 * `src/common/proto.ts` and as `dist/common/proto.js`.
 */
export const PROTO_DIR: string = fileURLToPath(new URL('../../proto/', import.meta.url));

/**
 * proto-loader options. Must match the flags in `scripts/gen-proto-types.ts`,
 * otherwise the generated types do not describe the loaded objects:
 * field names keep their proto spelling, 64-bit integers are JS numbers,
 * enums are their string names, bytes are Buffers, unset fields get defaults
 * and each oneof gets a virtual field naming the member that is set.
 */
export const PROTO_LOADER_OPTIONS: Readonly<Options> = Object.freeze({
  keepCase: true,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
});

/** Every `.proto` under {@link PROTO_DIR}, as sorted include-relative POSIX paths. */
export function listProtoFiles(): string[] {
  return readdirSync(PROTO_DIR, { recursive: true, encoding: 'utf8' })
    .filter((p) => p.endsWith('.proto'))
    .map((p) => p.split(sep).join('/'))
    .sort();
}

let cachedDefinition: PackageDefinition | undefined;
let cachedProtos: ProtoGrpcType | undefined;

/** The proto-loader package definition of every file under `proto/` (loaded once). */
export function loadProtoPackageDefinition(): PackageDefinition {
  cachedDefinition ??= loadSync(listProtoFiles(), { ...PROTO_LOADER_OPTIONS });
  return cachedDefinition;
}

/**
 * The typed gRPC object for every file under `proto/` (loaded once), e.g.
 * `loadProtos().spire.api.server.agent.v1.Agent` is the Agent client
 * constructor and its `.service` the service definition.
 */
export function loadProtos(): ProtoGrpcType {
  cachedProtos ??= loadPackageDefinition(loadProtoPackageDefinition()) as unknown as ProtoGrpcType;
  return cachedProtos;
}

const protos = loadProtos();

/** Client constructor for the SPIFFE Workload API (`/SpiffeWorkloadAPI/*`, no proto package). */
export const WorkloadApiClient = protos.SpiffeWorkloadAPI;
/** Client instance type for the SPIFFE Workload API. */
export type WorkloadApiClient = WorkloadApiClientType;
/** Service definition for the SPIFFE Workload API, for `grpc.Server#addService`. */
export const WorkloadApiService = protos.SpiffeWorkloadAPI.service;

/** Client constructor for `spire.api.server.agent.v1.Agent`. */
export const AgentClient = protos.spire.api.server.agent.v1.Agent;
/** Client instance type for `spire.api.server.agent.v1.Agent`. */
export type AgentClient = AgentClientType;
/** Service definition for `spire.api.server.agent.v1.Agent`. */
export const AgentService = protos.spire.api.server.agent.v1.Agent.service;

/** Client constructor for `spire.api.server.svid.v1.SVID`. */
export const SvidClient = protos.spire.api.server.svid.v1.SVID;
/** Client instance type for `spire.api.server.svid.v1.SVID`. */
export type SvidClient = SvidClientType;
/** Service definition for `spire.api.server.svid.v1.SVID`. */
export const SvidService = protos.spire.api.server.svid.v1.SVID.service;

/** Client constructor for `spire.api.server.entry.v1.Entry`. */
export const EntryClient = protos.spire.api.server.entry.v1.Entry;
/** Client instance type for `spire.api.server.entry.v1.Entry`. */
export type EntryClient = EntryClientType;
/** Service definition for `spire.api.server.entry.v1.Entry`. */
export const EntryService = protos.spire.api.server.entry.v1.Entry.service;

/** Client constructor for `spire.api.server.bundle.v1.Bundle`. */
export const BundleClient = protos.spire.api.server.bundle.v1.Bundle;
/** Client instance type for `spire.api.server.bundle.v1.Bundle`. */
export type BundleClient = BundleClientType;
/** Service definition for `spire.api.server.bundle.v1.Bundle`. */
export const BundleService = protos.spire.api.server.bundle.v1.Bundle.service;

/** Client constructor for `grpc.health.v1.Health`. */
export const HealthClient = protos.grpc.health.v1.Health;
/** Client instance type for `grpc.health.v1.Health`. */
export type HealthClient = HealthClientType;
/** Service definition for `grpc.health.v1.Health`. */
export const HealthService = protos.grpc.health.v1.Health.service;
