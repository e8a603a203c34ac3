/**
 * Which secrets an SDS request gets (SPIRE's SDS v3 handler, buildResponse): resource names,
 * default names, validation contexts with and without the SPIFFE validator, and refusals.
 */
import { describe, expect, it } from 'vitest';
import { Code } from '../../../src/common/errors.ts';
import { DEFAULT_SDS_CONFIG, type SdsConfig } from '../../../src/agent/sds/sds-config.ts';
import { buildSecrets, goQuote, type BuiltSecret, type SecretQuery } from '../../../src/agent/sds/secrets.ts';
import type { WorkloadState } from '../../../src/agent/manager/workload-state.ts';
import { A, B, TD, node, pem, state, summarise, type SecretSummary } from './fixtures.ts';

const OWN_ROOTS = pem('CERTIFICATE', 1, 2);
const FED_ROOT = pem('CERTIFICATE', 3);
const TLS_A = { chain: pem('CERTIFICATE', 10, 11), key: pem('PRIVATE KEY', 20) };
const TLS_B = { chain: pem('CERTIFICATE', 12), key: pem('PRIVATE KEY', 21) };
const own = (name: string): SecretSummary => ({ name, spiffe: [[TD, OWN_ROOTS]] });
// jwt-only.org has a bundle without X.509 roots: served, with an empty trust bundle (as SPIRE).
const fedVc = (name: string): SecretSummary => ({ name, spiffe: [['fed.org', FED_ROOT]] });
const jwtOnlyVc = (name: string): SecretSummary => ({ name, spiffe: [['jwt-only.org', '']] });

interface Case {
  readonly name: string;
  readonly names: string[];
  readonly state?: WorkloadState;
  readonly node?: SecretQuery['node'];
  readonly config?: Partial<SdsConfig>;
  readonly want: SecretSummary[] | { code: Code; message: string };
}

const cases: Case[] = [
  {
    name: 'no names: every bundle (own, then federated by name) and every SVID under its ID',
    names: [],
    want: [own(`spiffe://${TD}`), fedVc('spiffe://fed.org'), jwtOnlyVc('spiffe://jwt-only.org'), { name: A.spiffeId, tls: TLS_A }, { name: B.spiffeId, tls: TLS_B }],
  },
  { name: 'an empty name counts as no name', names: [''], want: [own(`spiffe://${TD}`), fedVc('spiffe://fed.org'), jwtOnlyVc('spiffe://jwt-only.org'), { name: A.spiffeId, tls: TLS_A }, { name: B.spiffeId, tls: TLS_B }] },
  { name: 'default: the first SVID by entry ID, named default', names: ['default'], want: [{ name: 'default', tls: TLS_A }] },
  { name: 'an SVID by its SPIFFE ID', names: [B.spiffeId], want: [{ name: B.spiffeId, tls: TLS_B }] },
  { name: 'ROOTCA: the own trust domain', names: ['ROOTCA'], want: [own('ROOTCA')] },
  { name: 'the own trust domain by ID', names: [`spiffe://${TD}`], want: [own(`spiffe://${TD}`)] },
  { name: 'ALL: one SPIFFE validator over every served bundle, by trust domain name', names: ['ALL'], want: [{ name: 'ALL', spiffe: [[TD, OWN_ROOTS], ['fed.org', FED_ROOT], ['jwt-only.org', '']] }] },
  { name: 'a federated trust domain by ID', names: ['spiffe://fed.org'], want: [fedVc('spiffe://fed.org')] },
  {
    name: 'Envoy order of a mixed request: bundles first, then SVIDs',
    names: [B.spiffeId, 'ROOTCA', 'spiffe://fed.org', 'default'],
    want: [own('ROOTCA'), fedVc('spiffe://fed.org'), { name: 'default', tls: TLS_A }, { name: B.spiffeId, tls: TLS_B }],
  },
  { name: 'renamed defaults: the bundle name wins over the all-bundles name', names: ['svid', 'bundle', 'every'], config: { defaultSvidName: 'svid', defaultBundleName: 'bundle', defaultAllBundlesName: 'every' }, want: { code: Code.INVALID_ARGUMENT, message: 'workload is not authorized for the requested identities ["every"]' } },
  { name: 'renamed defaults', names: ['svid', 'bundle'], config: { defaultSvidName: 'svid', defaultBundleName: 'bundle' }, want: [own('bundle'), { name: 'svid', tls: TLS_A }] },
  { name: 'renamed defaults, one of each kind', names: ['svid', 'every'], config: { defaultSvidName: 'svid', defaultAllBundlesName: 'every' }, want: [{ name: 'every', spiffe: [[TD, OWN_ROOTS], ['fed.org', FED_ROOT], ['jwt-only.org', '']] }, { name: 'svid', tls: TLS_A }] },
  { name: 'the own ID and ROOTCA together: only the first is served, the other refused (as SPIRE)', names: [`spiffe://${TD}`, 'ROOTCA'], want: { code: Code.INVALID_ARGUMENT, message: 'workload is not authorized for the requested identities ["ROOTCA"]' } },
  { name: 'ROOTCA and ALL together: ALL refused', names: ['ALL', 'ROOTCA'], want: { code: Code.INVALID_ARGUMENT, message: 'workload is not authorized for the requested identities ["ALL"]' } },
  { name: 'the first SVID by ID and default together: default refused', names: ['default', A.spiffeId], want: { code: Code.INVALID_ARGUMENT, message: 'workload is not authorized for the requested identities ["default"]' } },
  { name: 'an SVID of another workload', names: [`spiffe://${TD}/c`, 'default'], want: { code: Code.INVALID_ARGUMENT, message: `workload is not authorized for the requested identities ["spiffe://${TD}/c"]` } },
  { name: 'a bundle the entries do not federate with', names: ['spiffe://other.org'], want: { code: Code.INVALID_ARGUMENT, message: 'workload is not authorized for the requested identities ["spiffe://other.org"]' } },
  { name: 'a federated trust domain the agent has no bundle for', names: ['spiffe://unknown.org'], want: { code: Code.INVALID_ARGUMENT, message: 'workload is not authorized for the requested identities ["spiffe://unknown.org"]' } },
  { name: 'refused names sorted and quoted as Go %q', names: ['z', 'a"b', 'tab\there'], want: { code: Code.INVALID_ARGUMENT, message: 'workload is not authorized for the requested identities ["a\\"b" "tab\\there" "z"]' } },
  { name: 'no identity: only the own bundle', names: [], state: state([]), want: [own(`spiffe://${TD}`)] },
  { name: 'no identity: default refused', names: ['default', 'ROOTCA'], state: state([]), want: { code: Code.INVALID_ARGUMENT, message: 'workload is not authorized for the requested identities ["default"]' } },
  { name: 'validation disabled by config: trusted_ca roots', names: ['ROOTCA', 'spiffe://fed.org'], config: { disableSpiffeCertValidation: true }, want: [{ name: 'ROOTCA', trustedCa: OWN_ROOTS }, { name: 'spiffe://fed.org', trustedCa: FED_ROOT }] },
  { name: 'validation disabled: ALL cannot be served', names: ['ALL'], config: { disableSpiffeCertValidation: true }, want: { code: Code.INTERNAL, message: 'unable to use "SPIFFE validator" on Envoy below 1.17' } },
  { name: 'node metadata true disables it', names: ['ROOTCA'], node: node({ metadata: { disable_spiffe_cert_validation: { kind: 'boolValue', boolValue: true } } }), want: [{ name: 'ROOTCA', trustedCa: OWN_ROOTS }] },
  { name: 'node metadata "False" enables it against the config', names: ['ROOTCA'], node: node({ metadata: { disable_spiffe_cert_validation: { kind: 'stringValue', stringValue: 'False' } } }), config: { disableSpiffeCertValidation: true }, want: [own('ROOTCA')] },
  { name: 'node metadata that is no boolean leaves the config', names: ['ROOTCA'], node: node({ metadata: { disable_spiffe_cert_validation: { kind: 'stringValue', stringValue: 'yes' } } }), config: { disableSpiffeCertValidation: true }, want: [{ name: 'ROOTCA', trustedCa: OWN_ROOTS }] },
  { name: 'Envoy 1.17: trusted_ca roots', names: ['ROOTCA'], node: node({ version: [1, 17] }), want: [{ name: 'ROOTCA', trustedCa: OWN_ROOTS }] },
  { name: 'Envoy 1.18: the SPIFFE validator', names: ['ROOTCA'], node: node({ version: [1, 18] }), want: [own('ROOTCA')] },
];

