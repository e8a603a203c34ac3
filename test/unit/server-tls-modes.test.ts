/**
 * `<data_dir>/server-tls.json`: the servers that need TLS 1.2 without session tickets
 * (spiffe/spire#7076), remembered across restarts by address.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadServerTlsModes, saveServerTlsModes, serverTlsFile } from '../../src/agent/storage.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sna-tls-modes-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('server TLS modes in data_dir', () => {
  it('none when the file does not exist', async () => {
    expect(await loadServerTlsModes(join(dir, 'data'))).toEqual({ modes: {} });
  });

  it('round-trips non-default modes by address, drops default ones, writes 0600 atomically (no temporary file left)', async () => {
    const dataDir = join(dir, 'data');
    await saveServerTlsModes(dataDir, { '10.0.0.1:8081': 'tls12-no-tickets', 'spire.example:8081': 'default' });
    expect(await loadServerTlsModes(dataDir)).toEqual({ modes: { '10.0.0.1:8081': 'tls12-no-tickets' } });
    expect(JSON.parse(await readFile(serverTlsFile(dataDir), 'utf8'))).toEqual({ version: 1, servers: { '10.0.0.1:8081': { mode: 'tls12-no-tickets' } } });
    expect((await stat(serverTlsFile(dataDir))).mode & 0o777).toBe(0o600);
    expect(await readdir(dataDir)).toEqual(['server-tls.json']);
  });

  it.each([
    ['not JSON', '{', /^storage: ignoring .*server-tls\.json: /],
    ['another version', '{"version":2,"servers":{}}', /not a server TLS file of version 1$/],
  ])('ignores a file that is %s, saying why (the mode is found again by probing)', async (_name, text, problem) => {
    await writeFile(serverTlsFile(dir), text);
    const loaded = await loadServerTlsModes(dir);
    expect(loaded.modes).toEqual({});
    expect(loaded.problem).toMatch(problem);
  });

  it('keeps only modes it knows', async () => {
    await writeFile(serverTlsFile(dir), JSON.stringify({ version: 1, servers: { a: { mode: 'tls12-no-tickets' }, b: { mode: 'tls9' }, c: null } }));
    expect(await loadServerTlsModes(dir)).toEqual({ modes: { a: 'tls12-no-tickets' } });
  });
});
