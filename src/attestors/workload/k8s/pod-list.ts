/**
 * The kubelet's `/pods` PodList, parsed once into compact immutable records and indexed by
 * pod UID and container ID. Pure: text in, snapshot out.
 *
 * Only what selectors and matching need is kept (a /pods response is about 5 KB of JSON
 * per pod; the records are a small fraction of it), so the parsed JSON tree is garbage as
 * soon as parsing returns. Terminal pods (phase Succeeded or Failed) are dropped: no
 * process runs in them, and keeping them is what made SPIRE's memory grow with completed
 * jobs (spire#7161). Ephemeral containers get no selectors; their IDs are kept only so the
 * attestor can tell "an ephemeral container" from "a container not listed yet".
 */
import type { Parsed } from '../../../common/spiffe-id.ts';

/** One entry of `status.containerStatuses` or `status.initContainerStatuses`. */
export interface ContainerStatusRecord {
  readonly name: string;
  readonly image: string;
  readonly imageId: string;
  /** The URL host of `containerID` (`containerd://<id>` → `<id>`); empty while the container has none. */
  readonly containerId: string;
}

/** An owner reference of a pod. */
export interface OwnerRecord {
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
}

/** The parts of a pod that attestation uses. Immutable. */
export interface PodRecord {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccountName: string;
  readonly nodeName: string;
  readonly phase: string;
  /** `metadata.labels` in document order. */
  readonly labels: ReadonlyArray<readonly [string, string]>;
  readonly owners: readonly OwnerRecord[];
  readonly containerStatuses: readonly ContainerStatusRecord[];
  readonly initContainerStatuses: readonly ContainerStatusRecord[];
  /** Container IDs (URL hosts) of `status.ephemeralContainerStatuses`. */
  readonly ephemeralContainerIds: readonly string[];
}

/** A container found in a pod. */
export interface ContainerMatch {
  readonly pod: PodRecord;
  readonly status: ContainerStatusRecord;
  /** True when it is an init container. */
  readonly init: boolean;
}

/** A parsed PodList. */
export interface PodList {
  /** Non-terminal pods by `metadata.uid`. */
  readonly pods: ReadonlyMap<string, PodRecord>;
  /**
   * Container ID → the container, over all pods (regular containers before init containers).
   * An ID listed by two different pods is in `duplicateContainerIds` and maps to the first.
   */
  readonly containers: ReadonlyMap<string, ContainerMatch>;
  readonly duplicateContainerIds: ReadonlySet<string>;
  /** Items skipped because they have no UID. */
  readonly podsWithoutUid: number;
  /** Items dropped because they are terminal (Succeeded, Failed). */
  readonly terminalPods: number;
}

const EMPTY: readonly never[] = Object.freeze([]);

/**
 * Parses the body of `GET /pods`. Errors name what is wrong with the document; items that
 * lack a UID are skipped (and counted), as in SPIRE.
 */
