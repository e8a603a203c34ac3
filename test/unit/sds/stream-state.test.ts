/**
 * The StreamSecrets version and nonce state machine, driven as Envoy drives it: requests with
 * versions, nonces and NACKs, and workload states pushed by the cache.
 */
import { describe, expect, it } from 'vitest';
import { Code } from '../../../src/common/errors.ts';
import { DEFAULT_SDS_CONFIG } from '../../../src/agent/sds/sds-config.ts';
import { resourceNamesChanged, SecretStreamState, type StreamStep } from '../../../src/agent/sds/stream-state.ts';
import { A, B, TD, bundles, der, node, request, state, summarise, svid } from './fixtures.ts';

function machine(): SecretStreamState {
  let n = 0;
  return new SecretStreamState({ config: DEFAULT_SDS_CONFIG, nonce: () => `n${++n}` });
}

/** A step as a short record: what was sent (version, nonce, names, type URL) or the failure, and the note kinds. */
function brief(step: StreamStep): Record<string, unknown> {
  const notes = step.notes.map((n) => n.kind);
  if (step.kind === 'send') {
    const r = step.response;
    return { send: { version: r.version_info, nonce: r.nonce, names: step.names, type_url: r.type_url }, notes };
  }
  if (step.kind === 'fail') return { fail: { code: step.error.code, message: step.error.message }, notes };
  return { none: true, notes };
}

const TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
const sent = (version: string, nonce: string, names: string[], notes: string[] = []): Record<string, unknown> => ({ send: { version, nonce, names, type_url: TYPE }, notes });
const none = (notes: string[] = []): Record<string, unknown> => ({ none: true, notes });

