/**
 * A pure parser of `/proc/<pid>/status` text: the process's user and group IDs and its
 * supplementary groups. Reading the file is the caller's job (unix.ts).
 */
import type { Parsed } from '../../common/spiffe-id.ts';

/** The four IDs of a `Uid:` or `Gid:` line, in the kernel's order. */
export interface IdSet {
  readonly real: number;
  readonly effective: number;
  readonly saved: number;
  readonly fs: number;
}

/** The credentials of a process as `/proc/<pid>/status` reports them. */
export interface ProcStatus {
  readonly uid: IdSet;
  readonly gid: IdSet;
  /** Supplementary group IDs in the kernel's order (the `Groups:` line; `[]` if absent). */
  readonly groups: readonly number[];
}

const MAX_ID = 0xffff_ffff;
const DECIMAL = /^[0-9]{1,10}$/;
const WHITESPACE = /[ \t]+/;

/**
 * Parses the text of `/proc/<pid>/status`.
 *
 * Only the exact keys `Uid:`, `Gid:` and `Groups:` are read; every other line, including
 * lines without a colon, is ignored. `Uid:` and `Gid:` are required and must hold four IDs.
 * A repeated key is an error rather than "first/last wins": the kernel never repeats one,
 * so a repeat means the text is not what the kernel wrote.
 */
export function parseProcStatus(text: string): Parsed<ProcStatus> {
  let uidText: string | undefined;
  let gidText: string | undefined;
  let groupsText: string | undefined;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    // Cheap first-character filter: almost every line is skipped without slicing.
    const first = text.charCodeAt(start);
    if (first === 0x55 /* U */ || first === 0x47 /* G */) {
      if (text.startsWith('Uid:', start)) {
        if (uidText !== undefined) return duplicate('Uid');
        uidText = text.slice(start + 4, end);
      } else if (text.startsWith('Gid:', start)) {
        if (gidText !== undefined) return duplicate('Gid');
        gidText = text.slice(start + 4, end);
      } else if (text.startsWith('Groups:', start)) {
        if (groupsText !== undefined) return duplicate('Groups');
        groupsText = text.slice(start + 7, end);
      }
    }
    start = end + 1;
  }
  if (uidText === undefined) return { ok: false, error: 'the "Uid:" line is missing' };
  if (gidText === undefined) return { ok: false, error: 'the "Gid:" line is missing' };
  const uid = parseIdSet('Uid', uidText);
  if (!uid.ok) return uid;
  const gid = parseIdSet('Gid', gidText);
  if (!gid.ok) return gid;
  const groups = groupsText === undefined ? { ok: true as const, value: [] } : parseGroups(groupsText);
  if (!groups.ok) return groups;
  return { ok: true, value: { uid: uid.value, gid: gid.value, groups: groups.value } };
}

function duplicate(key: string): Parsed<never> {
  return { ok: false, error: `the "${key}:" line appears more than once` };
}

function fields(value: string): string[] {
  const trimmed = value.trim();
  return trimmed === '' ? [] : trimmed.split(WHITESPACE);
}

function parseId(token: string): number | undefined {
  if (!DECIMAL.test(token)) return undefined;
  const id = Number(token);
  return id <= MAX_ID ? id : undefined;
}

function parseIdSet(key: string, value: string): Parsed<IdSet> {
  const tokens = fields(value);
  const ids: number[] = [];
  for (const token of tokens) {
    const id = parseId(token);
    if (id === undefined) return { ok: false, error: `the "${key}:" line holds an invalid ID "${token}"` };
    ids.push(id);
  }
  const [real, effective, saved, fs] = ids;
  if (ids.length !== 4 || real === undefined || effective === undefined || saved === undefined || fs === undefined) {
    return { ok: false, error: `the "${key}:" line must hold 4 IDs, not ${ids.length}` };
  }
  return { ok: true, value: { real, effective, saved, fs } };
}

function parseGroups(value: string): Parsed<number[]> {
  const groups: number[] = [];
  for (const token of fields(value)) {
    const id = parseId(token);
    if (id === undefined) return { ok: false, error: `the "Groups:" line holds an invalid ID "${token}"` };
    groups.push(id);
  }
  return { ok: true, value: groups };
}
