/**
 * Who owns a socket path, with real processes (issue 9, items 5–7):
 * - a second agent (or server) on a live socket_path exits 1 naming socket_path, and the
 *   first keeps serving; a stale socket left by kill -9 is replaced; on exit a process removes
 *   the socket only if it is still the one it bound;
 * - failures caused by a configured path name the field (`config: agent.socket_path: …`);
 * - the CLIs resolve a relative -socketPath against the current directory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { NODE, SERVER_BIN, freePort, startServerProcess, type ServerHandle } from '../support/server-process.ts';
import { AGENT_BIN, startAgentProcess, type AgentHandle } from '../support/agent-process.ts';
import { eventually } from '../support/eventually.ts';
import { probeSocket } from '../../src/common/unix-socket-file.ts';

const TD = 'example.org';
const UID = process.getuid?.() ?? 0;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node <args>` to completion (at most `timeoutMs`), from `cwd`. */
function runNode(args: string[], cwd?: string, timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve) => {
    const proc = spawn(NODE, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The agent CLI's `api fetch x509` against `socketPath`, from `cwd`. */
function fetchX509(socketPath: string, cwd?: string): Promise<Run> {
  return runNode([AGENT_BIN, 'api', 'fetch', 'x509', '-socketPath', socketPath, '-timeout', '10s'], cwd);
}

/** An agent config with the given paths (insecure bootstrap: these agents fail before any server call). */
function agentConfig(paths: { socketPath: string; dataDir: string }): string {
  return `agent {
  trust_domain = "${TD}"
  server_address = "127.0.0.1"
  server_port = 1
  socket_path = "${paths.socketPath}"
  data_dir = "${paths.dataDir}"
  insecure_bootstrap = true
  join_token = "unused"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`;
}

function serverConfig(paths: { socketPath: string; dataDir: string; port: number; plugins?: string }): string {
  return `server {
  trust_domain = "${TD}"
  bind_address = "127.0.0.1"
  bind_port = ${paths.port}
  socket_path = "${paths.socketPath}"
  data_dir = "${paths.dataDir}"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
${paths.plugins ?? ''}
}
`;
}

let server: ServerHandle;
let agent: AgentHandle;
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'sock-own-'));
  server = await startServerProcess({ trustDomain: TD });
  const token = /Token: (\S+)/.exec((await server.cli('token', 'generate')).stdout)?.[1] as string;
  agent = await startAgentProcess({ server, joinToken: token });
  const agentId = (await agent.waitForLog(/"spiffe_id":"(spiffe:\/\/[^"]+)","attestor":"join_token"/))[1] as string;
  const created = await server.cli('entry', 'create', '-parentID', agentId, '-spiffeID', `spiffe://${TD}/me`, '-selector', `unix:uid:${UID}`);
  expect(created.stderr).toBe('');
  await eventually(async () => {
    const run = await fetchX509(agent.socketPath);
    if (run.code !== 0) throw new Error(`no SVID yet: ${run.stderr}`);
  });
}, 60_000);

