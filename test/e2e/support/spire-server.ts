/**
 * SPIRE's own spire-server (v1.13.3, bench/support/spire-build.ts) as a process on the e2e
 * host, with its k8s_psat NodeAttestor pointed at the e2e cluster: the agent under test attests
 * through SPIRE's plugin, which does the TokenReview and reads the agent's pod and node.
 * spire-server needs cgo (sqlite3), so it runs on the host, not from an image. Its output goes to
 * $E2E_LOGS/spire-server.log; its PID is recorded in the run's state file so that the runner's
 * teardown stops it if the test could not.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { recordProcess } from './cluster.ts';
import { waitFor, type Result } from './kube.ts';

export interface SpireK8sPsat {
  cluster: string;
  /** `namespace:serviceaccount` pairs the plugin accepts. */
  serviceAccountAllowList: string[];
  allowedNodeLabelKeys: string[];
  allowedPodLabelKeys: string[];
}

export interface SpireServerOptions {
  bin: string;
  /** Work dir (config, data, admin socket): emptied first. */
  dir: string;
  logFile: string;
  /** The e2e run's root (its state.json records the PID). */
  runRoot: string;
  kubeconfig: string;
  port: number;
  trustDomain: string;
  /** The server's agent_ttl: the agent SVID's lifetime. */
  agentTtl: string;
  k8sPsat: SpireK8sPsat;
}

export interface SpireServer {
  readonly socketPath: string;
  /** `spire-server <args…> -socketPath …`; never throws for a non-zero exit. */
  cli(args: string[]): Promise<Result>;
  /** Like cli, but throws with the output on a non-zero exit; returns stdout. */
  cliOk(args: string[]): Promise<string>;
  stop(): Promise<void>;
}

const hclList = (xs: string[]): string => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

/** The server.conf (HCL) for these options. */
export function spireServerConfig(o: SpireServerOptions, socketPath: string): string {
  const data = join(o.dir, 'data');
  return `server {
  bind_address = "127.0.0.1"
  bind_port = "${o.port}"
  socket_path = "${socketPath}"
  trust_domain = "${o.trustDomain}"
  data_dir = "${data}"
  log_level = "DEBUG"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
  agent_ttl = "${o.agentTtl}"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${join(data, 'datastore.sqlite3')}"
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  NodeAttestor "k8s_psat" {
    plugin_data {
      clusters = {
        "${o.k8sPsat.cluster}" = {
          service_account_allow_list = ${hclList(o.k8sPsat.serviceAccountAllowList)}
          kube_config_file = "${o.kubeconfig}"
          allowed_node_label_keys = ${hclList(o.k8sPsat.allowedNodeLabelKeys)}
          allowed_pod_label_keys = ${hclList(o.k8sPsat.allowedPodLabelKeys)}
        }
      }
    }
  }
}
`;
}

function run(bin: string, args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(bin, args, { timeout: 30_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts spire-server; resolves once `spire-server healthcheck` passes. */
export async function startSpireServer(o: SpireServerOptions): Promise<SpireServer> {
  rmSync(o.dir, { recursive: true, force: true });
  mkdirSync(join(o.dir, 'data'), { recursive: true, mode: 0o700 });
  const socketPath = join(o.dir, 'api.sock');
  const config = join(o.dir, 'server.conf');
  writeFileSync(config, spireServerConfig(o, socketPath), { mode: 0o600 });
  const fd = openSync(o.logFile, 'a');
  const child: ChildProcess = spawn(o.bin, ['run', '-config', config], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`spire-server: could not start ${o.bin}`);
  recordProcess(o.runRoot, 'spire-server', child.pid);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const cli = (args: string[]): Promise<Result> => run(o.bin, [...args, '-socketPath', socketPath]);
  const server: SpireServer = {
    socketPath,
    cli,
    async cliOk(args) {
      const r = await cli(args);
      if (r.code !== 0) throw new Error(`spire-server ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
      return r.stdout;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      recordProcess(o.runRoot, 'spire-server', undefined);
    },
  };
  await waitFor(`spire-server healthy (log: ${o.logFile})`, 60_000, async () => {
    if (child.exitCode !== null) throw new Error(`spire-server exited ${child.exitCode}; see ${o.logFile}`);
    return (await cli(['healthcheck'])).code === 0 ? true : undefined;
  });
  return server;
}
