/**
 * Loads the project's `.proto` files (under `<repo>/proto`) once and exposes
 * the gRPC service definitions and client constructors with the types
 * generated into `src/gen` by `scripts/gen-proto-types.ts`.
 *
 * Message types live in `src/gen`, e.g.
 * `import type { Entry, Entry__Output } from '../gen/spire/api/types/Entry.ts'`.
 *
 * The definitions are built here from protobufjs, as `@grpc/proto-loader`'s `loadSync` builds
 * them (same serializers, same conversion options, same method names), without what only
 * reflection needs: proto-loader also builds a descriptor object and encodes every file's
 * FileDescriptorProto for each message and method, which costs 1.5–3 MiB of RssAnon in every
 * process and is never read (bench/idle-memory.ts, bench/RESULTS.md "Idle memory, production
 * layout").
 */
import { readdirSync } from 'node:fs';
import { isAbsolute, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition } from '@grpc/grpc-js';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition, Options } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import type { ProtoGrpcType } from '../gen/index.ts';
import type { SpiffeWorkloadAPIClient as WorkloadApiClientType } from '../gen/SpiffeWorkloadAPI.ts';
import type { AgentClient as AgentClientType } from '../gen/spire/api/server/agent/v1/Agent.ts';
import type { SVIDClient as SvidClientType } from '../gen/spire/api/server/svid/v1/SVID.ts';
import type { EntryClient as EntryClientType } from '../gen/spire/api/server/entry/v1/Entry.ts';
import type { BundleClient as BundleClientType } from '../gen/spire/api/server/bundle/v1/Bundle.ts';
import type { HealthClient as HealthClientType } from '../gen/grpc/health/v1/Health.ts';
import type { AgentDebugClient as AgentDebugClientType } from '../gen/spiffenodeagent/admin/v1/AgentDebug.ts';

/**
 * Absolute path of the `proto/` include directory. Resolved relative to this
 * module, which sits two levels below the repo root both as
 * `src/common/proto.ts` and as `dist/common/proto.js`.
 */
export const PROTO_DIR: string = fileURLToPath(new URL('../../proto/', import.meta.url));

/**
 * Conversion options. Must match the flags in `scripts/gen-proto-types.ts`,
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

/**
 * lodash's `camelCase` (which proto-loader applies) for an ASCII method name:
 * `FetchX509SVID` → `fetchX509Svid`, `FetchJWTBundles` → `fetchJwtBundles`. The generated
 * client types declare these aliases, so they must match proto-loader's exactly
 * (test/unit/proto.test.ts compares every method).
 */
export function methodAlias(name: string): string {
  const words = name.match(/[A-Z]?[a-z]+|[A-Z]+(?=[A-Z][a-z]|[^A-Za-z]|$)|[A-Z]+|[0-9]+/g) ?? [];
  return words.map((w, i) => (i === 0 ? w.toLowerCase() : (w[0] as string).toUpperCase() + w.slice(1).toLowerCase())).join('');
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), PROTO_LOADER_OPTIONS as protobuf.IConversionOptions);
}

function serviceDefinition(service: protobuf.Service, fullName: string): ServiceDefinition {
  const def: Record<string, MethodDefinition<object, object>> = {};
  for (const method of service.methodsArray) {
    // resolveAll() ran: request and response types are resolved.
    const request = method.resolvedRequestType as protobuf.Type;
    const response = method.resolvedResponseType as protobuf.Type;
    def[method.name] = {
      path: `/${fullName}/${method.name}`,
      requestStream: method.requestStream === true,
      responseStream: method.responseStream === true,
      requestSerialize: serializer(request),
      requestDeserialize: deserializer(request),
      responseSerialize: serializer(response),
      responseDeserialize: deserializer(response),
      originalName: methodAlias(method.name),
    };
  }
  return def;
}

/** Every service under `ns`, by fully qualified name (no leading dot). */
function collectServices(ns: protobuf.NamespaceBase, prefix: string, into: PackageDefinition): void {
  for (const child of ns.nestedArray) {
    const name = prefix === '' ? child.name : `${prefix}.${child.name}`;
    if (child instanceof protobuf.Service) into[name] = serviceDefinition(child, name);
    else if (child instanceof protobuf.Namespace) collectServices(child, name, into);
  }
}

/**
 * The generated package object with only what is there at run time: client constructors
 * (with their `service`) and the namespaces that lead to them. The method definitions' reflection
 * fields (`requestType`, `responseType`) are absent too.
 */
export type GrpcServices<T> = {
  [K in keyof T as T[K] extends MessageTypeDefinition<object, object> | EnumTypeDefinition ? never : K]: T[K] extends { service: unknown } ? T[K] : GrpcServices<T[K]>;
};

/** grpc-js's package definition type (what {@link loadPackageDefinition} takes). */
export type PackageDefinition = Parameters<typeof loadPackageDefinition>[0];

let cachedDefinition: PackageDefinition | undefined;
let cachedRoot: protobuf.Root | undefined;
let cachedProtos: GrpcServices<ProtoGrpcType> | undefined;

/**
 * The package definition of every service in the files under `proto/` (loaded once), keyed
 * by fully qualified service name. Message and enum types are not in it (proto-loader's
 * reflection entries); their TypeScript types are in `src/gen`.
 */
export function loadProtoPackageDefinition(): PackageDefinition {
  if (cachedDefinition === undefined) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(PROTO_DIR, target));
    root.loadSync(listProtoFiles(), { keepCase: true });
    root.resolveAll();
    cachedRoot = root;
    const def: PackageDefinition = {};
    collectServices(root, '', def);
    cachedDefinition = def;
  }
  return cachedDefinition;
}

/** The protobufjs type of a message under `proto/` by full name (e.g. `spire.api.types.Agent`), for JSON output. */
export function messageType(fullName: string): protobuf.Type {
  loadProtoPackageDefinition();
  return (cachedRoot as protobuf.Root).lookupType(fullName);
}

/**
 * The typed gRPC object for every service under `proto/` (loaded once), e.g.
 * `loadProtos().spire.api.server.agent.v1.Agent` is the Agent client
 * constructor and its `.service` the service definition.
 */
export function loadProtos(): GrpcServices<ProtoGrpcType> {
  cachedProtos ??= loadPackageDefinition(loadProtoPackageDefinition()) as unknown as GrpcServices<ProtoGrpcType>;
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

/** Client constructor for our own `spiffenodeagent.admin.v1.AgentDebug` (the agent's admin socket). */
export const AgentDebugClient = protos.spiffenodeagent.admin.v1.AgentDebug;
/** Client instance type for `spiffenodeagent.admin.v1.AgentDebug`. */
export type AgentDebugClient = AgentDebugClientType;
/** Service definition for `spiffenodeagent.admin.v1.AgentDebug`. */
export const AgentDebugService = protos.spiffenodeagent.admin.v1.AgentDebug.service;
