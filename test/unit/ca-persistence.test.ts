import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ManualClock } from '../../src/common/clock.ts';
import { Code } from '../../src/common/errors.ts';
import { certificatesToPem, openCertificateAuthority } from '../../src/server/ca/index.ts';
import { checkX509SvidProfile } from '../support/svid-profile.ts';
import { HOUR, TD, apiErrorOf, keyPair, tempDir } from '../support/ca-fixtures.ts';

const ID = `spiffe://${TD}/w`;

describe('CA persistence', () => {
  let dir: string;
  let caDir: string;
  let cleanup: () => Promise<void>;
  let clock: ManualClock;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
    caDir = join(dir, 'ca');
    clock = new ManualClock();
  });
  afterEach(async () => cleanup());

  const open = () => openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock });
  const keyFiles = async (): Promise<string[]> => (await readdir(caDir)).filter((f) => f.endsWith('.key.pem')).sort();

  it('reopening the data dir yields the same roots, JWT keys and sequence number', async () => {
    const first = await open();
    const reopened = await open();
    expect(reopened.bundle()).toEqual(first.bundle());
    const svid = reopened.signX509Svid({ spiffeId: ID, publicKey: keyPair('P-256').publicKey });
    expect(checkX509SvidProfile(svid.certChain, { expectedId: ID, bundleRootsDer: first.bundle().x509Authorities, now: new Date(clock.now()) })).toEqual([]);
  });

  it('keeps the directory 0700, keys and state 0600 and bundle.pem in step with the bundle', async () => {
    const ca = await open();
    expect((await stat(caDir)).mode & 0o777).toBe(0o700);
    const files = await readdir(caDir);
    expect(files.sort()).toEqual(['bundle.pem', ...(await keyFiles()), 'state.json'].sort());
    expect(await keyFiles()).toHaveLength(2);
    for (const f of [...(await keyFiles()), 'state.json']) expect((await stat(join(caDir, f))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(caDir, 'bundle.pem'), 'utf8')).toBe(certificatesToPem(ca.bundle().x509Authorities));
    const state = await readFile(join(caDir, 'state.json'), 'utf8');
    expect(state).not.toContain('PRIVATE KEY');
  });

  it('persists prepared and activated authorities and deletes keys no longer used', async () => {
    const ca = await open();
    const initialKeys = await keyFiles();
    clock.advance(12 * HOUR);
    await ca.maybeRotate();
    expect(await keyFiles()).toHaveLength(4);
    const reopened = await open();
    expect(reopened.bundle()).toEqual(ca.bundle());
    expect(reopened.status()).toEqual(ca.status());
    clock.advance(8 * HOUR);
    await reopened.maybeRotate();
    const left = await keyFiles();
    expect(left).toHaveLength(2);
    expect(left.some((f) => initialKeys.includes(f))).toBe(false);
  });

  it('removes key files left unreferenced by a crash and ignores stray temporary files', async () => {
    await open();
    await writeFile(join(caDir, 'x509-ca-0123456789abcdef.key.pem'), 'orphan', { mode: 0o600 });
    await writeFile(join(caDir, '.state.json.tmp-1-abcdef'), '{"half":');
    const ca = await open();
    expect(await keyFiles()).toHaveLength(2);
    expect((await readdir(caDir)).some((f) => f.includes('.tmp-'))).toBe(false);
    expect(ca.bundle().x509Authorities).toHaveLength(1);
  });

  it.each([
    { name: 'garbage', content: 'not json', detail: 'not valid JSON' },
    { name: 'an empty file', content: '', detail: 'the file is empty' },
    { name: 'a wrong shape', content: '{"version":1,"trustDomain":"example.org"}', detail: 'x509 is not an object' },
    { name: 'an unknown version', content: '{"version":7}', detail: 'unsupported version 7' },
  ])('refuses a state.json holding $name, naming the file and not regenerating', async ({ content, detail }) => {
    await open();
    const path = join(caDir, 'state.json');
    await writeFile(path, content);
    const keysBefore = await keyFiles();
    const err = await apiErrorOf(() => open());
    expect({ code: err.code, message: err.message }).toEqual({
      code: Code.FAILED_PRECONDITION,
      message: `ca: ${path} is corrupt: ${detail}; restore it or move the CA directory away to start a new CA`,
    });
    expect(await readFile(path, 'utf8')).toBe(content);
    expect(await keyFiles()).toEqual(keysBefore);
  });

  it('names a missing key file', async () => {
    await open();
    const [jwtKey] = (await keyFiles()).filter((f) => f.startsWith('jwt-'));
    await rm(join(caDir, jwtKey!));
    const err = await apiErrorOf(() => open());
    expect({ code: err.code, message: err.message }).toEqual({
      code: Code.FAILED_PRECONDITION,
      message: `ca: key file ${join(caDir, jwtKey!)} referenced by ${join(caDir, 'state.json')} is missing`,
    });
  });

  it('names a corrupt key file without echoing its content', async () => {
    await open();
    const [x509Key] = (await keyFiles()).filter((f) => f.startsWith('x509-ca-'));
    const path = join(caDir, x509Key!);
    await writeFile(path, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
    const err = await apiErrorOf(() => open());
    expect({ code: err.code, message: err.message }).toEqual({
      code: Code.FAILED_PRECONDITION,
      message: `ca: ${path} is corrupt: cannot parse the PEM private key; restore it or move the CA directory away to start a new CA`,
    });
  });

  it('refuses a data dir that holds another trust domain', async () => {
    await open();
    const err = await apiErrorOf(() => openCertificateAuthority({ dataDir: dir, trustDomain: 'other.org', clock }));
    expect({ code: err.code, message: err.message }).toEqual({
      code: Code.FAILED_PRECONDITION,
      message: `ca: ${caDir} holds the CA of trust domain "${TD}", not "other.org"; use another data directory`,
    });
  });

  it.each([
    { opts: { trustDomain: 'Bad_TD!' }, message: 'ca: invalid trust domain "Bad_TD!": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores' },
    { opts: { caTtlMs: 0 }, message: 'ca: caTtlMs must be a positive number, got 0' },
  ])('rejects bad options: $message', async ({ opts, message }) => {
    const err = await apiErrorOf(() => openCertificateAuthority({ dataDir: dir, trustDomain: TD, clock, ...opts }));
    expect({ code: err.code, message: err.message }).toEqual({ code: Code.INVALID_ARGUMENT, message });
    await expect(stat(caDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