export function parsePodList(text: string): Parsed<PodList> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `unable to parse the kubelet response: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (!isObject(doc)) return { ok: false, error: 'invalid kubelet response: expected an object' };
  const items = doc['items'];
  // Go's encoding/json writes a nil Items slice as null.
  if (items !== null && !Array.isArray(items)) return { ok: false, error: 'invalid kubelet response: expected an items array' };

  const pods = new Map<string, PodRecord>();
  const containers = new Map<string, ContainerMatch>();
  const duplicateContainerIds = new Set<string>();
  let podsWithoutUid = 0;
  let terminalPods = 0;
  for (const item of (items ?? EMPTY) as readonly unknown[]) {
    if (!isObject(item)) continue;
    const metadata = objectOr(item['metadata']);
    const uid = str(metadata['uid']);
    if (uid === '') {
      podsWithoutUid++;
      continue;
    }
    const status = objectOr(item['status']);
    const phase = str(status['phase']);
    if (phase === 'Succeeded' || phase === 'Failed') {
      terminalPods++;
      continue;
    }
    const spec = objectOr(item['spec']);
    const pod: PodRecord = {
      uid,
      name: str(metadata['name']),
      namespace: str(metadata['namespace']),
      serviceAccountName: str(spec['serviceAccountName']),
      nodeName: str(spec['nodeName']),
      phase,
      labels: labelsOf(metadata['labels']),
      owners: ownersOf(metadata['ownerReferences']),
      containerStatuses: statusesOf(status['containerStatuses']),
      initContainerStatuses: statusesOf(status['initContainerStatuses']),
      ephemeralContainerIds: statusesOf(status['ephemeralContainerStatuses'])
        .map((s) => s.containerId)
        .filter((id) => id !== ''),
    };
    pods.set(uid, pod);
    indexContainers(containers, duplicateContainerIds, pod, pod.containerStatuses, false);
    indexContainers(containers, duplicateContainerIds, pod, pod.initContainerStatuses, true);
  }
  return { ok: true, value: { pods, containers, duplicateContainerIds, podsWithoutUid, terminalPods } };
}

/**
 * The container with this ID in this pod: `containerStatuses` first, then
 * `initContainerStatuses`, skipping statuses without an ID (SPIRE's `lookUpContainerInPod`).
 */
export function findContainer(pod: PodRecord, containerId: string): ContainerMatch | undefined {
  for (const status of pod.containerStatuses) {
    if (status.containerId === containerId) return { pod, status, init: false };
  }
  for (const status of pod.initContainerStatuses) {
    if (status.containerId === containerId) return { pod, status, init: true };
  }
  return undefined;
}

/**
 * The URL host of a status's `containerID` (`containerd://abc` → `abc`; also `docker://`,
 * `cri-o://`), as Go's `url.Parse(id).Host`; empty when there is no `scheme://`.
 */
export function containerIdHost(containerId: string): string {
  const sep = containerId.indexOf('://');
  if (sep <= 0) return '';
  let end = containerId.length;
  for (let i = sep + 3; i < containerId.length; i++) {
    const c = containerId.charCodeAt(i);
    if (c === 0x2f /* / */ || c === 0x3f /* ? */ || c === 0x23 /* # */) {
      end = i;
      break;
    }
  }
  const authority = containerId.slice(sep + 3, end);
  const at = authority.lastIndexOf('@');
  return at < 0 ? authority : authority.slice(at + 1);
}

function indexContainers(
  index: Map<string, ContainerMatch>,
  duplicates: Set<string>,
  pod: PodRecord,
  statuses: readonly ContainerStatusRecord[],
  init: boolean,
): void {
  for (const status of statuses) {
    const id = status.containerId;
    if (id === '') continue;
    const existing = index.get(id);
    if (existing === undefined) index.set(id, { pod, status, init });
    else if (existing.pod !== pod) duplicates.add(id);
  }
}

function statusesOf(value: unknown): readonly ContainerStatusRecord[] {
  if (!Array.isArray(value) || value.length === 0) return EMPTY;
  const out: ContainerStatusRecord[] = [];
  for (const raw of value as readonly unknown[]) {
    if (!isObject(raw)) continue;
    out.push({
      name: str(raw['name']),
      image: str(raw['image']),
      imageId: str(raw['imageID']),
      containerId: containerIdHost(str(raw['containerID'])),
    });
  }
  return out;
}

function labelsOf(value: unknown): ReadonlyArray<readonly [string, string]> {
  if (!isObject(value)) return EMPTY;
  const out: Array<readonly [string, string]> = [];
  for (const key in value) out.push([key, str(value[key])]);
  return out;
}

function ownersOf(value: unknown): readonly OwnerRecord[] {
  if (!Array.isArray(value) || value.length === 0) return EMPTY;
  const out: OwnerRecord[] = [];
  for (const raw of value as readonly unknown[]) {
    if (!isObject(raw)) continue;
    out.push({ kind: str(raw['kind']), name: str(raw['name']), uid: str(raw['uid']) });
  }
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const NO_FIELDS: Readonly<Record<string, unknown>> = Object.freeze({});

function objectOr(value: unknown): Readonly<Record<string, unknown>> {
  return isObject(value) ? value : NO_FIELDS;
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}
