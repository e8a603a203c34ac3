/**
 * `spiffe-server entry create|show|update|delete|count`, with spire-server's flags and output.
 */
import type { Command } from '../../common/command.ts';
import { EXIT_FAILURE, EXIT_OK } from '../../common/command.ts';
import type { FlagSpecs, FlagValues } from '../../common/flags.ts';
import { unaryCall } from '../../common/grpc-client.ts';
import { ApiError, Code } from '../../common/errors.ts';
import { parseSpiffeId } from '../../common/spiffe-id.ts';
import type { Entry, Entry__Output } from '../../gen/spire/api/types/Entry.ts';
import type { SPIFFEID } from '../../gen/spire/api/types/SPIFFEID.ts';
import { readFile } from 'node:fs/promises';
import { goCodeName } from '../../common/code-names.ts';
import { formatGoTimeUtc } from '../../common/go-time.ts';
import { connectAdmin, socketPathFlag } from './admin-client.ts';
import { parseEntryData } from './entry-data.ts';
import { outputFlag, protoJsonLine, wantsJson } from '../../common/proto-json-output.ts';

const entryFieldFlags: FlagSpecs = {
  spiffeID: { kind: 'string', usage: 'The SPIFFE ID that this record represents' },
  parentID: { kind: 'string', usage: 'The SPIFFE ID of this record\'s parent' },
  selector: { kind: 'list', usage: 'A colon-delimited type:value selector. Can be used more than once' },
  node: { kind: 'bool', usage: 'If set, this entry will be applied to matching nodes rather than workloads' },
  x509SVIDTTL: { kind: 'int', usage: 'The lifetime, in seconds, for SVIDs issued based on this registration entry' },
  jwtSVIDTTL: { kind: 'int', usage: 'The lifetime, in seconds, for JWT-SVIDs issued based on this registration entry' },
  federatesWith: { kind: 'list', usage: 'SPIFFE ID of a trust domain to federate with. Can be used more than once' },
  dns: { kind: 'list', usage: 'A DNS name that will be included in SVIDs issued based on this entry. Can be used more than once' },
  hint: { kind: 'string', usage: 'The entry hint, used to disambiguate entries with the same SPIFFE ID' },
  admin: { kind: 'bool', usage: 'If set, the SPIFFE ID in this entry will be granted access to the SPIRE Server\'s management APIs' },
  downstream: { kind: 'bool', usage: 'A boolean value that, when set, indicates that the entry describes a downstream SPIRE server' },
  storeSVID: { kind: 'bool', usage: 'A boolean value that, when set, indicates that the resulting issued SVID from this entry must be stored through an SVIDStore plugin' },
  entryExpiry: { kind: 'int', usage: 'An expiry, from epoch in seconds, for the resulting registration entry to be pruned' },
  socketPath: socketPathFlag,
};

function idArg(flag: string, value: string): SPIFFEID {
  const parsed = parseSpiffeId(value);
  if (!parsed.ok) throw new ApiError(Code.INVALID_ARGUMENT, `-${flag}: ${parsed.error}`);
  return { trust_domain: parsed.value.trustDomain, path: parsed.value.path };
}

function selectorArg(raw: string): { type: string; value: string } {
  const colon = raw.indexOf(':');
  if (colon <= 0 || colon === raw.length - 1) {
    throw new ApiError(Code.INVALID_ARGUMENT, `selector "${raw}" must be formatted as type:value`);
  }
  return { type: raw.slice(0, colon), value: raw.slice(colon + 1) };
}

