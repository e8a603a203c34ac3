/**
 * The JSON `spire-server entry create -data <file>` reads: `{"entries":[…]}` with each entry
 * in the JSON form of SPIRE's `common.RegistrationEntry` (snake_case keys as Go's encoding/json
 * matches them, case-insensitively; `entryExpiry` for the expiry; unknown keys ignored),
 * converted to API entries as SPIRE's `RegistrationEntryToProto` does.
 */
import { ApiError, Code } from '../../common/errors.ts';
import { parseSpiffeId, parseTrustDomain } from '../../common/spiffe-id.ts';
import type { Entry } from '../../gen/spire/api/types/Entry.ts';
import type { SPIFFEID } from '../../gen/spire/api/types/SPIFFEID.ts';

type Json = Record<string, unknown>;

function invalid(message: string): ApiError {
  return new ApiError(Code.INVALID_ARGUMENT, message);
}

/** The value under `key`, matched case-insensitively as Go's encoding/json does. */
function field(obj: Json, key: string): unknown {
  if (key in obj) return obj[key];
  const lower = key.toLowerCase();
  const found = Object.keys(obj).find((k) => k.toLowerCase() === lower);
  return found === undefined ? undefined : obj[found];
}

function str(obj: Json, key: string, where: string): string {
  const v = field(obj, key);
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw invalid(`${where}.${key}: expected a string`);
  return v;
}

function int(obj: Json, key: string, where: string): number {
  const v = field(obj, key);
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(`${where}.${key}: expected an integer`);
  return v;
}

function bool(obj: Json, key: string, where: string): boolean {
  const v = field(obj, key);
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalid(`${where}.${key}: expected true or false`);
  return v;
}

function strings(obj: Json, key: string, where: string): string[] {
  const v = field(obj, key);
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw invalid(`${where}.${key}: expected a list of strings`);
  return v as string[];
}

function id(raw: string, what: string, where: string): SPIFFEID {
  const parsed = parseSpiffeId(raw);
  if (!parsed.ok) throw invalid(`${where}: invalid ${what}: ${parsed.error}`);
  return { trust_domain: parsed.value.trustDomain, path: parsed.value.path };
}

function entryOf(raw: unknown, where: string): Entry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(`${where}: expected an object`);
  const obj = raw as Json;
  const selectorsRaw = field(obj, 'selectors') ?? [];
  if (!Array.isArray(selectorsRaw)) throw invalid(`${where}.selectors: expected a list`);
  const selectors = selectorsRaw.map((s: unknown, i) => {
    if (typeof s !== 'object' || s === null) throw invalid(`${where}.selectors[${i}]: expected an object`);
    return { type: str(s as Json, 'type', `${where}.selectors[${i}]`), value: str(s as Json, 'value', `${where}.selectors[${i}]`) };
  });
  const federatesWith = strings(obj, 'federates_with', where).map((td) => {
    const name = td.replace(/^spiffe:\/\//, '');
    const parsed = parseTrustDomain(name);
    if (!parsed.ok) throw invalid(`${where}: invalid federated trust domain: ${parsed.error}`);
    return name;
  });
  const entry: Entry = {
    spiffe_id: id(str(obj, 'spiffe_id', where), 'SPIFFE ID', where),
    parent_id: id(str(obj, 'parent_id', where), 'parent ID', where),
    selectors,
    x509_svid_ttl: int(obj, 'x509_svid_ttl', where),
    jwt_svid_ttl: int(obj, 'jwt_svid_ttl', where),
    federates_with: federatesWith,
    admin: bool(obj, 'admin', where),
    downstream: bool(obj, 'downstream', where),
    expires_at: int(obj, 'entryExpiry', where),
    dns_names: strings(obj, 'dns_names', where),
    store_svid: bool(obj, 'store_svid', where),
    hint: str(obj, 'hint', where),
  };
  const entryId = str(obj, 'entry_id', where);
  if (entryId !== '') entry.id = entryId;
  return entry;
}

/** Parses the `-data` JSON into API entries; INVALID_ARGUMENT naming the entry otherwise. */
export function parseEntryData(text: string): Entry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(`invalid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid('expected a JSON object with "entries"');
  const list = field(doc as Json, 'entries') ?? [];
  if (!Array.isArray(list)) throw invalid('"entries": expected a list');
  return list.map((e, i) => entryOf(e, `entries[${i}]`));
}
