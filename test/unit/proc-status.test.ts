import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseGroup, parsePasswd } from '../../src/attestors/workload/passwd.ts';
import { parseProcStatus, type ProcStatus } from '../../src/attestors/workload/proc-status.ts';

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/proc/${name}`, import.meta.url), 'utf8');
const ids = (real: number, effective: number, saved: number, fs: number) => ({ real, effective, saved, fs });

describe('parseProcStatus on real-world samples', () => {
  const cases: Array<[string, ProcStatus]> = [
    ['root-process.status', { uid: ids(0, 0, 0, 0), gid: ids(0, 0, 0, 0), groups: [] }],
    [
      'user-with-supplementary-groups.status',
      { uid: ids(1000, 1000, 1000, 1000), gid: ids(1000, 1000, 1000, 1000), groups: [4, 24, 27, 1000] },
    ],
    [
      'setuid-real-differs-from-effective.status',
      { uid: ids(1000, 0, 0, 0), gid: ids(1000, 0, 0, 0), groups: [] },
    ],
    [
      // Blank lines, lines without a colon, look-alike keys ("Uid :", "uid:", "GroupsX:"),
      // tabs inside Groups and a last line without a newline are all tolerated.
      'malformed-lines.status',
      { uid: ids(1001, 1002, 1003, 1004), gid: ids(2001, 2002, 2003, 2004), groups: [10, 20, 30] },
    ],
  ];
  for (const [name, expected] of cases) {
    it(`reads ${name}`, () => {
      expect(parseProcStatus(fixture(name))).toEqual({ ok: true, value: expected });
    });
  }
});

describe('parseProcStatus edge cases', () => {
  const good: Array<[string, string, ProcStatus]> = [
    [
      'treats a missing Groups line as no groups',
      'Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\n',
      { uid: ids(1, 2, 3, 4), gid: ids(5, 6, 7, 8), groups: [] },
    ],
    [
      'accepts the largest 32-bit ID',
      'Uid:\t4294967295\t4294967295\t4294967295\t4294967295\nGid:\t0\t0\t0\t0\nGroups:\t4294967295 \n',
      { uid: ids(4294967295, 4294967295, 4294967295, 4294967295), gid: ids(0, 0, 0, 0), groups: [4294967295] },
    ],
    [
      'ignores an escaped newline in Name',
      'Name:\tevil\\nUid:\t0\t0\t0\t0\nUid:\t7\t7\t7\t7\nGid:\t7\t7\t7\t7\n',
      { uid: ids(7, 7, 7, 7), gid: ids(7, 7, 7, 7), groups: [] },
    ],
  ];
  for (const [behaviour, text, expected] of good) {
    it(behaviour, () => expect(parseProcStatus(text)).toEqual({ ok: true, value: expected }));
  }

  const bad: Array<[string, string, string]> = [
    ['rejects empty text', '', 'the "Uid:" line is missing'],
    ['rejects a missing Gid line', 'Uid:\t0\t0\t0\t0\n', 'the "Gid:" line is missing'],
    ['rejects a Uid line with 3 IDs', 'Uid:\t0\t0\t0\nGid:\t0\t0\t0\t0\n', 'the "Uid:" line must hold 4 IDs, not 3'],
    ['rejects an empty Gid line', 'Uid:\t0\t0\t0\t0\nGid:\t\n', 'the "Gid:" line must hold 4 IDs, not 0'],
    ['rejects a negative ID', 'Uid:\t0\t-1\t0\t0\nGid:\t0\t0\t0\t0\n', 'the "Uid:" line holds an invalid ID "-1"'],
    [
      'rejects an ID beyond 32 bits',
      'Uid:\t0\t0\t0\t0\nGid:\t4294967296\t0\t0\t0\n',
      'the "Gid:" line holds an invalid ID "4294967296"',
    ],
    [
      'rejects a non-numeric group',
      'Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t4 wheel\n',
      'the "Groups:" line holds an invalid ID "wheel"',
    ],
    [
      'rejects a repeated Uid line rather than picking one',
      'Uid:\t0\t0\t0\t0\nUid:\t7\t7\t7\t7\nGid:\t0\t0\t0\t0\n',
      'the "Uid:" line appears more than once',
    ],
    [
      'rejects a repeated Groups line',
      'Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t1\nGroups:\t2\n',
      'the "Groups:" line appears more than once',
    ],
  ];
  for (const [behaviour, text, error] of bad) {
    it(behaviour, () => expect(parseProcStatus(text)).toEqual({ ok: false, error }));
  }
});

describe('parsePasswd', () => {
  const text = [
    '# /etc/passwd',
    'root:x:0:0:root:/root:/bin/bash',
    '',
    '   ',
    '  daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin  ',
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\r',
    '+::::::',
    '+@admins::::::',
    '-mallory:x:1001:1001::/home/mallory:/bin/sh',
    '+alice:x:1002:1002::/home/alice:/bin/sh',
    'short:x:1003:1003:',
    'padded:x:01004:1004::/home/padded:/bin/sh',
    'badgid:x:1005:staff::/home/badgid:/bin/sh',
    'signedgid:x:1006:+1006::/home/signedgid:/bin/sh',
    ':x:1007:1007::/:/bin/sh',
    'first:x:1008:1008::/:/bin/sh',
    'second:x:1008:1008::/:/bin/sh',
    'huge:x:4294967296:0::/:/bin/sh',
    'kevin:x:1009:1009:Kevin,,,:/home/kevin:/usr/bin/zsh:extra',
  ].join('\n');

  const cases: Array<[string, number, string | undefined]> = [
    ['reads a plain line', 0, 'root'],
    ['trims surrounding whitespace', 1, 'daemon'],
    ['ignores a trailing carriage return', 65534, 'nobody'],
    ['skips a NIS "-" exclusion', 1001, undefined],
    ['skips a NIS "+" inclusion', 1002, undefined],
    ['skips a line with fewer than 7 fields', 1003, undefined],
    ['skips a non-canonical UID (Go compares it as text)', 1004, undefined],
    ['skips a line whose GID is not an integer', 1005, undefined],
    ['accepts a signed GID, as strconv.Atoi does', 1006, 'signedgid'],
    ['skips an empty name', 1007, undefined],
    ['keeps the first line for a repeated UID', 1008, 'first'],
    ['skips a UID beyond 32 bits', 4294967296, undefined],
    ['accepts extra fields', 1009, 'kevin'],
  ];
  const names = parsePasswd(text);
  for (const [behaviour, uid, name] of cases) {
    it(`${behaviour} (uid ${uid})`, () => expect(names.get(uid)).toBe(name));
  }
  it('maps exactly the valid lines', () => {
    expect([...names.entries()]).toEqual([
      [0, 'root'],
      [1, 'daemon'],
      [65534, 'nobody'],
      [1006, 'signedgid'],
      [1008, 'first'],
      [1009, 'kevin'],
    ]);
  });
});

describe('parseGroup', () => {
  const text = [
    '# /etc/group',
    'root:x:0:',
    '',
    'adm:x:4:syslog,alice',
    '\tsudo:x:27:alice',
    '+:::',
    '+@staff:::',
    '-wheel:x:10:',
    'nogid:x::',
    'short:x:28',
    'dup:x:4:',
    'users:x:100:alice:extra',
  ].join('\n');

  const cases: Array<[string, number, string | undefined]> = [
    ['reads a line without members', 0, 'root'],
    ['reads a line with members', 4, 'adm'],
    ['trims leading whitespace', 27, 'sudo'],
    ['skips a NIS "-" exclusion', 10, undefined],
    ['skips a line with fewer than 4 fields', 28, undefined],
    ['accepts extra fields', 100, 'users'],
  ];
  const names = parseGroup(text);
  for (const [behaviour, gid, name] of cases) {
    it(`${behaviour} (gid ${gid})`, () => expect(names.get(gid)).toBe(name));
  }
  it('maps exactly the valid lines, first wins', () => {
    expect([...names.entries()]).toEqual([
      [0, 'root'],
      [4, 'adm'],
      [27, 'sudo'],
      [100, 'users'],
    ]);
  });
  it('yields an empty map for empty text', () => {
    expect(parseGroup('').size).toBe(0);
    expect(parsePasswd('\n\n# nothing\n').size).toBe(0);
  });
});
