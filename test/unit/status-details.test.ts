import { describe, expect, it } from 'vitest';
import {
  PERMISSION_DENIED_REASONS,
  decodePermissionDeniedReason,
  encodePermissionDeniedStatus,
  type PermissionDeniedReason,
} from '../../src/common/status-details.ts';

describe('PermissionDeniedDetails in google.rpc.Status', () => {
  for (const reason of Object.keys(PERMISSION_DENIED_REASONS) as PermissionDeniedReason[]) {
    if (reason === 'UNKNOWN') continue;
    it(`round-trips ${reason}`, () => {
      expect(decodePermissionDeniedReason(encodePermissionDeniedStatus(7, 'agent is not active', reason))).toBe(reason);
    });
  }
  it('encodes the exact wire bytes SPIRE clients decode', () => {
    const bytes = encodePermissionDeniedStatus(7, 'x', 'AGENT_BANNED');
    // code=7, message="x", details=Any{type_url, value=PermissionDeniedDetails{reason=4}}
    const typeUrl = Buffer.from('type.googleapis.com/spire.api.types.PermissionDeniedDetails');
    const any = Buffer.concat([Buffer.from([0x0a, typeUrl.length]), typeUrl, Buffer.from([0x12, 0x02, 0x08, 0x04])]);
    expect(bytes.equals(Buffer.concat([Buffer.from([0x08, 0x07, 0x12, 0x01, 0x78, 0x1a, any.length]), any]))).toBe(true);
  });
  it('returns undefined for a status without details', () => {
    expect(decodePermissionDeniedReason(Buffer.from([0x08, 0x07, 0x12, 0x01, 0x78]))).toBeUndefined();
  });
  it('returns undefined for garbage', () => {
    expect(decodePermissionDeniedReason(Buffer.from([0xff, 0xff, 0xff]))).toBeUndefined();
  });
});