function trustDomainArg(raw: string): string {
  return raw.replace(/^spiffe:\/\//, '');
}

/** Builds an Entry message from the flags (only flags present are set). */
function entryFromFlags(v: FlagValues, requireIds: boolean): Entry {
  const spiffeId = v.strings.get('spiffeID');
  if (spiffeId === undefined && requireIds) throw new ApiError(Code.INVALID_ARGUMENT, 'a SPIFFE ID is required (-spiffeID)');
  const selectors = (v.lists.get('selector') ?? []).map(selectorArg);
  if (selectors.length === 0 && requireIds) throw new ApiError(Code.INVALID_ARGUMENT, 'at least one selector is required (-selector type:value)');
  const node = v.bools.get('node') === true;
  const parent = v.strings.get('parentID');
  if (node && parent !== undefined) throw new ApiError(Code.INVALID_ARGUMENT, 'Parent ID is not allowed for node entries (-node and -parentID)');
  if (!node && parent === undefined && requireIds) throw new ApiError(Code.INVALID_ARGUMENT, 'a parent ID is required if the node flag is not set (-parentID)');
  const id = spiffeId === undefined ? undefined : idArg('spiffeID', spiffeId);
  const entry: Entry = {
    selectors,
    federates_with: (v.lists.get('federatesWith') ?? []).map(trustDomainArg),
    dns_names: v.lists.get('dns') ?? [],
    x509_svid_ttl: v.ints.get('x509SVIDTTL') ?? 0,
    jwt_svid_ttl: v.ints.get('jwtSVIDTTL') ?? 0,
    hint: v.strings.get('hint') ?? '',
    admin: v.bools.get('admin') === true,
    downstream: v.bools.get('downstream') === true,
    store_svid: v.bools.get('storeSVID') === true,
    expires_at: v.ints.get('entryExpiry') ?? 0,
  };
  if (id !== undefined) entry.spiffe_id = id;
  if (node && id !== undefined) entry.parent_id = { trust_domain: id.trust_domain, path: '/spire/server' };
  else if (parent !== undefined) entry.parent_id = idArg('parentID', parent);
  const entryId = v.strings.get('entryID');
  if (entryId !== undefined) entry.id = entryId;
  return entry;
}

function ttl(seconds: number): string {
  return seconds === 0 ? 'default' : String(seconds);
}

/** Formats an entry the way `spire-server entry show` does. */
export function formatEntry(e: Entry__Output): string {
  const id = (x: Entry__Output['spiffe_id']): string => (x === null ? '' : `spiffe://${x.trust_domain}${x.path}`);
  const lines = [
    `Entry ID         : ${e.id === '' ? '(none)' : e.id}`,
    `SPIFFE ID        : ${id(e.spiffe_id)}`,
    `Parent ID        : ${id(e.parent_id)}`,
    `Revision         : ${e.revision_number}`,
  ];
  if (e.downstream) lines.push('Downstream       : true');
  lines.push(`X509-SVID TTL    : ${ttl(e.x509_svid_ttl)}`, `JWT-SVID TTL     : ${ttl(e.jwt_svid_ttl)}`);
  if (e.expires_at > 0) lines.push(`Expiration time  : ${formatGoTimeUtc(e.expires_at * 1000)}`);
  for (const s of e.selectors) lines.push(`Selector         : ${s.type}:${s.value}`);
  for (const td of e.federates_with) lines.push(`FederatesWith    : ${td}`);
  for (const dns of e.dns_names) lines.push(`DNS name         : ${dns}`);
  if (e.admin) lines.push('Admin            : true');
  if (e.store_svid) lines.push('StoreSvid        : true');
  if (e.hint !== '') lines.push(`Hint             : ${e.hint}`);
  // A blank line ends each entry, as spire-server's printEntry.
  return `${lines.join('\n')}\n\n`;
}

/** An entry as sent, with the defaults the API fills in: what SPIRE prints for a failed create. */
function asOutput(e: Entry): Entry__Output {
  return {
    id: e.id ?? '',
    spiffe_id: (e.spiffe_id as Entry__Output['spiffe_id']) ?? null,
    parent_id: (e.parent_id as Entry__Output['parent_id']) ?? null,
    selectors: (e.selectors ?? []).map((s) => ({ type: s.type ?? '', value: s.value ?? '' })),
    x509_svid_ttl: e.x509_svid_ttl ?? 0,
    federates_with: e.federates_with ?? [],
    admin: e.admin ?? false,
    downstream: e.downstream ?? false,
    expires_at: Number(e.expires_at ?? 0),
    dns_names: e.dns_names ?? [],
    revision_number: Number(e.revision_number ?? 0),
    store_svid: e.store_svid ?? false,
    jwt_svid_ttl: e.jwt_svid_ttl ?? 0,
    hint: e.hint ?? '',
    created_at: Number(e.created_at ?? 0),
  };
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareSelectors(a: { type: string; value: string }, b: { type: string; value: string }): number {
  return compareStrings(a.type, b.type) || compareStrings(a.value, b.value);
}

/**
 * Sorts entries (and each entry's selectors) as `spire-server entry show` does
 * (`util.SortTypesEntries`): SPIFFE ID, parent ID, X509-SVID TTL, JWT-SVID TTL, selectors.
 */
export function sortEntriesForDisplay(entries: Entry__Output[]): Entry__Output[] {
  const withSorted = entries.map((e) => ({ ...e, selectors: [...e.selectors].sort(compareSelectors) }));
  const idKey = (x: Entry__Output['spiffe_id']): [string, string] => [x?.trust_domain ?? '', x?.path ?? ''];
  return withSorted.sort((a, b) => {
    const [aTd, aPath] = idKey(a.spiffe_id);
    const [bTd, bPath] = idKey(b.spiffe_id);
    const [apTd, apPath] = idKey(a.parent_id);
    const [bpTd, bpPath] = idKey(b.parent_id);
    const byIds = compareStrings(aTd, bTd) || compareStrings(aPath, bPath) || compareStrings(apTd, bpTd) || compareStrings(apPath, bpPath);
    if (byIds !== 0) return byIds;
    if (a.x509_svid_ttl !== b.x509_svid_ttl) return a.x509_svid_ttl - b.x509_svid_ttl;
    if (a.jwt_svid_ttl !== b.jwt_svid_ttl) return a.jwt_svid_ttl - b.jwt_svid_ttl;
    if (a.selectors.length !== b.selectors.length) return a.selectors.length - b.selectors.length;
    for (let i = 0; i < a.selectors.length; i++) {
      const c = compareSelectors(a.selectors[i] as Entry__Output['selectors'][number], b.selectors[i] as Entry__Output['selectors'][number]);
      if (c !== 0) return c;
    }
    return 0;
  });
}

/** Reads `-data`: a file, or stdin for "-". */
async function readData(path: string): Promise<string> {
  if (path !== '-') {
    return readFile(path, 'utf8').catch((err: unknown) => {
      throw new ApiError(Code.INVALID_ARGUMENT, `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
    });
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function statusError(status: { code: number; message: string } | null): string | undefined {
  if (status === null || status.code === Code.OK) return undefined;
  return `${Code[status.code] ?? status.code}: ${status.message}`;
}

/** The entry subcommands. */
export const entryCommands: readonly Command[] = [
  {
    name: 'entry create',
    summary: 'Creates registration entries',
    flags: {
      ...entryFieldFlags,
      entryID: { kind: 'string', usage: 'A custom ID for this registration entry (optional)' },
      data: { kind: 'string', usage: "Path to a file containing registration JSON (optional). If set to '-', read the JSON from stdin." },
      output: outputFlag,
    },
    async run(v, io) {
      const json = wantsJson(v);
      // With -data every other entry flag is ignored, as in spire-server.
      const dataPath = v.strings.get('data');
      const entries = dataPath === undefined ? [entryFromFlags(v, true)] : parseEntryData(await readData(dataPath));
      const admin = connectAdmin(v.strings.get('socketPath') as string);
      try {
        const res = await unaryCall(admin.entry, 'BatchCreateEntry', { entries });
        if (json) {
          // As spire-server: failed results carry the entry as sent, and the exit code is 0.
          const results = res.results.map((r, i) => (r.status?.code ?? Code.UNKNOWN) === Code.OK || entries[i] === undefined ? r : { ...r, entry: entries[i] });
          io.out(protoJsonLine('spire.api.server.entry.v1.BatchCreateEntryResponse', { results }));
          return EXIT_OK;
        }
        // As spire-server: created entries on stdout, then each failure on stderr with the
        // entry as it was sent (the API returns none for it).
        const failed: string[] = [];
        let out = '';
        res.results.forEach((r, i) => {
          const code = r.status?.code ?? Code.UNKNOWN;
          if (code === Code.OK && r.entry !== null) out += formatEntry(r.entry);
          else {
            const sent = entries[i];
            failed.push(
              `Failed to create the following entry (code: ${goCodeName(code)}, msg: ${JSON.stringify(r.status?.message ?? '')}):\n${sent === undefined ? '' : formatEntry(asOutput(sent))}`,
            );
          }
        });
        if (out !== '') io.out(out);
        if (failed.length === 0) return EXIT_OK;
        io.err(`${failed.join('')}Error: failed to create one or more entries`);
        return EXIT_FAILURE;
      } finally {
        admin.close();
      }
    },
  },
  {
    name: 'entry update',
    summary: 'Updates registration entries',
    flags: { ...entryFieldFlags, entryID: { kind: 'string', usage: 'The Registration Entry ID of the record to update' } },
    async run(v, io) {
      const entryId = v.strings.get('entryID');
      if (entryId === undefined) throw new ApiError(Code.INVALID_ARGUMENT, 'an entry ID is required (-entryID)');
      const entry = entryFromFlags(v, true);
      const admin = connectAdmin(v.strings.get('socketPath') as string);
      try {
        const res = await unaryCall(admin.entry, 'BatchUpdateEntry', { entries: [{ ...entry, id: entryId }] });
        const result = res.results[0];
        const failure = statusError(result?.status ?? null);
        if (failure !== undefined || result?.entry === null || result === undefined) {
          io.err(`Failed to update the entry ${entryId}: ${failure ?? 'unknown'}`);
          return EXIT_FAILURE;
        }
        io.out(formatEntry(result.entry));
        return EXIT_OK;
      } finally {
        admin.close();
      }
    },
  },
  {
    name: 'entry delete',
    summary: 'Deletes registration entries',
    flags: { entryID: { kind: 'string', usage: 'The Registration Entry ID of the record to delete' }, socketPath: socketPathFlag },
    async run(v, io) {
      const entryId = v.strings.get('entryID');
      if (entryId === undefined) throw new ApiError(Code.INVALID_ARGUMENT, 'an entry ID is required (-entryID)');
      const admin = connectAdmin(v.strings.get('socketPath') as string);
      try {
        const res = await unaryCall(admin.entry, 'BatchDeleteEntry', { ids: [entryId] });
        const failure = statusError(res.results[0]?.status ?? null);
        if (failure !== undefined) {
          io.err(`Failed to delete entry ${entryId}: ${failure}`);
          return EXIT_FAILURE;
        }
        io.out(`Deleted entry with ID: ${entryId}`);
        return EXIT_OK;
      } finally {
        admin.close();
      }
    },
  },
  {
    name: 'entry show',
    summary: 'Displays configured registration entries',
    flags: {
      entryID: { kind: 'string', usage: 'The Entry ID of the records to show' },
      spiffeID: { kind: 'string', usage: 'The SPIFFE ID of the records to show' },
      parentID: { kind: 'string', usage: 'The Parent ID of the records to show' },
      selector: { kind: 'list', usage: 'A colon-delimited type:value selector. Can be used more than once' },
      matchSelectorsOn: { kind: 'string', usage: 'The match mode used when filtering by selectors: exact, subset, superset or any', default: 'superset' },
      hint: { kind: 'string', usage: 'The Hint of the records to show (optional)' },
      output: outputFlag,
      socketPath: socketPathFlag,
    },
    async run(v, io) {
      const json = wantsJson(v);
      const admin = connectAdmin(v.strings.get('socketPath') as string);
      try {
        let entries: Entry__Output[];
        const entryId = v.strings.get('entryID');
        if (entryId !== undefined) {
          entries = [await unaryCall(admin.entry, 'GetEntry', { id: entryId })];
        } else {
          const selectors = (v.lists.get('selector') ?? []).map(selectorArg);
          const mode = (v.strings.get('matchSelectorsOn') as string).toUpperCase();
          if (!['EXACT', 'SUBSET', 'SUPERSET', 'ANY'].includes(mode)) {
            throw new ApiError(Code.INVALID_ARGUMENT, `-matchSelectorsOn must be exact, subset, superset or any (got "${mode.toLowerCase()}")`);
          }
          const spiffeId = v.strings.get('spiffeID');
          const parentId = v.strings.get('parentID');
          const hint = v.strings.get('hint');
          const res = await unaryCall(admin.entry, 'ListEntries', {
            filter: {
              by_spiffe_id: spiffeId === undefined ? null : idArg('spiffeID', spiffeId),
              by_parent_id: parentId === undefined ? null : idArg('parentID', parentId),
              by_selectors: selectors.length === 0 ? null : { selectors, match: `MATCH_${mode}` as 'MATCH_EXACT' },
              by_hint: hint === undefined ? null : { value: hint },
            },
          });
          entries = res.entries;
        }
        const sorted = sortEntriesForDisplay(entries);
        if (json) io.out(protoJsonLine('spire.api.server.entry.v1.ListEntriesResponse', { entries: sorted, next_page_token: '' }));
        else io.out(`Found ${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}\n${sorted.map(formatEntry).join('')}`);
        return EXIT_OK;
      } finally {
        admin.close();
      }
    },
  },
  {
    name: 'entry count',
    summary: 'Counts registration entries',
    flags: { output: outputFlag, socketPath: socketPathFlag },
    async run(v, io) {
      const json = wantsJson(v);
      const admin = connectAdmin(v.strings.get('socketPath') as string);
      try {
        const res = await unaryCall(admin.entry, 'CountEntries', {});
        if (json) {
          io.out(protoJsonLine('spire.api.server.entry.v1.CountEntriesResponse', res));
          return EXIT_OK;
        }
        io.out(`${res.count} registration ${res.count === 1 ? 'entry' : 'entries'}`);
        return EXIT_OK;
      } finally {
        admin.close();
      }
    },
  },
];
