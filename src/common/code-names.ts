/**
 * gRPC status codes spelled as grpc-go spells them (`codes.Code.String()`: "OK",
 * "PermissionDenied", …): the CLI prints errors this way, like spire-agent, and metrics use
 * them as SPIRE's `status` label values.
 */
import type { Code } from './errors.ts';

/** Every name, in code order (index = code). */
export const GO_CODE_NAMES: readonly string[] = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
];

/** The grpc-go name of a known status code, or undefined outside the gRPC range. */
export function goCodeNameOf(code: Code): string | undefined {
  return GO_CODE_NAMES[code];
}

/** The grpc-go name of a status code as grpc-go prints it: `PermissionDenied`, or `Code(17)` when unknown. */
export function goCodeName(code: Code): string {
  return goCodeNameOf(code) ?? `Code(${code})`;
}
