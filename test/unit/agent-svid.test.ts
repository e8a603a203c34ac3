/**
 * The agent SVID's taint check (forced rotation): signed by a tainted root or not, through
 * the CA's intermediate when there is one.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.ts';
import { newKeyAndCsr } from '../../src/common/csr.ts';
import { openCertificateAuthority, type CertificateAuthority } from '../../src/server/ca/index.ts';
import { agentSvid, isSignedByAny, type AgentSvid } from '../../src/agent/agent-svid.ts';

const TD = 'example.org';
const MINUTE = 60_000;
const dirs: string[] = [];
let clock: ManualClock;

async function ca(): Promise<CertificateAuthority> {
  const dir = await mkdtemp(join(tmpdir(), 'sna-agent-svid-'));
  dirs.push(dir);
  return openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, defaultX509SvidTtlMs: 10 * MINUTE, defaultJwtSvidTtlMs: 10 * MINUTE });
}

function svidFrom(authority: CertificateAuthority): AgentSvid {
  const { privateKey, csr } = newKeyAndCsr();
  const { certChain } = authority.signX509SvidFromCsr({ csrDer: csr, spiffeId: `spiffe://${TD}/spire/agent/join_token/t` });
  return agentSvid(certChain, privateKey, false);
}

beforeEach(() => {
  clock = new ManualClock(Date.UTC(2026, 5, 1));
});

afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('isSignedByAny', () => {
  it('tells an SVID of a tainted root from one of another root', async () => {
    const [old, next] = [await ca(), await ca()];
    const svid = svidFrom(old);
    expect(isSignedByAny(svid, old.bundle().x509Authorities)).toBe(true);
    expect(isSignedByAny(svid, next.bundle().x509Authorities)).toBe(false);
    expect(isSignedByAny(svid, [])).toBe(false);
    expect(isSignedByAny(svidFrom(next), [...old.bundle().x509Authorities, ...next.bundle().x509Authorities])).toBe(true);
  });
});
