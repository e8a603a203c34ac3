/**
 * Decides whether a TLS peer presenting an agent SVID is a live agent (SPIRE's agent
 * authorization middleware): attested, not banned, not expired, and presenting the serial
 * on record or the one issued by its latest renewal. Pure: the caller loads the record.
 */
import type { AttestedAgent } from './datastore/types.ts';

/** PermissionDeniedDetails reasons, by their spire.api.types enum names. */
export type AgentDenialReason =
  | 'AGENT_EXPIRED'
  | 'AGENT_NOT_ATTESTED'
  | 'AGENT_NOT_ACTIVE'
  | 'AGENT_BANNED'
  | 'AGENT_MUST_REATTEST';

export type AgentAuthorization =
  | { ok: true; promoteNewSerial: boolean }
  | { ok: false; reason: AgentDenialReason; message: string };

/** Normalises decimal certificate serials (as SPIRE records them) for comparison: no leading zeros. */
export function normaliseSerial(serial: string): string {
  const digits = serial.replace(/^0+/, '');
  return digits === '' ? '0' : digits;
}

/**
 * Authorizes an agent by its record and the SVID it presented.
 * `certExpiresAt` and `nowSeconds` are Unix seconds.
 */
export function authorizeAgent(
  agent: AttestedAgent | undefined,
  presentedSerial: string,
  certExpiresAt: number,
  nowSeconds: number,
): AgentAuthorization {
  if (agent === undefined) return { ok: false, reason: 'AGENT_NOT_ATTESTED', message: 'agent is not attested' };
  if (agent.banned) return { ok: false, reason: 'AGENT_BANNED', message: 'agent is banned' };
  if (certExpiresAt <= nowSeconds) return { ok: false, reason: 'AGENT_EXPIRED', message: 'agent SVID has expired' };
  const serial = normaliseSerial(presentedSerial);
  if (agent.serialNumber !== '' && serial === normaliseSerial(agent.serialNumber)) return { ok: true, promoteNewSerial: false };
  if (agent.newSerialNumber !== '' && serial === normaliseSerial(agent.newSerialNumber)) return { ok: true, promoteNewSerial: true };
  return { ok: false, reason: 'AGENT_NOT_ACTIVE', message: 'agent is not active' };
}
