/**
 * SPIRE's PermissionDeniedDetails travel in the `grpc-status-details-bin` trailer as a
 * serialized google.rpc.Status whose `details` hold a google.protobuf.Any wrapping
 * `spire.api.types.PermissionDeniedDetails{reason}`. These are three tiny messages, so
 * they are encoded and decoded here by hand (pure functions, no I/O).
 *
 * google.rpc.Status: code=1 (int32), message=2 (string), details=3 (repeated Any)
 * google.protobuf.Any: type_url=1 (string), value=2 (bytes)
 * spire.api.types.PermissionDeniedDetails: reason=1 (enum)
 */

/** The metadata key that carries the serialized google.rpc.Status. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/** The Any type URL of spire.api.types.PermissionDeniedDetails. */
export const PERMISSION_DENIED_DETAILS_TYPE = 'type.googleapis.com/spire.api.types.PermissionDeniedDetails';

/** spire.api.types.PermissionDeniedDetails.Reason values. */
export const PERMISSION_DENIED_REASONS = {
  UNKNOWN: 0,
  AGENT_EXPIRED: 1,
  AGENT_NOT_ATTESTED: 2,
  AGENT_NOT_ACTIVE: 3,
  AGENT_BANNED: 4,
  AGENT_MUST_REATTEST: 5,
} as const;

export type PermissionDeniedReason = keyof typeof PERMISSION_DENIED_REASONS;

function varint(n: number): Buffer {
  const bytes: number[] = [];
  let v = n >>> 0;
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

function field(num: number, wireType: 0 | 2, payload: Buffer | number): Buffer {
  const tag = varint((num << 3) | wireType);
  if (wireType === 0) return Buffer.concat([tag, varint(payload as number)]);
  const body = payload as Buffer;
  return Buffer.concat([tag, varint(body.length), body]);
}

/** Serializes google.rpc.Status{code, message, details:[Any(PermissionDeniedDetails{reason})]}. */
export function encodePermissionDeniedStatus(code: number, message: string, reason: PermissionDeniedReason): Buffer {
  const details = field(1, 0, PERMISSION_DENIED_REASONS[reason]);
  const any = Buffer.concat([field(1, 2, Buffer.from(PERMISSION_DENIED_DETAILS_TYPE)), field(2, 2, details)]);
  return Buffer.concat([field(1, 0, code), field(2, 2, Buffer.from(message)), field(3, 2, any)]);
}

interface Field {
  num: number;
  varint?: number;
  bytes?: Buffer;
}

/** Reads top-level fields of a protobuf message; returns undefined on malformed input. */
function readFields(buf: Buffer): Field[] | undefined {
  const out: Field[] = [];
  let i = 0;
  const readVarint = (): number | undefined => {
    let result = 0;
    let shift = 0;
    while (i < buf.length) {
      const b = buf[i++] as number;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) return undefined;
    }
    return undefined;
  };
  while (i < buf.length) {
    const tag = readVarint();
    if (tag === undefined) return undefined;
    const num = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0) {
      const v = readVarint();
      if (v === undefined) return undefined;
      out.push({ num, varint: v });
    } else if (wire === 2) {
      const len = readVarint();
      if (len === undefined || i + len > buf.length) return undefined;
      out.push({ num, bytes: buf.subarray(i, i + len) });
      i += len;
    } else if (wire === 5) {
      i += 4;
    } else if (wire === 1) {
      i += 8;
    } else {
      return undefined;
    }
  }
  return out;
}

/** Extracts the PermissionDeniedDetails reason from a serialized google.rpc.Status, if any. */
export function decodePermissionDeniedReason(statusBytes: Buffer): PermissionDeniedReason | undefined {
  const fields = readFields(statusBytes);
  if (fields === undefined) return undefined;
  for (const f of fields) {
    if (f.num !== 3 || f.bytes === undefined) continue;
    const any = readFields(f.bytes);
    if (any === undefined) continue;
    const typeUrl = any.find((a) => a.num === 1)?.bytes?.toString();
    const value = any.find((a) => a.num === 2)?.bytes;
    if (typeUrl !== PERMISSION_DENIED_DETAILS_TYPE || value === undefined) continue;
    const reasonNumber = readFields(value)?.find((r) => r.num === 1)?.varint ?? 0;
    const entry = Object.entries(PERMISSION_DENIED_REASONS).find(([, n]) => n === reasonNumber);
    return entry?.[0] as PermissionDeniedReason | undefined;
  }
  return undefined;
}
