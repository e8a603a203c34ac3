import { describe, expect, it } from 'vitest';
import { authorizeAgent, normaliseSerial } from '../../src/server/agent-authorizer.ts';
import type { AttestedAgent } from '../../src/server/datastore/types.ts';

const agent: AttestedAgent = {
  spiffeId: 'spiffe://td/spire/agent/join_token/t',
  attestationType: 'join_token',
  serialNumber: '2587',
  newSerialNumber: '65280',
  expiresAt: 2000,
  banned: false,
  canReattest: false,
  selectors: [],
};

describe('authorizeAgent', () => {
  const cases: Array<[string, AttestedAgent | undefined, string, number, ReturnType<typeof authorizeAgent>]> = [
    ['accepts the current serial', agent, '02587', 2000, { ok: true, promoteNewSerial: false }],
    ['accepts and promotes the renewed serial', agent, '65280', 2000, { ok: true, promoteNewSerial: true }],
    ['refuses an unknown agent', undefined, '2587', 2000, { ok: false, reason: 'AGENT_NOT_ATTESTED', message: 'agent is not attested' }],
    ['refuses a banned agent', { ...agent, banned: true }, '2587', 2000, { ok: false, reason: 'AGENT_BANNED', message: 'agent is banned' }],
    ['refuses an expired SVID', agent, '2587', 1000, { ok: false, reason: 'AGENT_EXPIRED', message: 'agent SVID has expired' }],
    ['refuses a superseded serial', agent, '1234', 2000, { ok: false, reason: 'AGENT_NOT_ACTIVE', message: 'agent is not active' }],
    ['refuses any serial once serials are cleared', { ...agent, serialNumber: '', newSerialNumber: '' }, '0', 2000, { ok: false, reason: 'AGENT_NOT_ACTIVE', message: 'agent is not active' }],
  ];
  for (const [name, record, serial, certExpiry, expected] of cases) {
    it(name, () => expect(authorizeAgent(record, serial, certExpiry, 1500)).toEqual(expected));
  }
  it('normalises serial spellings', () => {
    expect(normaliseSerial('002587')).toBe('2587');
    expect(normaliseSerial('0')).toBe('0');
  });
});