describe('SecretStreamState', () => {
  it('runs a full Envoy cycle: request, ACK, rotation, NACK (not resent), subscription change, stale nonce', () => {
    const m = machine();
    const s1 = state();
    // The request comes first: nothing to send until the cache delivers.
    expect(brief(m.request(request({ node: node(), resource_names: ['default'] })))).toEqual(none());
    expect(brief(m.update(s1))).toEqual(sent('1', 'n1', ['default']));
    // ACK: same names, version and nonce: nothing sent.
    expect(brief(m.request(request({ version_info: '1', response_nonce: 'n1', resource_names: ['default'] })))).toEqual(none());
    // Rotation: the next version is pushed.
    const rotated = svid(A.entryId, A.spiffeId, [30, 11], 40, [...A.federatesWith]);
    expect(brief(m.update(state([rotated, B])))).toEqual(sent('2', 'n2', ['default']));
    // NACK of version 2 (the client keeps 1): logged, not answered with version 2 again.
    expect(brief(m.request(request({ version_info: '1', response_nonce: 'n2', resource_names: ['default'], error: 'bad key' })))).toEqual(none(['nack', 'rolled-back']));
    // A changed subscription is answered with the current version.
    expect(brief(m.request(request({ version_info: '1', response_nonce: 'n2', resource_names: ['default', 'ROOTCA'] })))).toEqual(sent('2', 'n3', ['ROOTCA', 'default'], ['rolled-back']));
    // A request answering an older response is ignored whole, even with new names.
    expect(brief(m.request(request({ version_info: '2', response_nonce: 'n2', resource_names: ['ALL'] })))).toEqual(none(['stale-nonce']));
    expect(brief(m.request(request({ version_info: '2', response_nonce: 'n3', resource_names: ['ROOTCA', 'default'] })))).toEqual(none());
    expect(m.version).toBe('2');
  });

  it('answers a request that comes after the first state with that state version', () => {
    const m = machine();
    expect(brief(m.update(state()))).toEqual(none());
    expect(brief(m.request(request({ resource_names: [B.spiffeId] })))).toEqual(sent('1', 'n1', [B.spiffeId]));
  });

  it('sends nothing, and keeps the version, when a new state changes nothing the client asked for', () => {
    const m = machine();
    m.request(request({ resource_names: ['default'] }));
    expect(brief(m.update(state()))).toEqual(sent('1', 'n1', ['default']));
    // Another object with the same SVID and a changed bundle of a trust domain not asked for.
    expect(brief(m.update(state([A, B], bundles({ 'fed.org': der(99) }))))).toEqual(none());
    expect(brief(m.update(state([A])))).toEqual(none());
    expect(m.version).toBe('1');
    // The bundle the client asks for changes: version 2.
    m.request(request({ version_info: '1', response_nonce: 'n1', resource_names: ['default', 'ROOTCA'] }));
    expect(brief(m.update(state([A], bundles({ [TD]: der(98) }))))).toEqual(sent('2', 'n3', ['ROOTCA', 'default']));
  });

  it('counts states before the first request in the version, as SPIRE', () => {
    const m = machine();
    m.update(state());
    m.update(state([A]));
    expect(brief(m.request(request({ resource_names: ['default'] })))).toEqual(sent('2', 'n1', ['default']));
  });

  it('accepts any request before the first response, the last one winning', () => {
    const m = machine();
    expect(brief(m.request(request({ response_nonce: 'whatever', resource_names: ['ROOTCA'] })))).toEqual(none());
    expect(brief(m.request(request({ resource_names: ['default'] })))).toEqual(none());
    expect(brief(m.update(state()))).toEqual(sent('1', 'n1', ['default']));
  });

  it('treats resource names as a set: reordered names are no change', () => {
    const m = machine();
    m.update(state());
    m.request(request({ resource_names: ['default', 'ROOTCA'] }));
    expect(brief(m.request(request({ version_info: '1', response_nonce: 'n1', resource_names: ['ROOTCA', 'default'] })))).toEqual(none());
  });

  it('keeps the last node for requests without one (its metadata still decides the validator)', () => {
    const m = machine();
    m.update(state());
    const disabled = node({ metadata: { disable_spiffe_cert_validation: { kind: 'boolValue', boolValue: true } } });
    const first = m.request(request({ node: disabled, resource_names: ['ROOTCA'] }));
    expect(first.kind).toBe('send');
    const second = m.request(request({ version_info: '1', response_nonce: 'n1', resource_names: [`spiffe://${TD}`] }));
    if (second.kind !== 'send') throw new Error(second.kind);
    expect(summarise(second.response.resources[0] as never)).toMatchObject({ name: `spiffe://${TD}`, trustedCa: expect.any(String) });
  });

  it('echoes the request type URL', () => {
    const m = machine();
    m.update(state());
    const step = m.request(request({ type_url: '', resource_names: ['default'] }));
    expect(step.kind === 'send' && step.response.type_url).toBe('');
  });

  it.each([
    ['a request for an identity the workload does not hold', () => {
      const m = machine();
      m.update(state());
      return m.request(request({ resource_names: [`spiffe://${TD}/c`] }));
    }, `workload is not authorized for the requested identities ["spiffe://${TD}/c"]`],
    ['a state that no longer holds an identity the client asked for', () => {
      const m = machine();
      m.request(request({ resource_names: [B.spiffeId] }));
      m.update(state());
      return m.update(state([A]));
    }, `workload is not authorized for the requested identities ["${B.spiffeId}"]`],
  ])('ends the stream with InvalidArgument on %s', (_name, run, message) => {
    expect(brief(run())).toEqual({ fail: { code: Code.INVALID_ARGUMENT, message }, notes: [] });
  });
});

describe('resourceNamesChanged', () => {
  it.each([
    [[], [], false],
    [['a'], ['a'], false],
    [['a', 'b'], ['b', 'a'], false],
    [['a'], ['b'], true],
    [['a'], ['a', 'b'], true],
    [['a', 'b'], ['a'], true],
    [['a', 'a'], ['a', 'b'], true],
  ])('%j → %j: %s', (before, after, changed) => {
    expect(resourceNamesChanged(before, after)).toBe(changed);
  });
});
