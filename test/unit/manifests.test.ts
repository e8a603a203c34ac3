/**
 * The Kubernetes manifests under manifests/: every YAML document parses, validates against
 * the Kubernetes schemas (offline: the OpenAPI-derived validators of `kubernetes-models`, plus
 * a strict unknown-field check against the API models of `@kubernetes/client-node`), and the
 * deployment invariants hold, read from the YAML itself: hostPID, the token audience, the
 * socket path agreed on by DaemonSet, agent config and workloads, the security context,
 * probes on the named port at the configured health paths, resources, tolerations, priority,
 * RBAC verbs. The two config files are parsed with the project's own config parsers.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import * as k8s from '@kubernetes/client-node';
import * as coreV1 from 'kubernetes-models/v1';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as rbacV1 from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import * as storageV1 from 'kubernetes-models/storage.k8s.io/v1';
import { REPO } from '../support/server-process.ts';
import { execForm, finalStage, lastOf, readDockerfile, type Instruction } from '../support/dockerfile.ts';
import { parseConfigText } from '../../src/common/config-file.ts';
import { parseAgentConfig, type AgentConfig } from '../../src/agent/config.ts';
import { parseServerConfig, type ServerConfig } from '../../src/server/config.ts';

const MANIFESTS = join(REPO, 'manifests');

/* ----------------------------------------------------------------------------------------
 * Loading
 * -------------------------------------------------------------------------------------- */

type Obj = Record<string, unknown>;
interface Doc {
  file: string;
  index: number;
  obj: Obj;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) return yamlFiles(full);
      return /\.ya?ml$/.test(name) ? [full] : [];
    });
}