afterAll(async () => {
  await agent?.cleanup();
  await server?.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

describe('a second agent on a live socket_path', () => {
  it.each([
    { name: 'with the same config', ownDataDir: false },
    { name: 'with its own data_dir', ownDataDir: true },
  ])('$name exits 1 naming socket_path, and the first agent keeps serving', async ({ ownDataDir }) => {
    const before = await lstat(agent.socketPath);
    const stateFile = join(agent.dataDir, 'agent-data.json');
    const stateBefore = await readFile(stateFile);
    let configPath = agent.configPath;
    if (ownDataDir) {
      configPath = join(scratch, 'second-agent.conf');
      const config = (await readFile(agent.configPath, 'utf8')).replace(/data_dir = ".*"/, `data_dir = "${join(scratch, 'second-data')}"`);
      await writeFile(configPath, config);
    }

    const second = await runNode([AGENT_BIN, 'run', '-config', configPath]);

    expect(second.code).toBe(1);
    expect(second.stderr).toContain(
      `Error: config: agent.socket_path: "${agent.socketPath}" is in use: another agent is serving on it; stop that agent first, or give this one its own socket_path`,
    );
    // The live socket is the first agent's, untouched, and serves a real Workload API call.
    const after = await lstat(agent.socketPath);
    expect({ dev: after.dev, ino: after.ino }).toEqual({ dev: before.dev, ino: before.ino });
    const fetched = await fetchX509(agent.socketPath);
    expect(fetched.stderr).toBe('');
    expect(fetched.stdout).toContain(`spiffe://${TD}/me`);
    // Refused before touching any file: the shared data_dir is as it was.
    expect((await readFile(stateFile)).equals(stateBefore)).toBe(true);
  }, 30_000);
});

describe('stale and replaced sockets', () => {
  it('replaces a stale socket left by kill -9 and serves again', async () => {
    await agent.kill();
    expect((await lstat(agent.socketPath)).isSocket()).toBe(true);
    expect(await probeSocket(agent.socketPath)).toEqual({ state: 'stale' });
    await agent.start();
    await eventually(async () => {
      const run = await fetchX509(agent.socketPath);
      if (run.code !== 0) throw new Error(run.stderr);
    });
  }, 40_000);

  it('an agent that stops does not remove a socket another agent bound at its path meanwhile', async () => {
    // The first agent's socket file is deleted under it; a second agent binds the path.
    const dir = join(scratch, 'takeover');
    await mkdir(dir, { recursive: true });
    const configPath = join(dir, 'agent.conf');
    await writeFile(configPath, agentConfig({ socketPath: agent.socketPath, dataDir: join(dir, 'data') }));
    await unlink(agent.socketPath);
    const second = spawn(NODE, [AGENT_BIN, 'run', '-config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let secondOutput = '';
    second.stdout.on('data', (d: Buffer) => (secondOutput += d.toString()));
    second.stderr.on('data', (d: Buffer) => (secondOutput += d.toString()));
    try {
      await eventually(async () => {
        if (!secondOutput.includes('"msg":"workload API listening"')) throw new Error(`second agent not listening yet:\n${secondOutput}`);
      });
      const secondSocket = await lstat(agent.socketPath);

      expect(await agent.stop()).toBe(0);

      const after = await lstat(agent.socketPath);
      expect({ dev: after.dev, ino: after.ino }).toEqual({ dev: secondSocket.dev, ino: secondSocket.ino });
      expect(await probeSocket(agent.socketPath)).toEqual({ state: 'live' });
    } finally {
      const exited = new Promise((r) => second.once('exit', r));
      second.kill('SIGTERM');
      await exited;
    }
    // The second agent removed its own socket on SIGTERM.
    await expect(lstat(agent.socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
    await agent.start();
  }, 60_000);
});

describe('agent path settings that cannot work', () => {
  let dir: string;
  let file: string;
  beforeAll(async () => {
    dir = join(scratch, 'bad-paths');
    await mkdir(dir, { recursive: true });
    file = join(dir, 'regular-file');
    await writeFile(file, 'not a directory');
  });

  const rows = [
    {
      name: 'socket_path under a regular file',
      paths: (d: string, f: string) => ({ socketPath: join(f, 'api.sock'), dataDir: join(d, 'data1') }),
      message: (d: string, f: string) =>
        `Error: config: agent.socket_path: "${f}" is a file, not a directory, so "${join(f, 'api.sock')}" cannot be created below it; move that file away or choose a path outside it`,
    },
    {
      name: 'socket_path deeper under a regular file',
      paths: (d: string, f: string) => ({ socketPath: join(f, 'sub', 'api.sock'), dataDir: join(d, 'data2') }),
      message: (d: string, f: string) =>
        `Error: config: agent.socket_path: "${f}" is a file, not a directory, so "${join(f, 'sub', 'api.sock')}" cannot be created below it; move that file away or choose a path outside it`,
    },
    {
      name: 'socket_path naming a regular file',
      paths: (d: string, f: string) => ({ socketPath: f, dataDir: join(d, 'data3') }),
      message: (_d: string, f: string) => `Error: config: agent.socket_path: "${f}" exists and is not a socket; move it away or choose another socket_path`,
    },
    {
      name: 'data_dir under a regular file',
      paths: (d: string, f: string) => ({ socketPath: join(d, 's4', 'api.sock'), dataDir: join(f, 'data') }),
      message: (_d: string, f: string) =>
        `Error: config: agent.data_dir: "${f}" is a file, not a directory, so "${join(f, 'data')}" cannot be created below it; move that file away or choose a path outside it`,
    },
    {
      name: 'data_dir naming a regular file',
      paths: (d: string, f: string) => ({ socketPath: join(d, 's5', 'api.sock'), dataDir: f }),
      message: (_d: string, f: string) => `Error: config: agent.data_dir: "${f}" exists and is not a directory; remove it or choose another directory`,
    },
  ];
  it.each(rows)('$name: exit 1 and the message on stderr', async ({ paths, message }) => {
    const p = paths(dir, file);
    const configPath = join(dir, 'agent.conf');
    await writeFile(configPath, agentConfig(p));
    const run = await runNode([AGENT_BIN, 'run', '-config', configPath]);
    expect({ code: run.code, stderr: run.stderr.trim() }).toEqual({ code: 1, stderr: message(dir, file) });
    expect(await readFile(file, 'utf8')).toBe('not a directory');
  });
});

describe('the server admin socket and server paths', () => {
  it('a second server on a live socket_path exits 1 naming socket_path; the first keeps answering the CLI', async () => {
    const dir = join(scratch, 'second-server');
    await mkdir(dir, { recursive: true });
    const configPath = join(dir, 'server.conf');
    await writeFile(configPath, serverConfig({ socketPath: server.socketPath, dataDir: join(dir, 'data'), port: await freePort() }));
    const before = await lstat(server.socketPath);

    const second = await runNode([SERVER_BIN, 'run', '-config', configPath]);

    expect(second.code).toBe(1);
    expect(second.stderr.trim()).toBe(
      `Error: config: server.socket_path: "${server.socketPath}" is in use: another server is serving on it; stop that server first, or give this one its own socket_path`,
    );
    // Refused before opening anything: no data_dir, no datastore.
    await expect(stat(join(dir, 'data'))).rejects.toMatchObject({ code: 'ENOENT' });
    const after = await lstat(server.socketPath);
    expect(after.ino).toBe(before.ino);
    const health = await server.cli('healthcheck');
    expect(health.stdout.trim()).toBe('Server is healthy.');
  }, 30_000);

  it('the admin socket has mode 0600', async () => {
    expect((await lstat(server.socketPath)).mode & 0o777).toBe(0o600);
  });

  const rows = [
    {
      name: 'socket_path under a regular file',
      config: (d: string, f: string) => ({ socketPath: join(f, 'api.sock'), dataDir: join(d, 'data1') }),
      message: (_d: string, f: string) =>
        `Error: config: server.socket_path: "${f}" is a file, not a directory, so "${join(f, 'api.sock')}" cannot be created below it; move that file away or choose a path outside it`,
    },
    {
      name: 'data_dir under a regular file',
      config: (d: string, f: string) => ({ socketPath: join(d, 's2', 'api.sock'), dataDir: join(f, 'data') }),
      message: (_d: string, f: string) =>
        `Error: config: server.data_dir: "${f}" is a file, not a directory, so "${join(f, 'data')}" cannot be created below it; move that file away or choose a path outside it`,
    },
    {
      name: 'data_dir naming a regular file',
      config: (d: string, f: string) => ({ socketPath: join(d, 's3', 'api.sock'), dataDir: f }),
      message: (_d: string, f: string) => `Error: config: server.data_dir: "${f}" exists and is not a directory; remove it or choose another directory`,
    },
    {
      name: 'connection_string under a regular file',
      config: (d: string, f: string) => ({
        socketPath: join(d, 's4', 'api.sock'),
        dataDir: join(d, 'data4'),
        plugins: `  DataStore "sql" {\n    plugin_data {\n      connection_string = "${join(f, 'db.sqlite3')}"\n    }\n  }`,
      }),
      message: (_d: string, f: string) =>
        `Error: config: plugins.DataStore.sql.plugin_data.connection_string: "${f}" is a file, not a directory, so "${join(f, 'db.sqlite3')}" cannot be created below it; move that file away or choose a path outside it`,
    },
    {
      name: 'upstream cert_file_path missing',
      config: (d: string) => ({
        socketPath: join(d, 's5', 'api.sock'),
        dataDir: join(d, 'data5'),
        plugins: `  UpstreamAuthority "disk" {\n    plugin_data {\n      cert_file_path = "${join(d, 'nope.crt')}"\n      key_file_path = "${join(d, 'nope.key')}"\n    }\n  }`,
      }),
      message: (d: string) => `Error: config: plugins.UpstreamAuthority.disk.plugin_data.cert_file_path: "${join(d, 'nope.crt')}" does not exist`,
    },
  ];
  it.each(rows)('$name: exit 1 and the message on stderr', async ({ config, message }) => {
    const dir = join(scratch, 'server-bad-paths');
    await mkdir(dir, { recursive: true });
    const file = join(dir, 'regular-file');
    await writeFile(file, 'not a directory');
    const configPath = join(dir, 'server.conf');
    await writeFile(configPath, serverConfig({ ...config(dir, file), port: await freePort() }));
    const run = await runNode([SERVER_BIN, 'run', '-config', configPath]);
    expect({ code: run.code, stderr: run.stderr.trim() }).toEqual({ code: 1, stderr: message(dir, file) });
  });
});

describe('a relative -socketPath resolves against the current directory', () => {
  it('server CLI', async () => {
    // Two segments or more: with `unix://` + a relative path, grpc-js read the first as an authority.
    const cwd = dirname(dirname(server.socketPath));
    const rel = relative(cwd, server.socketPath);
    expect(rel.split('/').length).toBe(2);
    const run = await runNode([SERVER_BIN, 'healthcheck', '-socketPath', rel], cwd);
    expect({ code: run.code, stdout: run.stdout.trim(), stderr: run.stderr }).toEqual({ code: 0, stdout: 'Server is healthy.', stderr: '' });
    const entries = await runNode([SERVER_BIN, 'entry', 'show', '-socketPath', `./${rel}`], cwd);
    expect(entries.stdout).toContain(`spiffe://${TD}/me`);
  });

  it('agent CLI: api fetch x509 and healthcheck', async () => {
    const cwd = dirname(agent.dir);
    const rel = join(basename(agent.dir), relative(agent.dir, agent.socketPath));
    expect(rel.split('/').length).toBe(3);
    const run = await fetchX509(rel, cwd);
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain(`spiffe://${TD}/me`);
    const health = await runNode([AGENT_BIN, 'healthcheck', '-socketPath', rel], cwd);
    expect({ code: health.code, stdout: health.stdout.trim() }).toEqual({ code: 0, stdout: 'Agent is healthy.' });
  });
});
