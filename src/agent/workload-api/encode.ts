/**
 * Response encoding for the Workload API: every response is serialized by us (once, where it
 * can be shared), checked against the 4 MiB default gRPC receive limit, and handed to grpc-js
 * as bytes. The service definition's serializers pass such bytes through untouched.
 */
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { ApiError, Code } from '../../common/errors.ts';

/** Bytes of one serialized response message, produced only by {@link encodeResponse}. */
export type EncodedMessage = Buffer & { readonly __encodedResponse: true };

/** gRPC's default max receive message size: clients reject anything bigger. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/** Serializes a response with the method's own serializer and enforces the size limit. */
export function encodeResponse<Res>(serialize: (value: Res) => Buffer, value: Res, what: string): EncodedMessage {
  const bytes = serialize(value);
  if (bytes.length > MAX_RESPONSE_BYTES) {
    throw new ApiError(
      Code.RESOURCE_EXHAUSTED,
      `workload api: ${what} response is ${bytes.length} bytes, over the ${MAX_RESPONSE_BYTES}-byte gRPC message limit`,
    );
  }
  return bytes as EncodedMessage;
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
