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
import { connectAdmin, socketPathFlag } from './admin-client.ts';

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
    `Entry ID         : ${e.id}`,
    `SPIFFE ID        : ${id(e.spiffe_id)}`,
    `Parent ID        : ${id(e.parent_id)}`,
    `Revision         : ${e.revision_number}`,
  ];
  if (e.downstream) lines.push('Downstream       : true');
  lines.push(`X509-SVID TTL    : ${ttl(e.x509_svid_ttl)}`, `JWT-SVID TTL     : ${ttl(e.jwt_svid_ttl)}`);
  if (e.expires_at > 0) lines.push(`Expiration time  : ${new Date(e.expires_at * 1000).toISOString()}`);
  for (const s of e.selectors) lines.push(`Selector         : ${s.type}:${s.value}`);
  for (const td of e.federates_with) lines.push(`FederatesWith    : ${td}`);
  for (const dns of e.dns_names) lines.push(`DNS name         : ${dns}`);
  if (e.admin) lines.push('Admin            : true');
  if (e.store_svid) lines.push('StoreSvid        : true');
  if (e.hint !== '') lines.push(`Hint             : ${e.hint}`);
  return `${lines.join('\n')}\n`;
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
    flags: { ...entryFieldFlags, entryID: { kind: 'string', usage: 'A custom ID for this registration entry (optional)' } },
    async run(v, io) {
      const entry = entryFromFlags(v, true);
      const admin = connectAdmin(v.strings.get('socketPath') as string);
      try {
        const res = await unaryCall(admin.entry, 'BatchCreateEntry', { entries: [entry] });
        const result = res.results[0];
        const failure = statusError(result?.status ?? null);
        if (failure !== undefined || result?.entry === null || result === undefined) {
          io.err(`Failed to create the following entry (code: ${failure ?? 'unknown'}):\n${result?.entry ? formatEntry(result.entry) : ''}`);
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
      socketPath: socketPathFlag,
    },
    async run(v, io) {
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
        io.out(`Found ${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}\n${entries.map(formatEntry).join('\n')}`);
        return EXIT_OK;
      } finally {
        admin.close();
      }
    },
  },
  {
    name: 'entry count',
    summary: 'Counts registration entries',
    flags: { socketPath: socketPathFlag },
    async run(v, io) {
      const admin = connectAdmin(v.strings.get('socketPath') as string);
      try {
        const res = await unaryCall(admin.entry, 'CountEntries', {});
        io.out(`${res.count} registration ${res.count === 1 ? 'entry' : 'entries'}`);
        return EXIT_OK;
      } finally {
        admin.close();
      }
    },
  },
];
