/**
 * A real single-node Kubernetes for the e2e suite: etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, containerd (Debian) and the kubelet, all on
 * loopback, as root, with the cgroupfs driver (cgroup v1 or v2).
 *
 * Every process is started detached and recorded by PID in `<root>/state.json`; `down()`
 * stops them by PID and puts the host back (the /etc/hosts line, the sysctls the kubelet
 * changes, iptables chains it added, mounts under the kubelet and containerd directories,
 * kubepods cgroups, the host directories the pods created, the state directories). `down()`
 * is idempotent and also works from a state file left by a run that was killed.
 *
 * Host quirks handled here (see shared/reference/real-kubernetes/README.md):
 *  - root without CAP_SYS_RESOURCE: runc fails every sandbox ("nsexec: failed to update
 *    /proc/self/oom_score_adj: Permission denied") unless containerd restricts oom_score_adj;
 *  - the apiserver dials the kubelet by node name (exec, logs): "127.0.0.1 <node>" in /etc/hosts;
 *  - no pod network: a loopback-only CNI config, only hostNetwork pods run. The kubelet
 *    refuses a loopback node IP ("failed to validate nodeIP: nodeIP can't be loopback
 *    address"), so the node's InternalIP (and a hostNetwork pod's IP) is the host's address:
 *    the overlays point probes at 127.0.0.1 and the apiserver reaches the kubelet by name.
 *  - the kubelet's root directory is the standard /var/lib/kubelet: a CSI driver's DaemonSet
 *    (manifests/csi) mounts /var/lib/kubelet/{pods,plugins,plugins_registry} from the host, and
 *    the target paths the kubelet hands to it must be the same inside and outside. The kubelet
 *    bind-mounts its root directory onto itself as an rshared mount at start (the host's / is
 *    private here), which the driver's Bidirectional mount propagation needs; `down` unmounts
 *    it and everything under it, and removes the directory if `up` created it.
 */