function loadDocs(): Doc[] {
  const docs: Doc[] = [];
  for (const file of yamlFiles(MANIFESTS)) {
    const parsed = parseAllDocuments(readFileSync(file, 'utf8'), { uniqueKeys: true });
    const list = Array.isArray(parsed) ? parsed : [parsed];
    list.forEach((doc, index) => {
      const where = `${relative(REPO, file)}#${index}`;
      if (doc.errors.length > 0) throw new Error(`${where}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const obj: unknown = doc.toJS();
      if (obj === null || obj === undefined) return; // an empty document (e.g. trailing ---)
      if (typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`${where}: not a mapping`);
      docs.push({ file: relative(REPO, file), index, obj: obj as Obj });
    });
  }
  return docs;
}

const DOCS = loadDocs();
const isKustomization = (d: Doc): boolean => d.obj['kind'] === 'Kustomization';
const RESOURCES = DOCS.filter((d) => !isKustomization(d));

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const arr = <T = Obj>(v: unknown): T[] => (Array.isArray(v) ? (v as T[]) : []);
const obj = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const at = (o: unknown, ...path: string[]): unknown => path.reduce<unknown>((cur, key) => obj(cur)[key], o);

function find(kind: string, name: string): Obj {
  const hits = RESOURCES.filter((d) => d.obj['kind'] === kind && at(d.obj, 'metadata', 'name') === name);
  if (hits.length !== 1) throw new Error(`expected exactly one ${kind}/${name} under manifests/, found ${hits.length}`);
  return (hits[0] as Doc).obj;
}

function all(kind: string): Obj[] {
  return RESOURCES.filter((d) => d.obj['kind'] === kind).map((d) => d.obj);
}

/**
 * What `kubectl apply -k <dir>` applies: the documents of the kustomization's resources,
 * directories followed recursively, under kustomize's load rules (a file must be in or below
 * the kustomization's directory; a directory must not contain it, or kustomize reports a
 * cycle). Transformers (`images:`) are not applied.
 */
function rendered(dir: string): Obj[] {
  const root = join(REPO, dir);
  const k = DOCS.find((d) => d.file === relative(REPO, join(root, 'kustomization.yaml')) && isKustomization(d));
  if (k === undefined) throw new Error(`${dir}: no kustomization.yaml`);
  return arr<string>(k.obj['resources']).flatMap((r) => {
    const target = join(root, r);
    if (statSync(target).isDirectory()) {
      if (`${root}/`.startsWith(`${target}/`)) throw new Error(`${dir}: resource ${r} contains the kustomization (kustomize: cycle detected)`);
      return rendered(relative(REPO, target));
    }
    if (!target.startsWith(`${root}/`)) throw new Error(`${dir}: file ${r} is outside the kustomization's directory (kustomize refuses it)`);
    return RESOURCES.filter((d) => d.file === relative(REPO, target)).map((d) => d.obj);
  });
}

/** `Kind namespace/name` of each object, for exact comparisons. */
const ids = (objs: Obj[]): string[] => objs.map((o) => `${str(o['kind'])} ${str(at(o, 'metadata', 'namespace'))}/${str(at(o, 'metadata', 'name'))}`);

/* ----------------------------------------------------------------------------------------
 * Schema validation
 * -------------------------------------------------------------------------------------- */

interface Validatable {
  validate(): void;
}
type ModelCtor = new (data: Obj) => Validatable;

/** `kubernetes-models` groups its classes by apiVersion; these are the groups the manifests use. */
const MODELS: Record<string, Record<string, unknown>> = {
  v1: coreV1,
  'apps/v1': appsV1,
  'rbac.authorization.k8s.io/v1': rbacV1,
  'storage.k8s.io/v1': storageV1,
};

function modelFor(apiVersion: string, kind: string): ModelCtor | undefined {
  return MODELS[apiVersion]?.[kind] as ModelCtor | undefined;
}

interface AttributeType {
  baseName: string;
  type: string;
}
type ClientModel = { attributeTypeMap?: AttributeType[] };

const SCALARS = new Set(['string', 'number', 'boolean', 'Date', 'V1MicroTime', 'any', 'object', 'IntOrString']);

/**
 * The OpenAPI schemas leave objects open (unknown keys validate), while the API server's
 * strict field validation rejects them. This walks a manifest along the typed models of
 * @kubernetes/client-node and reports every key the API does not define (typos).
 */
function unknownFields(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || value === undefined || SCALARS.has(type)) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array !== null) {
    if (!Array.isArray(value)) out.push(`${path}: expected a list`);
    else value.forEach((v, i) => unknownFields(v, array[1] as string, `${path}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map !== null) {
    for (const [k, v] of Object.entries(obj(value))) unknownFields(v, map[1] as string, `${path}.${k}`, out);
    return;
  }
  const model = (k8s as unknown as Record<string, ClientModel | undefined>)[type];
  if (model?.attributeTypeMap === undefined) {
    out.push(`${path}: no API model named ${type}`);
    return;
  }
  if (typeof value !== 'object' || Array.isArray(value)) {
    out.push(`${path}: expected an object (${type})`);
    return;
  }
  for (const [key, v] of Object.entries(value as Obj)) {
    const attr = model.attributeTypeMap.find((a) => a.baseName === key);
    if (attr === undefined) {
      const known = model.attributeTypeMap.map((a) => a.baseName).join(', ');
      out.push(`${path}.${key}: unknown field of ${type} (known: ${known})`);
    } else unknownFields(v, attr.type, `${path}.${key}`, out);
  }
}

/** client-node names models `<Version><Kind>`: apps/v1 DaemonSet → V1DaemonSet. */
function clientModelName(apiVersion: string, kind: string): string {
  const version = apiVersion.split('/').at(-1) as string;
  return `${version.charAt(0).toUpperCase()}${version.slice(1)}${kind}`;
}

/* ----------------------------------------------------------------------------------------
 * Pod helpers
 * -------------------------------------------------------------------------------------- */

type Container = Obj;
const podSpec = (workload: Obj): Obj => obj(at(workload, 'spec', 'template', 'spec'));
const containers = (spec: Obj): Container[] => arr(spec['containers']);
const initContainers = (spec: Obj): Container[] => arr(spec['initContainers']);
const allContainers = (spec: Obj): Container[] => [...initContainers(spec), ...containers(spec)];
const containerNamed = (spec: Obj, name: string): Container => {
  const c = allContainers(spec).find((x) => x['name'] === name);
  if (c === undefined) throw new Error(`no container ${name}`);
  return c;
};
const volume = (spec: Obj, name: string): Obj => {
  const v = arr(spec['volumes']).find((x) => x['name'] === name);
  if (v === undefined) throw new Error(`no volume ${name}`);
  return v;
};
const mounts = (c: Container): Obj[] => arr(c['volumeMounts']);
/** The mount of a container whose mountPath is exactly `path`, and its volume. */
function mountAt(spec: Obj, c: Container, path: string): { mount: Obj; volume: Obj } {
  const m = mounts(c).find((x) => x['mountPath'] === path);
  if (m === undefined) {
    throw new Error(`container ${str(c['name'])} mounts nothing at ${path} (mounts: ${mounts(c).map((x) => x['mountPath']).join(', ')})`);
  }
  return { mount: m, volume: volume(spec, str(m['name'])) };
}
const envVar = (c: Container, name: string): Obj | undefined => arr(c['env']).find((e) => e['name'] === name);

/** The security context that applies to a container: its own fields over the pod's. */
function effectiveSecurity(spec: Obj, c: Container): Obj {
  const pod = obj(spec['securityContext']);
  const own = obj(c['securityContext']);
  const merged: Obj = {};
  for (const key of ['runAsNonRoot', 'runAsUser', 'runAsGroup', 'seccompProfile']) if (key in pod) merged[key] = pod[key];
  return { ...merged, ...own };
}

function securityProblems(spec: Obj, c: Container): string[] {
  const s = effectiveSecurity(spec, c);
  const problems: string[] = [];
  const name = str(c['name']);
  if (s['runAsNonRoot'] !== true) problems.push(`${name}: runAsNonRoot must be true`);
  if (typeof s['runAsUser'] !== 'number' || s['runAsUser'] === 0) problems.push(`${name}: runAsUser must be a non-zero UID`);
  if (s['readOnlyRootFilesystem'] !== true) problems.push(`${name}: readOnlyRootFilesystem must be true`);
  if (s['allowPrivilegeEscalation'] !== false) problems.push(`${name}: allowPrivilegeEscalation must be false`);
  if (s['privileged'] === true) problems.push(`${name}: must not be privileged`);
  if (!arr<string>(at(s, 'capabilities', 'drop')).includes('ALL')) problems.push(`${name}: capabilities.drop must include ALL`);
  if (arr(at(s, 'capabilities', 'add')).length > 0) problems.push(`${name}: must add no capabilities`);
  if (at(s, 'seccompProfile', 'type') !== 'RuntimeDefault') problems.push(`${name}: seccompProfile.type must be RuntimeDefault`);
  return problems;
}

/** Kubernetes quantities, enough for cpu and memory: 50m, 1, 0.5, 128Mi, 1Gi, 100M. */
function quantity(q: unknown): number {
  const m = /^([0-9.]+)(m|k|M|G|Ki|Mi|Gi)?$/.exec(String(q));
  if (m === null) throw new Error(`cannot read quantity ${String(q)}`);
  const scale: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };
  return Number(m[1]) * (m[2] === undefined ? 1 : (scale[m[2]] as number));
}

/* ----------------------------------------------------------------------------------------
 * The objects the invariants are about
 * -------------------------------------------------------------------------------------- */

const AGENT_DS = find('DaemonSet', 'spiffe-agent');
const AGENT_POD = podSpec(AGENT_DS);
const AGENT = containerNamed(AGENT_POD, 'spiffe-agent');
const AGENT_NS = str(at(AGENT_DS, 'metadata', 'namespace'));
const SERVER_STS = find('StatefulSet', 'spiffe-server');
const SERVER_POD = podSpec(SERVER_STS);
const SERVER = containerNamed(SERVER_POD, 'spiffe-server');
const SERVER_NS = str(at(SERVER_STS, 'metadata', 'namespace'));

/** `-config <path>` from a container's args: the config file the process reads. */
function configPathOf(c: Container): string {
  const args = arr<string>(c['args']);
  const i = args.indexOf('-config');
  if (i < 0 || args[i + 1] === undefined) throw new Error(`container ${str(c['name'])} has no -config argument`);
  return args[i + 1] as string;
}

/** Reads the config file a container gets from a ConfigMap volume. */
function configFileText(spec: Obj, c: Container, namespace: string): { key: string; text: string } {
  const path = configPathOf(c);
  const { volume: v } = mountAt(spec, c, dirname(path));
  const cmName = str(at(v, 'configMap', 'name'));
  const cm = find('ConfigMap', cmName);
  expect(at(cm, 'metadata', 'namespace'), `ConfigMap ${cmName} namespace`).toBe(namespace);
  const text = at(cm, 'data', basename(path));
  if (typeof text !== 'string') throw new Error(`ConfigMap ${cmName} has no key ${basename(path)} (read by -config ${path})`);
  return { key: basename(path), text };
}

async function agentConfig(): Promise<AgentConfig> {
  const { key, text } = configFileText(AGENT_POD, AGENT, AGENT_NS);
  return parseAgentConfig(await parseConfigText(key, text), '/');
}

async function serverConfig(): Promise<ServerConfig> {
  const { key, text } = configFileText(SERVER_POD, SERVER, SERVER_NS);
  return parseServerConfig(await parseConfigText(key, text), '/');
}

/** Example workloads: Deployments that set SPIFFE_ENDPOINT_SOCKET. */
/** The final image's instruction `keyword` (ENTRYPOINT, CMD, USER). */
function imageInstruction(keyword: string): Instruction {
  const found = lastOf(finalStage(readDockerfile()), keyword);
  if (found === undefined) throw new Error(`the Dockerfile's final stage has no ${keyword}`);
  return found;
}

const WORKLOADS = all('Deployment').filter((d) => containers(podSpec(d)).some((c) => envVar(c, 'SPIFFE_ENDPOINT_SOCKET') !== undefined));

/* ----------------------------------------------------------------------------------------
 * Tests
 * -------------------------------------------------------------------------------------- */

describe('manifests: parsing and schemas', () => {
  it('every YAML document parses and names apiVersion, kind and metadata.name', () => {
    expect(DOCS.length).toBeGreaterThan(10);
    for (const d of RESOURCES) {
      expect(typeof d.obj['apiVersion'], `${d.file}: apiVersion`).toBe('string');
      expect(typeof d.obj['kind'], `${d.file}: kind`).toBe('string');
      expect(typeof at(d.obj, 'metadata', 'name'), `${d.file}: metadata.name`).toBe('string');
    }
  });

  it('every object validates against the Kubernetes OpenAPI schemas (kubernetes-models)', () => {
    const problems: string[] = [];
    for (const d of RESOURCES) {
      const Model = modelFor(str(d.obj['apiVersion']), str(d.obj['kind']));
      if (Model === undefined) {
        problems.push(`${d.file}: no schema for ${str(d.obj['apiVersion'])} ${str(d.obj['kind'])}`);
        continue;
      }
      try {
        new Model(d.obj).validate();
      } catch (err) {
        problems.push(`${d.file}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('no object has a field the Kubernetes API does not define (strict field validation)', () => {
    const problems: string[] = [];
    for (const d of RESOURCES) {
      unknownFields(d.obj, clientModelName(str(d.obj['apiVersion']), str(d.obj['kind'])), `${d.file}`, problems);
    }
    expect(problems).toEqual([]);
  });

  it('the strict check catches a misspelt field (it is not vacuous)', () => {
    const problems: string[] = [];
    const broken = structuredClone(AGENT_DS);
    (containers(podSpec(broken))[0] as Obj)['securityContex'] = { runAsNonRoot: true };
    unknownFields(broken, 'V1DaemonSet', 'broken', problems);
    expect(problems.join('\n')).toMatch(/securityContex: unknown field of V1Container/);
  });

  it('every namespaced object lives in a namespace these manifests create', () => {
    const namespaces = new Set(all('Namespace').map((n) => str(at(n, 'metadata', 'name'))));
    const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CSIDriver']);
    for (const d of RESOURCES) {
      if (clusterScoped.has(str(d.obj['kind']))) continue;
      expect(namespaces, `${d.file}: namespace ${str(at(d.obj, 'metadata', 'namespace'))}`).toContain(str(at(d.obj, 'metadata', 'namespace')));
    }
  });

  it('kustomizations list every manifest of their directory, and only existing files', () => {
    const kustomizations = DOCS.filter(isKustomization);
    expect(kustomizations.map((k) => k.file).sort()).toEqual(
      [
        'manifests/kustomization.yaml',
        'manifests/agent/kustomization.yaml',
        'manifests/server/kustomization.yaml',
        'manifests/csi/kustomization.yaml',
        'manifests/examples/kustomization.yaml',
        'manifests/examples/namespace/kustomization.yaml',
        'manifests/examples/csi/kustomization.yaml',
      ].sort(),
    );
    for (const k of kustomizations) {
      expect(k.obj['apiVersion']).toBe('kustomize.config.k8s.io/v1beta1');
      expect(Object.keys(k.obj).filter((key) => !['apiVersion', 'kind', 'resources', 'images'].includes(key))).toEqual([]);
      const dir = dirname(join(REPO, k.file));
      const listed = arr<string>(k.obj['resources']);
      for (const r of listed) expect(existsSync(join(dir, r)), `${k.file}: resource ${r}`).toBe(true);
      const siblings = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
      expect(siblings.filter((f) => !listed.includes(f)), `${k.file}: manifests not listed`).toEqual([]);
    }
    const top = DOCS.find((d) => d.file === 'manifests/kustomization.yaml') as Doc;
    expect(arr<string>(top.obj['resources'])).toContain('agent');
  });

  it('kubectl apply -k manifests/examples applies the hostPath workload and no CSI volume (a cluster without the driver runs it)', () => {
    const objs = rendered('manifests/examples');
    expect(ids(objs)).toEqual(['Namespace /spiffe-demo', 'ServiceAccount spiffe-demo/example-workload', 'Deployment spiffe-demo/example-workload']);
    expect(objs.flatMap((o) => arr(podSpec(o)['volumes'])).filter((v) => v['csi'] !== undefined)).toEqual([]);
  });

  it('the CSI example applies on its own (its namespace and ServiceAccount included), from manifests/examples/csi', () => {
    const objs = rendered('manifests/examples/csi');
    expect(ids(objs)).toEqual(['Namespace /spiffe-demo', 'ServiceAccount spiffe-demo/example-workload', 'Deployment spiffe-demo/example-workload-csi']);
    expect(arr(podSpec(objs[2] as Obj)['volumes']).map((v) => v['csi'])).toEqual([{ driver: 'csi.spiffe.io', readOnly: true }]);
  });

  it('every kustomization renders under kustomize\'s load rules', () => {
    for (const k of DOCS.filter(isKustomization)) expect(() => rendered(dirname(k.file))).not.toThrow();
  });
});

describe('manifests: the agent DaemonSet', () => {
  it('runs in the host PID namespace, on every node, first, one node at a time', () => {
    expect(AGENT_POD['hostPID']).toBe(true);
    expect(AGENT_POD['priorityClassName']).toBe('system-node-critical');
    // Tolerate all taints: an operator Exists toleration without key or effect.
    expect(arr(AGENT_POD['tolerations']).some((t) => t['operator'] === 'Exists' && t['key'] === undefined && t['effect'] === undefined)).toBe(true);
    expect(at(AGENT_DS, 'spec', 'updateStrategy')).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
  });

  it('the agent container is non-root, read-only, without capabilities, under RuntimeDefault seccomp', () => {
    expect(securityProblems(AGENT_POD, AGENT)).toEqual([]);
    expect(at(AGENT_POD, 'securityContext', 'runAsNonRoot')).toBe(true);
  });

  it('the socket-directory init step runs as root with CAP_CHOWN only, for the agent UID and directory', () => {
    const init = initContainers(AGENT_POD);
    expect(init.map((c) => c['name'])).toEqual(['prepare-socket-dir']);
    const c = init[0] as Container;
    const s = effectiveSecurity(AGENT_POD, c);
    expect(s['runAsUser']).toBe(0);
    expect(at(s, 'capabilities', 'drop')).toEqual(['ALL']);
    expect(at(s, 'capabilities', 'add')).toEqual(['CHOWN']);
    expect(s['allowPrivilegeEscalation']).toBe(false);
    expect(s['readOnlyRootFilesystem']).toBe(true);
    expect(s['privileged']).not.toBe(true);
    expect(at(s, 'seccompProfile', 'type')).toBe('RuntimeDefault');
    // args: <dir> <uid> <gid> = the agent's socket mount and its UID/GID.
    const agentSecurity = effectiveSecurity(AGENT_POD, AGENT);
    const [dir, uid, gid] = arr<string>(c['args']);
    expect(Number(uid)).toBe(agentSecurity['runAsUser']);
    expect(Number(gid)).toBe(agentSecurity['runAsGroup']);
    const sockets = mountAt(AGENT_POD, c, dir as string);
    expect(sockets.volume['hostPath']).toBeDefined();
    expect(mounts(AGENT).find((m) => m['name'] === sockets.mount['name'])?.['mountPath']).toBe(dir);
  });

  it('the socket path agrees between the hostPath, the agent mount and socket_path', async () => {
    const config = await agentConfig();
    expect(config.socketPath).toBe('/run/spire/agent-sockets/spire-agent.sock');
    const { mount, volume: v } = mountAt(AGENT_POD, AGENT, dirname(config.socketPath));
    expect(mount['readOnly']).not.toBe(true);
    expect(v['hostPath']).toEqual({ path: '/run/spire/agent-sockets', type: 'DirectoryOrCreate' });
  });

  it('mounts the projected PSAT token (audience spire-server, 7200 s, path spire-agent) where k8s_psat reads it', async () => {
    const config = await agentConfig();
    expect(config.nodeAttestor).toBe('k8s_psat');
    const tokenPath = config.k8sPsat?.tokenPath as string;
    expect(tokenPath).toBe('/var/run/secrets/tokens/spire-agent');
    const { mount, volume: v } = mountAt(AGENT_POD, AGENT, dirname(tokenPath));
    expect(mount['readOnly']).toBe(true);
    const sources = arr(at(v, 'projected', 'sources'));
    expect(sources).toEqual([{ serviceAccountToken: { path: basename(tokenPath), audience: 'spire-server', expirationSeconds: 7200 } }]);
  });

  it('mounts the kubelet CA and an API token where the k8s workload attestor reads them', async () => {
    const config = await agentConfig();
    const k8sAttestor = config.workloadAttestors.k8s;
    expect(k8sAttestor).toBeDefined();
    expect(k8sAttestor?.skipKubeletVerification).toBe(false);
    const caPath = k8sAttestor?.kubeletCaPath as string;
    const tokenPath = k8sAttestor?.tokenPath as string;
    expect(dirname(caPath)).toBe(dirname(tokenPath));
    const { mount, volume: v } = mountAt(AGENT_POD, AGENT, dirname(caPath));
    expect(mount['readOnly']).toBe(true);
    const sources = arr(at(v, 'projected', 'sources'));
    // The cluster CA (SPIRE's apiServerCA mode), from the ConfigMap every namespace gets.
    expect(sources).toContainEqual({ configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: basename(caPath) }] } });
    // A token for the API server audience (no audience field), which the kubelet's webhook authenticates.
    const token = sources.find((s) => s['serviceAccountToken'] !== undefined);
    expect(at(token, 'serviceAccountToken', 'path')).toBe(basename(tokenPath));
    expect(at(token, 'serviceAccountToken', 'audience')).toBeUndefined();
    // Tokens come only from these explicit volumes.
    expect(AGENT_POD['automountServiceAccountToken']).toBe(false);
  });

  it('takes the node name from the downward API in MY_NODE_NAME, the variable node_name_env names', async () => {
    const config = await agentConfig();
    expect(config.workloadAttestors.k8s?.nodeNameEnv).toBe('MY_NODE_NAME');
    expect(envVar(AGENT, 'MY_NODE_NAME')).toEqual({ name: 'MY_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
  });

  it('probes /live and /ready on the named health port, as health_checks configures them', async () => {
    const config = await agentConfig();
    const health = config.healthChecks;
    expect(health.listenerEnabled).toBe(true);
    // The kubelet probes the pod IP: the listener must not be bound to loopback.
    expect(health.bindAddress).toBe('0.0.0.0');
    expect([health.livePath, health.readyPath]).toEqual(['/live', '/ready']);
    const ports = arr(AGENT['ports']);
    for (const [probe, path] of [['livenessProbe', health.livePath], ['readinessProbe', health.readyPath]] as const) {
      const get = obj(at(AGENT, probe, 'httpGet'));
      expect(get['path'], probe).toBe(path);
      expect(typeof get['port'], `${probe} uses a named port`).toBe('string');
      const port = ports.find((p) => p['name'] === get['port']);
      expect(port?.['containerPort'], `${probe} port ${str(get['port'])}`).toBe(health.bindPort);
    }
    const metrics = ports.find((p) => p['name'] === 'metrics');
    expect(metrics?.['containerPort']).toBe(config.telemetry.prometheus?.port);
    expect(config.telemetry.prometheus?.host).toBe('0.0.0.0');
  });

  it('reads its config, the server bundle and a writable data_dir from the volumes that hold them', async () => {
    const config = await agentConfig();
    // trust_bundle_path comes from ConfigMap spire-bundle (key = file name).
    expect(config.trustBundle).toEqual({ kind: 'path', path: '/run/spire/bundle/bundle.crt', format: 'pem' });
    const bundle = mountAt(AGENT_POD, AGENT, dirname('/run/spire/bundle/bundle.crt'));
    expect(at(bundle.volume, 'configMap', 'name')).toBe('spire-bundle');
    // The server (or its k8sbundle notifier) owns spire-bundle: shipping one here would
    // overwrite the published bundle on every `kubectl apply`.
    expect(all('ConfigMap').filter((c) => at(c, 'metadata', 'name') === 'spire-bundle')).toEqual([]);
    // data_dir: an emptyDir (KeyManager "disk" keeps the agent key there), writable.
    expect(config.keyManager).toBe('disk');
    const data = mountAt(AGENT_POD, AGENT, config.dataDir);
    expect(data.mount['readOnly']).not.toBe(true);
    expect(data.volume['emptyDir']).toBeDefined();
  });

  it('the agent ServiceAccount may get pods, nodes and nodes/proxy, and nothing else', () => {
    const sa = str(AGENT_POD['serviceAccountName']);
    const account = find('ServiceAccount', sa);
    expect(at(account, 'metadata', 'namespace')).toBe(AGENT_NS);
    const binding = all('ClusterRoleBinding').find((b) => arr(b['subjects']).some((s) => s['kind'] === 'ServiceAccount' && s['name'] === sa && s['namespace'] === AGENT_NS));
    expect(binding, `a ClusterRoleBinding for ${AGENT_NS}:${sa}`).toBeDefined();
    expect(at(binding, 'roleRef', 'kind')).toBe('ClusterRole');
    const role = find('ClusterRole', str(at(binding, 'roleRef', 'name')));
    expect(role['rules']).toEqual([{ apiGroups: [''], resources: ['pods', 'nodes', 'nodes/proxy'], verbs: ['get'] }]);
  });
});

describe('manifests: workloads reach the agent socket', () => {
  it('the hostPath example mounts the socket directory read-only and sets SPIFFE_ENDPOINT_SOCKET to the socket', async () => {
    const config = await agentConfig();
    const agentHostDir = str(at(volume(AGENT_POD, str(mountAt(AGENT_POD, AGENT, dirname(config.socketPath)).mount['name'])), 'hostPath', 'path'));
    const hostPathWorkloads = WORKLOADS.filter((w) => arr(podSpec(w)['volumes']).some((v) => v['hostPath'] !== undefined));
    expect(hostPathWorkloads.length).toBe(1);
    for (const w of hostPathWorkloads) {
      const spec = podSpec(w);
      for (const c of containers(spec)) {
        const endpoint = str(envVar(c, 'SPIFFE_ENDPOINT_SOCKET')?.['value']);
        expect(endpoint).toBe('unix:///run/spire/agent-sockets/spire-agent.sock');
        const socketFile = new URL(endpoint).pathname;
        const { mount, volume: v } = mountAt(spec, c, dirname(socketFile));
        expect(mount['readOnly']).toBe(true);
        expect(at(v, 'hostPath', 'path')).toBe(agentHostDir);
        expect(basename(socketFile)).toBe(basename(config.socketPath));
      }
    }
  });

  it('the CSI example mounts a csi.spiffe.io volume and points SPIFFE_ENDPOINT_SOCKET into it', async () => {
    const config = await agentConfig();
    const csiWorkloads = WORKLOADS.filter((w) => arr(podSpec(w)['volumes']).some((v) => v['csi'] !== undefined));
    expect(csiWorkloads.length).toBe(1);
    for (const w of csiWorkloads) {
      const spec = podSpec(w);
      for (const c of containers(spec)) {
        const socketFile = new URL(str(envVar(c, 'SPIFFE_ENDPOINT_SOCKET')?.['value'])).pathname;
        const { mount, volume: v } = mountAt(spec, c, dirname(socketFile));
        expect(mount['readOnly']).toBe(true);
        expect(v['csi']).toEqual({ driver: 'csi.spiffe.io', readOnly: true });
        expect(basename(socketFile)).toBe(basename(config.socketPath));
      }
    }
    // The driver serves the agent's host directory, and is registered as ephemeral-only.
    const driverPod = podSpec(find('DaemonSet', 'spiffe-csi-driver'));
    const driver = containerNamed(driverPod, 'spiffe-csi-driver');
    const args = arr<string>(driver['args']);
    const socketDir = args[args.indexOf('-workload-api-socket-dir') + 1] as string;
    expect(at(mountAt(driverPod, driver, socketDir).volume, 'hostPath', 'path')).toBe(dirname(config.socketPath));
    expect(at(find('CSIDriver', 'csi.spiffe.io'), 'spec')).toMatchObject({ attachRequired: false, podInfoOnMount: true, fsGroupPolicy: 'None', volumeLifecycleModes: ['Ephemeral'] });
  });

  it('URIs follow the Workload Endpoint spec: unix:///absolute/path, no authority', () => {
    for (const w of WORKLOADS) {
      for (const c of containers(podSpec(w))) {
        const endpoint = str(envVar(c, 'SPIFFE_ENDPOINT_SOCKET')?.['value']);
        expect(endpoint).toMatch(/^unix:\/\/\/[^?#]+$/);
      }
    }
  });

  it('example workloads run non-root, read-only, without capabilities', () => {
    for (const w of WORKLOADS) {
      const spec = podSpec(w);
      for (const c of allContainers(spec)) expect(securityProblems(spec, c)).toEqual([]);
    }
  });
});

describe('manifests: the server', () => {
  it('server.conf parses with the server parser and accepts exactly this agent (cluster, service account, audience)', async () => {
    const server = await serverConfig();
    const agent = await agentConfig();
    const cluster = server.k8sPsat?.clusters.get(agent.k8sPsat?.cluster as string);
    expect(cluster, `server k8s_psat has cluster ${agent.k8sPsat?.cluster}`).toBeDefined();
    expect([...(cluster?.serviceAccountAllowList ?? [])]).toContain(`${AGENT_NS}:${str(AGENT_POD['serviceAccountName'])}`);
    const tokenAudience = at(arr(at(volume(AGENT_POD, str(mountAt(AGENT_POD, AGENT, dirname(agent.k8sPsat?.tokenPath as string)).mount['name'])), 'projected', 'sources'))[0], 'serviceAccountToken', 'audience');
    expect(cluster?.audience).toContain(tokenAudience);
    expect(server.trustDomain).toBe(agent.trustDomain);
    // In-cluster credentials for TokenReview.
    expect(cluster?.kubeConfigFile).toBe('');
    expect(SERVER_POD['automountServiceAccountToken']).not.toBe(false);
  });

  it('the agent reaches the server through its Service', async () => {
    const server = await serverConfig();
    const agent = await agentConfig();
    const service = find('Service', str(at(SERVER_STS, 'spec', 'serviceName')));
    expect(`${str(at(service, 'metadata', 'name'))}.${str(at(service, 'metadata', 'namespace'))}`).toBe(agent.serverAddress);
    const port = arr(at(service, 'spec', 'ports')).find((p) => p['port'] === agent.serverPort);
    expect(port, `Service port ${agent.serverPort}`).toBeDefined();
    const containerPort = arr(SERVER['ports']).find((p) => p['name'] === port?.['targetPort']);
    expect(containerPort?.['containerPort']).toBe(server.bindPort);
    expect(server.bindAddress).toBe('0.0.0.0');
    expect(obj(at(service, 'spec', 'selector'))).toEqual(obj(at(SERVER_STS, 'spec', 'selector', 'matchLabels')));
  });

  it('keeps data_dir on a PersistentVolume and the admin socket on a writable emptyDir', async () => {
    const server = await serverConfig();
    const data = mounts(SERVER).find((m) => m['mountPath'] === server.dataDir);
    const claims = arr(at(SERVER_STS, 'spec', 'volumeClaimTemplates')).map((c) => at(c, 'metadata', 'name'));
    expect(claims).toContain(data?.['name']);
    // No storageClassName: the claim takes the cluster's default StorageClass, a requirement
    // manifests/README.md states (with what to do on clusters without one).
    expect(arr(at(SERVER_STS, 'spec', 'volumeClaimTemplates')).map((c) => at(c, 'spec', 'storageClassName'))).toEqual([undefined]);
    expect(server.datastorePath.startsWith(`${server.dataDir}/`)).toBe(true);
    const admin = mountAt(SERVER_POD, SERVER, dirname(server.socketPath));
    expect(admin.volume['emptyDir']).toBeDefined();
    expect(at(SERVER_STS, 'spec', 'replicas')).toBe(1);
  });

  it('the server runs non-root, read-only, without capabilities', () => {
    for (const c of allContainers(SERVER_POD)) expect(securityProblems(SERVER_POD, c)).toEqual([]);
  });

  it('the server ServiceAccount may create TokenReviews and get pods and nodes, nothing else', () => {
    const sa = str(SERVER_POD['serviceAccountName']);
    expect(at(find('ServiceAccount', sa), 'metadata', 'namespace')).toBe(SERVER_NS);
    const binding = all('ClusterRoleBinding').find((b) => arr(b['subjects']).some((s) => s['name'] === sa && s['namespace'] === SERVER_NS));
    const role = find('ClusterRole', str(at(binding, 'roleRef', 'name')));
    expect(role['rules']).toEqual([
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      { apiGroups: [''], resources: ['pods', 'nodes'], verbs: ['get'] },
    ]);
  });
});

describe('manifests: every container', () => {
  const pods = [...all('DaemonSet'), ...all('Deployment'), ...all('StatefulSet')];

  it('sets cpu and memory requests and limits, requests within limits', () => {
    const problems: string[] = [];
    for (const w of pods) {
      for (const c of allContainers(podSpec(w))) {
        const where = `${str(w['kind'])}/${str(at(w, 'metadata', 'name'))}/${str(c['name'])}`;
        for (const resource of ['cpu', 'memory']) {
          const request = at(c, 'resources', 'requests', resource);
          const limit = at(c, 'resources', 'limits', resource);
          if (request === undefined || limit === undefined) problems.push(`${where}: ${resource} request and limit must be set`);
          else if (quantity(request) > quantity(limit)) problems.push(`${where}: ${resource} request ${String(request)} exceeds limit ${String(limit)}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('this project\'s containers use one image, tagged with the package version, started the Dockerfile\'s way', () => {
    const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
    const entrypoint = execForm(imageInstruction('ENTRYPOINT'));
    const [node, agentScript] = entrypoint as [string, string];
    const ours = pods.flatMap((w) => allContainers(podSpec(w))).filter((c) => str(c['image']).startsWith('spiffe-node-agent'));
    expect(ours.length).toBeGreaterThanOrEqual(4);
    for (const c of ours) {
      expect(c['image']).toBe(`spiffe-node-agent:${version}`);
      const command = arr<string>(c['command']);
      // Either the image's ENTRYPOINT (the agent CLI) or its node binary with a script of the image.
      if (command.length > 0) expect(command[0]).toBe(node);
      if (command[1] !== undefined && command[1] !== '-e') {
        expect(dirname(command[1])).toBe(dirname(agentScript));
        expect(existsSync(join(REPO, 'bin', basename(command[1])))).toBe(true);
      }
    }
    for (const k of DOCS.filter(isKustomization)) {
      for (const image of arr(k.obj['images'])) expect(image).toEqual({ name: 'spiffe-node-agent', newTag: version });
    }
    // The Dockerfile's USER is the UID the manifests run the agent and server as.
    const user = imageInstruction('USER').args.split(':')[0];
    expect(Number(user)).toBe(effectiveSecurity(AGENT_POD, AGENT)['runAsUser']);
    expect(Number(user)).toBe(effectiveSecurity(SERVER_POD, SERVER)['runAsUser']);
    // The agent container runs the image's default command, spelled out.
    expect(AGENT['command']).toBeUndefined();
    expect(arr(AGENT['args'])).toEqual(execForm(imageInstruction('CMD')));
  });
});
