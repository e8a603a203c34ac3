import { describe, expect, it } from 'vitest';
import { parseFlags, type FlagSpecs } from '../../src/common/flags.ts';

const specs: FlagSpecs = {
  spiffeID: { kind: 'string', usage: 'id' },
  selector: { kind: 'list', usage: 'sel' },
  node: { kind: 'bool', usage: 'node' },
  ttl: { kind: 'int', usage: 'ttl', default: 600 },
};

describe('parseFlags', () => {
  it('reads single-dash, double-dash and name=value forms', () => {
    const r = parseFlags(['-spiffeID', 'spiffe://td/a', '--selector=unix:uid:0', '-selector', 'unix:gid:0', '-node', '-ttl=5'], specs);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.strings.get('spiffeID')).toBe('spiffe://td/a');
    expect(r.value.lists.get('selector')).toEqual(['unix:uid:0', 'unix:gid:0']);
    expect(r.value.bools.get('node')).toBe(true);
    expect(r.value.ints.get('ttl')).toBe(5);
  });
  it('fills defaults', () => {
    const r = parseFlags([], specs);
    expect(r.ok && r.value.ints.get('ttl')).toBe(600);
  });
  it('keeps positional arguments after the flags', () => {
    const r = parseFlags(['-node', 'extra', '-x'], specs);
    expect(r.ok && r.value.rest).toEqual(['extra', '-x']);
  });
  const errors: Array<[string, string[], string]> = [
    ['an unknown flag', ['-nope'], 'flag provided but not defined: -nope (flags: -spiffeID, -selector, -node, -ttl)'],
    ['a missing value', ['-spiffeID'], 'flag needs an argument: -spiffeID'],
    ['a bad integer', ['-ttl', 'ten'], 'invalid integer value "ten" for flag -ttl'],
    ['a bad boolean', ['-node=maybe'], 'invalid boolean value "maybe" for flag -node'],
  ];
  for (const [name, argv, message] of errors) {
    it(`rejects ${name}`, () => expect(parseFlags(argv, specs)).toEqual({ ok: false, error: message }));
  }
});
