/**
 * Response encoding for the Workload API: every response is serialized by us (once, where it
 * can be shared) and handed to grpc-js as bytes. The service definition's serializers pass
 * such bytes through untouched.
 *
 * No size limit is enforced here: like SPIRE, the agent sends every SVID a workload is
 * entitled to, however large the response (5,000 SVIDs are about 6 MB). Handlers report
 * responses over the default 4 MiB client receive limit through large-response.ts.
 */
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';

/** Bytes of one serialized response message, produced only by {@link encodeResponse}. */
export type EncodedMessage = Buffer & { readonly __encodedResponse: true };

/** Serializes a response with the method's own serializer. */
export function encodeResponse<Res>(serialize: (value: Res) => Buffer, value: Res): EncodedMessage {
  return serialize(value) as EncodedMessage;
}

/** The serializer of a method, typed by its (input) response type. */
export function serializerOf<Res>(method: { responseSerialize: (value: Res) => Buffer }): (value: Res) => Buffer {
  return method.responseSerialize;
}

/**
 * A copy of a service definition whose response serializers pass Buffers through (already
 * encoded by {@link encodeResponse}) and serialize anything else as before.
 */
export function withPassthroughSerializers(service: ServiceDefinition): ServiceDefinition {
  const out: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service) as Array<[string, MethodDefinition<unknown, unknown>]>) {
    const serialize = method.responseSerialize;
    out[name] = { ...method, responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)) };
  }
  return out;
}