describe('buildSecrets', () => {
  it.each(cases)('$name', (c) => {
    const out = buildSecrets(c.state ?? state(), { resourceNames: c.names, node: c.node ?? null }, { ...DEFAULT_SDS_CONFIG, ...c.config });
    if (Array.isArray(c.want)) {
      if (!out.ok) throw out.error;
      expect(out.secrets.map((s) => summarise(s.resource))).toEqual(c.want);
      expect(out.secrets.map((s) => s.name)).toEqual(c.want.map((w) => w.name));
    } else {
      expect(out.ok).toBe(false);
      if (out.ok) return;
      expect({ code: out.error.code, message: out.error.message }).toEqual(c.want);
    }
  });

  it('PEM-encodes a chain and key exactly as Go pem.Encode (64-column base64, one block per certificate)', () => {
    const long = Buffer.alloc(100, 7);
    const der = Buffer.concat([Buffer.from([0x04, 100]), long]);
    const out = buildSecrets(state([{ ...A, certChain: der, privateKey: der }]), { resourceNames: ['default'], node: null }, DEFAULT_SDS_CONFIG);
    if (!out.ok) throw out.error;
    const b64 = der.toString('base64');
    const block = (type: string): string => `-----BEGIN ${type}-----\n${b64.slice(0, 64)}\n${b64.slice(64, 128)}\n${b64.slice(128)}\n-----END ${type}-----\n`;
    expect(summarise((out.secrets[0] as BuiltSecret).resource)).toEqual({ name: 'default', tls: { chain: block('CERTIFICATE'), key: block('PRIVATE KEY') } });
  });
});

describe('goQuote', () => {
  it.each([
    ['plain', '"plain"'],
    ['a"b\\c', '"a\\"b\\\\c"'],
    ['\x07\b\f\n\r\t\v', '"\\a\\b\\f\\n\\r\\t\\v"'],
    ['\x00\x1f\x7f', '"\\x00\\x1f\\x7f"'],
    ['é☃', '"é☃"'],
  ])('%j → %s', (input, quoted) => {
    expect(goQuote(input)).toBe(quoted);
  });
});