import { spawn, execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, closeSync, rmdirSync, readlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const NODE_NAME = 'node1';
const HOSTS_TAG = '# spiffe-node-agent-e2e';
/** Host sysctls the kubelet sets; their values before `up` are restored by `down`. */
const SYSCTLS = ['vm.overcommit_memory', 'vm.panic_on_oom', 'kernel.panic', 'kernel.panic_on_oops', 'kernel.keys.root_maxkeys', 'kernel.keys.root_maxbytes'];
/** Loopback ports the cluster and the deployed pods (hostNetwork) listen on. */
export const PORTS = [2379, 2380, 2381, 6443, 10248, 10250, 10257, 10259, 8081, 9982, 9988, 9809, 8091, 9983, 9989];
/** The kubelet's root directory (--root-dir). */
export const KUBELET_ROOT = '/var/lib/kubelet';
/** Host paths the deployed manifests create (hostPath volumes): removed by `down` if `up` did not find them. */
export const HOST_PATHS = ['/run/spire/agent-sockets', '/run/spire/agent-sockets-psat', '/run/spire', '/var/lib/spiffe-node-agent-e2e', KUBELET_ROOT];

export interface ClusterPaths {
  /** Work dir: pki/, conf/, logs/, run/ (etcd data, kubelet root, containerd root), state.json. */
  readonly root: string;
  /** containerd state (sockets): short, under /run. */
  readonly state: string;
  readonly bin: string;
}

interface State {
  pids: Record<string, number>;
  sysctls?: Record<string, string>;
  iptablesChains?: string[];
  createdHostPaths?: string[];
  /** kubepods cgroup directories that existed before `up` (left alone by `down`). */
  cgroupsBefore?: string[];
  hostsLine?: boolean;
}

export type Log = (line: string) => void;

export class Cluster {
  readonly pki: string;
  readonly conf: string;
  readonly logs: string;
  readonly run: string;
  readonly sock: string;
  readonly kubeconfig: string;
  readonly paths: ClusterPaths;
  private readonly stateFile: string;
  private readonly log: Log;

  constructor(paths: ClusterPaths, log: Log) {
    this.paths = paths;
    this.log = log;
    this.pki = join(paths.root, 'pki');
    this.conf = join(paths.root, 'conf');
    this.logs = join(paths.root, 'logs');
    this.run = join(paths.root, 'run');
    this.sock = join(paths.state, 'containerd.sock');
    this.kubeconfig = join(this.pki, 'admin.kubeconfig');
    this.stateFile = join(paths.root, 'state.json');
  }

  /** Whether a previous run left state behind (then call down() first). */
  hasLeftovers(): boolean {
    return existsSync(this.stateFile);
  }

  private readState(): State {
    try {
      return JSON.parse(readFileSync(this.stateFile, 'utf8')) as State;
    } catch {
      return { pids: {} };
    }
  }

  private writeState(s: State): void {
    mkdirSync(this.paths.root, { recursive: true });
    writeFileSync(this.stateFile, JSON.stringify(s, null, 2));
  }

  private update(f: (s: State) => void): void {
    const s = this.readState();
    f(s);
    this.writeState(s);
  }

  async kubectl(args: string[], input?: string): Promise<string> {
    return exec(join(this.paths.bin, 'kubectl'), [`--kubeconfig=${this.kubeconfig}`, ...args], input);
  }

  async ctr(args: string[]): Promise<string> {
    return exec('ctr', ['-a', this.sock, '-n', 'k8s.io', ...args]);
  }

  /** Starts everything and waits for the node to be Ready. */
  async up(images: string[]): Promise<void> {
    const busy = await busyPorts(PORTS);
    if (busy.length > 0) throw new Error(`cluster: ports already in use on this machine: ${busy.join(', ')} (another cluster or agent running?)`);
    for (const d of [this.logs, this.run, this.paths.state]) mkdirSync(d, { recursive: true });
    this.writeState({ pids: {} });
    await this.makePki();
    this.writeConfigs();

    const sysctls: Record<string, string> = {};
    for (const k of SYSCTLS) sysctls[k] = (await exec('sysctl', ['-n', k])).trim();
    const iptablesChains = await iptablesChainList();
    const createdHostPaths = HOST_PATHS.filter((p) => !existsSync(p));
    const cgroupsBefore = kubepodsCgroups();
    this.update((s) => Object.assign(s, { sysctls, iptablesChains, createdHostPaths, cgroupsBefore }));

    // The apiserver reaches the kubelet (exec, logs) by node name.
    const hosts = readFileSync('/etc/hosts', 'utf8');
    if (!hosts.split('\n').some((l) => l.endsWith(HOSTS_TAG))) {
      writeFileSync('/etc/hosts', `${hosts.endsWith('\n') || hosts === '' ? hosts : `${hosts}\n`}127.0.0.1 ${NODE_NAME} ${HOSTS_TAG}\n`);
    }
    this.update((s) => (s.hostsLine = true));

    const b = (n: string): string => join(this.paths.bin, n);
    this.start('etcd', b('etcd'), [
      '--name=node', `--data-dir=${join(this.run, 'etcd-data')}`,
      '--listen-client-urls=http://127.0.0.1:2379', '--advertise-client-urls=http://127.0.0.1:2379',
      '--listen-peer-urls=http://127.0.0.1:2380', '--initial-advertise-peer-urls=http://127.0.0.1:2380',
      '--initial-cluster=node=http://127.0.0.1:2380', '--listen-metrics-urls=http://127.0.0.1:2381',
    ]);
    await this.waitFor('etcd healthy', 60, async () => (await fetch('http://127.0.0.1:2379/health')).ok);

    const p = (f: string): string => join(this.pki, f);
    this.start('kube-apiserver', b('kube-apiserver'), [
      '--etcd-servers=http://127.0.0.1:2379', '--bind-address=127.0.0.1', '--secure-port=6443',
      '--advertise-address=127.0.0.1', '--endpoint-reconciler-type=none',
      `--tls-cert-file=${p('apiserver.crt')}`, `--tls-private-key-file=${p('apiserver.key')}`,
      `--client-ca-file=${p('ca.crt')}`,
      `--service-account-key-file=${p('sa.pub')}`, `--service-account-signing-key-file=${p('sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      '--authorization-mode=Node,RBAC', '--enable-admission-plugins=NodeRestriction',
      '--allow-privileged=true', '--service-cluster-ip-range=10.0.0.0/24',
      `--kubelet-client-certificate=${p('apiserver-kubelet-client.crt')}`, `--kubelet-client-key=${p('apiserver-kubelet-client.key')}`,
      `--kubelet-certificate-authority=${p('ca.crt')}`,
      // By name only (node1 is 127.0.0.1 in /etc/hosts): never the node's InternalIP.
      '--kubelet-preferred-address-types=Hostname',
      `--requestheader-client-ca-file=${p('front-proxy-ca.crt')}`, '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User', '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      `--proxy-client-cert-file=${p('front-proxy-client.crt')}`, `--proxy-client-key-file=${p('front-proxy-client.key')}`,
      '--profiling=false',
    ]);
    await this.waitFor('kube-apiserver ready', 120, async () => (await this.kubectl(['get', '--raw=/readyz'])).trim() === 'ok');

    this.start('containerd', 'containerd', ['--config', join(this.conf, 'containerd.toml')]);
    await this.waitFor('containerd up', 60, async () => (await this.ctr(['version']), true));
    for (const image of images) await this.ctr(['images', 'import', image]);
    this.log(`cluster: images imported: ${(await this.ctr(['images', 'ls', '-q'])).split('\n').filter((l) => l && !l.startsWith('sha256:')).join(' ')}`);

    const kc = (n: string): string => join(this.pki, `${n}.kubeconfig`);
    this.start('kube-controller-manager', b('kube-controller-manager'), [
      `--kubeconfig=${kc('controller-manager')}`, `--authentication-kubeconfig=${kc('controller-manager')}`,
      `--authorization-kubeconfig=${kc('controller-manager')}`, '--bind-address=127.0.0.1', '--secure-port=10257',
      `--root-ca-file=${p('ca.crt')}`, `--service-account-private-key-file=${p('sa.key')}`,
      '--use-service-account-credentials=true',
      `--cluster-signing-cert-file=${p('ca.crt')}`, `--cluster-signing-key-file=${p('ca.key')}`, '--leader-elect=false',
    ]);
    this.start('kube-scheduler', b('kube-scheduler'), [
      `--kubeconfig=${kc('scheduler')}`, `--authentication-kubeconfig=${kc('scheduler')}`,
      `--authorization-kubeconfig=${kc('scheduler')}`, '--bind-address=127.0.0.1', '--secure-port=10259', '--leader-elect=false',
    ]);
    mkdirSync(KUBELET_ROOT, { recursive: true });
    this.start('kubelet', b('kubelet'), [
      `--config=${join(this.conf, 'kubelet.yaml')}`, `--kubeconfig=${kc('kubelet')}`,
      `--hostname-override=${NODE_NAME}`, `--root-dir=${KUBELET_ROOT}`, '--v=1',
    ]);
    await this.waitFor(`node ${NODE_NAME} Ready`, 180, async () =>
      (await this.kubectl(['get', 'node', NODE_NAME, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])).trim() === 'True');
    await this.waitFor('kube-root-ca.crt published', 60, async () => (await this.kubectl(['-n', 'default', 'get', 'configmap', 'kube-root-ca.crt']), true));
    await this.waitFor('default service account', 60, async () => (await this.kubectl(['-n', 'default', 'get', 'serviceaccount', 'default']), true));
  }

  /** Stops every recorded process and restores the host. Safe to call more than once. */
  async down(): Promise<void> {
    const s = this.readState();
    const stop = async (name: string): Promise<void> => {
      const pid = s.pids[name];
      if (pid === undefined) return;
      await stopPid(pid, name, this.log);
      delete s.pids[name];
      this.writeState(s);
    };
    // The kubelet first (nothing restarts pods), then the containers directly: no graceful pod
    // deletion, containerd leaves its tasks running when it stops.
    await stop('kube-scheduler');
    await stop('kube-controller-manager');
    await stop('kubelet');
    if (s.pids['containerd'] !== undefined && existsSync(this.sock)) {
      const tasks = async (): Promise<string[]> => (await this.ctr(['tasks', 'ls', '-q']).catch(() => '')).split('\n').filter(Boolean);
      for (const t of await tasks()) await this.ctr(['tasks', 'kill', '-s', 'SIGKILL', t]).catch(() => '');
      await sleep(1000);
      for (const t of await tasks()) await this.ctr(['tasks', 'delete', '-f', t]).catch(() => '');
      for (const c of (await this.ctr(['containers', 'ls', '-q']).catch(() => '')).split('\n').filter(Boolean)) await this.ctr(['containers', 'delete', c]).catch(() => '');
    }
    await stop('containerd');
    await stop('kube-apiserver');
    await stop('etcd');
    for (const [name, pid] of Object.entries(s.pids)) await stopPid(pid, name, this.log);

    // Mounts the kubelet and containerd made (volumes, CSI bind mounts, the kubelet's rshared
    // bind of its root directory, overlay snapshots, sandbox /dev/shm), deepest first.
    const ours = [this.run, this.paths.state, '/run/containerd', KUBELET_ROOT];
    for (const m of mountsUnder(ours).reverse()) await exec('umount', ['-l', m]).catch((err: Error) => this.log(`down: umount ${m}: ${err.message}`));
    // A bind mount of /var/lib/kubelet onto itself can be stacked (one per kubelet start).
    for (let i = 0; i < 8 && mountsUnder([KUBELET_ROOT]).length > 0; i++) {
      for (const m of mountsUnder([KUBELET_ROOT]).reverse()) await exec('umount', ['-l', m]).catch(() => '');
    }
    if (s.cgroupsBefore !== undefined) await removeCgroups(new Set(s.cgroupsBefore), this.log);
    if (s.sysctls !== undefined) {
      for (const [k, v] of Object.entries(s.sysctls)) {
        if ((await exec('sysctl', ['-n', k]).catch(() => v)).trim() !== v) await exec('sysctl', ['-q', '-w', `${k}=${v}`]).catch((err: Error) => this.log(`down: sysctl ${k}: ${err.message}`));
      }
    }
    if (s.hostsLine) {
      const hosts = readFileSync('/etc/hosts', 'utf8');
      const kept = hosts.split('\n').filter((l) => !l.endsWith(HOSTS_TAG));
      if (kept.length !== hosts.split('\n').length) writeFileSync('/etc/hosts', kept.join('\n'));
    }
    if (s.iptablesChains !== undefined) await removeNewIptablesChains(s.iptablesChains, this.log);
    // The kubelet links container logs from /var/log/containers whatever podLogsDir says.
    if (existsSync('/var/log/containers')) {
      for (const f of readdirSync('/var/log/containers')) {
        const link = join('/var/log/containers', f);
        try {
          if (readlinkSync(link).startsWith(`${this.run}/`)) unlinkSync(link);
        } catch {
          /* not a link */
        }
      }
      for (const d of ['/var/log/containers', '/var/log/pods']) {
        try {
          rmdirSync(d);
        } catch {
          /* not empty or absent: not ours */
        }
      }
    }
    // Never recurse into a directory that still has something mounted below it (a CSI bind
    // mount of the agent's socket directory, a hostPath): that would delete the host's files.
    const removable = (p: string): boolean => {
      const left = mountsUnder([p]);
      if (left.length > 0) this.log(`down: ${p} kept: still mounted below it: ${left.join(', ')}`);
      return left.length === 0;
    };
    for (const p of s.createdHostPaths ?? []) if (removable(p)) rmSync(p, { recursive: true, force: true });
    if (!(s.createdHostPaths ?? []).includes(KUBELET_ROOT) && existsSync(KUBELET_ROOT) && removable(KUBELET_ROOT)) {
      // It was there before: remove only what this run's kubelet put in it.
      for (const d of ['pods', 'plugins', 'plugins_registry', 'pod-resources', 'device-plugins', 'checkpoints', 'cpu_manager_state', 'memory_manager_state', 'dra_manager_state']) {
        rmSync(join(KUBELET_ROOT, d), { recursive: true, force: true });
      }
    }
    if (removable(this.run)) rmSync(this.run, { recursive: true, force: true });
    rmSync(this.paths.state, { recursive: true, force: true });
    // containerd 1.6 keeps runc state and shim sockets under /run/containerd whatever `state` says.
    for (const d of ['/run/containerd/runc/k8s.io', '/run/containerd/runc', '/run/containerd/fifo', '/run/containerd/s', '/run/containerd']) {
      try {
        rmdirSync(d);
      } catch {
        /* not empty (someone else's containerd) or absent */
      }
    }
    rmSync(this.stateFile, { force: true });
  }

  /** Starts a daemon detached (its own process group: a Ctrl-C reaches only the runner), output to logs/NAME.log. */
  private start(name: string, cmd: string, args: string[]): void {
    const fd = openSync(join(this.logs, `${name}.log`), 'a');
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child.unref();
    if (child.pid === undefined) throw new Error(`cluster: could not start ${name}`);
    this.update((s) => (s.pids[name] = child.pid as number));
    this.log(`cluster: started ${name} (pid ${child.pid})`);
  }

  private async waitFor(what: string, seconds: number, check: () => Promise<boolean>): Promise<void> {
    const t0 = Date.now();
    let last: unknown;
    while (Date.now() - t0 < seconds * 1000) {
      try {
        if (await check()) {
          this.log(`cluster: ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
          return;
        }
      } catch (err) {
        last = err;
      }
      const dead = Object.entries(this.readState().pids).filter(([, pid]) => !alive(pid));
      if (dead.length > 0) throw new Error(`cluster: ${dead.map(([n]) => n).join(', ')} exited while waiting for ${what}; see ${this.logs}/${dead[0]?.[0]}.log:\n${tail(join(this.logs, `${dead[0]?.[0]}.log`))}`);
      await sleep(500);
    }
    throw new Error(`cluster: timed out after ${seconds} s waiting for ${what}: ${String(last)}`);
  }

  /** One CA for the apiserver, clients and the kubelet's serving certificate, plus a front-proxy CA and the service-account key. */
  private async makePki(): Promise<void> {
    mkdirSync(this.pki, { recursive: true });
    const dir = this.pki;
    const ossl = (args: string[]): Promise<string> => exec('openssl', args, undefined, dir);
    if (!existsSync(join(dir, 'ca.crt'))) {
      await ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-subj', '/CN=spiffe-node-agent-e2e-ca']);
      await ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'front-proxy-ca.key', '-out', 'front-proxy-ca.crt', '-days', '30', '-subj', '/CN=spiffe-node-agent-e2e-front-proxy-ca']);
      await ossl(['genrsa', '-out', 'sa.key', '2048']);
      await ossl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
    }
    const sign = async (name: string, cn: string, o: string, san: string, eku: string, ca = 'ca'): Promise<void> => {
      if (existsSync(join(dir, `${name}.crt`))) return;
      await ossl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', o ? `/O=${o}/CN=${cn}` : `/CN=${cn}`]);
      const ext = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', `extendedKeyUsage=${eku}`, ...(san ? [`subjectAltName=${san}`] : [])];
      writeFileSync(join(dir, `${name}.ext`), `${ext.join('\n')}\n`);
      await ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '30', '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
      rmSync(join(dir, `${name}.csr`));
      rmSync(join(dir, `${name}.ext`));
    };
    await sign('apiserver', 'kube-apiserver', '', 'IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local', 'serverAuth');
    await sign('admin', 'admin', 'system:masters', '', 'clientAuth');
    await sign('apiserver-kubelet-client', 'kube-apiserver-kubelet-client', 'system:masters', '', 'clientAuth');
    await sign('kubelet-client', `system:node:${NODE_NAME}`, 'system:nodes', '', 'clientAuth');
    await sign('kubelet-serving', `system:node:${NODE_NAME}`, 'system:nodes', `IP:127.0.0.1,DNS:${NODE_NAME},DNS:localhost`, 'serverAuth');
    await sign('controller-manager', 'system:kube-controller-manager', '', '', 'clientAuth');
    await sign('scheduler', 'system:kube-scheduler', '', '', 'clientAuth');
    await sign('front-proxy-client', 'front-proxy-client', '', '', 'clientAuth', 'front-proxy-ca');
    for (const [file, cert] of [['admin', 'admin'], ['kubelet', 'kubelet-client'], ['controller-manager', 'controller-manager'], ['scheduler', 'scheduler']] as const) {
      writeFileSync(
        join(dir, `${file}.kubeconfig`),
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters:',
          `- name: e2e`,
          `  cluster: {server: "https://127.0.0.1:6443", certificate-authority: "${dir}/ca.crt"}`,
          'users:',
          '- name: u',
          `  user: {client-certificate: "${dir}/${cert}.crt", client-key: "${dir}/${cert}.key"}`,
          'contexts:',
          '- name: c',
          '  context: {cluster: e2e, user: u}',
          'current-context: c',
          '',
        ].join('\n'),
      );
    }
    chmodSync(dir, 0o700);
  }

  private writeConfigs(): void {
    const cni = join(this.paths.root, 'cni');
    mkdirSync(this.conf, { recursive: true });
    mkdirSync(cni, { recursive: true });
    writeFileSync(
      join(this.conf, 'containerd.toml'),
      `version = 2
root = "${join(this.run, 'containerd')}"
state = "${this.paths.state}"
[grpc]
  address = "${this.sock}"
[plugins."io.containerd.internal.v1.opt"]
  path = "${join(this.run, 'containerd-opt')}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # Root here lacks CAP_SYS_RESOURCE: without this runc fails every sandbox with
  # "nsexec: failed to update /proc/self/oom_score_adj: Permission denied".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${cni}"
`,
    );
    // Loopback only: enough for the runtime to report NetworkReady; only hostNetwork pods run.
    writeFileSync(join(cni, '10-lo.conflist'), '{"cniVersion": "1.0.0", "name": "lo-only", "plugins": [{"type": "loopback"}]}\n');
    writeFileSync(
      join(this.conf, 'kubelet.yaml'),
      `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${this.pki}/ca.crt}
# Short SubjectAccessReview caches (default 5 min allowed / 30 s denied): the suite takes a
# permission away and gives it back.
authorization: {mode: Webhook, webhook: {cacheAuthorizedTTL: 1s, cacheUnauthorizedTTL: 1s}}
tlsCertFile: ${this.pki}/kubelet-serving.crt
tlsPrivateKeyFile: ${this.pki}/kubelet-serving.key
containerRuntimeEndpoint: unix://${this.sock}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
podLogsDir: ${join(this.run, 'pod-logs')}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
rotateCertificates: false
serverTLSBootstrap: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`,
    );
  }
}

