/**
 * The Workload API client: endpoint parsing, the calls, and their result types.
 */
export { createWorkloadClient, SECURITY_HEADER, WORKLOAD_CLIENT_MAX_RECEIVE_BYTES } from './client.ts';
export type { WatchOptions, WorkloadCallOptions, WorkloadClient, WorkloadClientOptions } from './client.ts';
export { defaultEndpointAddress, parseWorkloadEndpoint, SOCKET_ENV } from './endpoint.ts';
export type { EndpointParseOptions, WorkloadEndpoint } from './endpoint.ts';
export { checkHealth } from './health.ts';
export type { ServingStatus } from './health.ts';
export { formatRpcError, goCodeName, isRpcStatus } from './rpc-error.ts';
export type { JsonValue, JwtBundles, JwtSvid, ValidatedJwtSvid, X509Bundles, X509Context, X509Svid } from './types.ts';