/**
 * Records (or, with `pid` undefined, forgets) a test fixture's process in the run's state file
 * under `root`, so that `down` stops it by its PID if the test that started it could not.
 */
export function recordProcess(root: string, name: string, pid: number | undefined): void {
  const file = join(root, 'state.json');
  const s = JSON.parse(readFileSync(file, 'utf8')) as State;
  if (pid === undefined) delete s.pids[name];
  else s.pids[name] = pid;
  writeFileSync(file, JSON.stringify(s, null, 2));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function exec(cmd: string, args: string[], input?: string, cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { cwd, maxBuffer: 64 * 1024 * 1024, timeout: 180_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message.split('\n')[0]}\n${stderr}${stdout}`.trim()));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Mount points at or below any of `dirs`, from /proc/mounts, sorted (parents first). */
function mountsUnder(dirs: string[]): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => (l.split(' ')[1] ?? '').replace(/\\040/g, ' '))
    .filter((m) => m !== '' && dirs.some((d) => m === d || m.startsWith(`${d}/`)))
    .sort();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after 15 s; only this PID (the daemons' children, e.g. containerd shims, are handled by their owners). */
async function stopPid(pid: number, name: string, log: Log): Promise<void> {
  if (!alive(pid)) return;
  // A recorded PID from an earlier boot could be reused: only signal a process whose command matches.
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return;
  }
  if (!cmdline.includes(name)) {
    log(`down: pid ${pid} is no longer ${name} (${cmdline.split('\0')[0]}); left alone`);
    return;
  }
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 30 && alive(pid); i++) await sleep(500);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 20 && alive(pid); i++) await sleep(100);
  log(`down: stopped ${name} (pid ${pid})`);
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

async function busyPorts(ports: number[]): Promise<number[]> {
  const listening = new Set<number>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols[3] === '0A') listening.add(parseInt((cols[1] ?? '').split(':')[1] ?? '', 16));
      }
    } catch {
      /* no IPv6 */
    }
  }
  return ports.filter((p) => listening.has(p));
}

async function iptablesChainList(): Promise<string[]> {
  const chains: string[] = [];
  for (const tool of ['iptables', 'ip6tables']) {
    for (const table of ['filter', 'nat', 'mangle']) {
      const out = await exec(tool, ['-t', table, '-S']).catch(() => '');
      for (const l of out.split('\n')) if (l.startsWith('-N ')) chains.push(`${tool}/${table}/${l.slice(3)}`);
    }
  }
  return chains;
}

/** Removes KUBE-* chains (and the jumps to them) that were not there before `up`. */
async function removeNewIptablesChains(before: string[], log: Log): Promise<void> {
  const had = new Set(before);
  for (const c of await iptablesChainList()) {
    if (had.has(c)) continue;
    const [tool, table, chain] = c.split('/') as [string, string, string];
    if (!chain.startsWith('KUBE-')) continue;
    const rules = (await exec(tool, ['-t', table, '-S']).catch(() => '')).split('\n').filter((l) => l.startsWith('-A ') && l.includes(`-j ${chain}`));
    for (const r of rules) await exec(tool, ['-t', table, ...r.replace(/^-A /, '-D ').split(' ')]).catch(() => '');
    await exec(tool, ['-t', table, '-F', chain]).catch(() => '');
    await exec(tool, ['-t', table, '-X', chain]).catch(() => '');
    log(`down: removed iptables chain ${c}`);
  }
}

/** The directories of the kubelet's kubepods cgroup trees (cgroupfs driver), deepest first. */
function kubepodsCgroups(): string[] {
  const roots: string[] = ['/sys/fs/cgroup/kubepods'];
  try {
    for (const c of readdirSync('/sys/fs/cgroup')) roots.push(join('/sys/fs/cgroup', c, 'kubepods'));
  } catch {
    return [];
  }
  const out: string[] = [];
  const walk = (d: string): void => {
    try {
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {
      return;
    }
    out.push(d);
  };
  for (const r of roots) if (existsSync(r)) walk(r);
  return out;
}

/**
 * Removes the (empty) kubepods cgroups this run created, deepest first. A cgroup whose last
 * task was just killed can stay busy for a moment (EBUSY): retried for up to 10 s.
 */
async function removeCgroups(before: Set<string>, log: Log): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const busy: string[] = [];
    for (const d of kubepodsCgroups()) {
      if (before.has(d)) continue;
      try {
        rmdirSync(d);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        busy.push(`${d}: ${(err as Error).message}`);
      }
    }
    if (busy.length === 0) return;
    if (attempt === 20) {
      for (const b of busy) log(`down: rmdir ${b}`);
      return;
    }
    await sleep(500);
  }
}
