/**
 * Finds the pod UID and container ID of a process from the text of `/proc/<pid>/cgroup`
 * (SPIRE's `pkg/common/containerinfo/extract.go`, the "new container locator"). Pure: no I/O.
 *
 * Shapes it handles, one path per line (`<hierarchy-id>:<controllers>:<path>`):
 * - cgroupfs driver: `/kubepods/<qos>/pod<uid>/<id>` (v1 and v2, Guaranteed pods without `<qos>`);
 * - systemd driver: `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`
 *   (also `docker-<id>.scope`, `crio-<id>.scope`, `crio-conmon-<id>.scope`, and kubelet-in-a-slice prefixes);
 * - kind and other nested runtimes: `/docker/<node-id>/kubepods/…/<id>` (the LAST 64-hex segment wins);
 * - cgroup-namespace-relative paths: `0::/../crio-<id>.scope` (a container ID, no pod UID);
 * - v1, v2 (`0::/…`) and hybrid files mixing both.
 */
import { Code } from '../../../common/errors.ts';

/** Where a process sits in Kubernetes, as far as its cgroup paths tell. */
export interface ContainerLocation {
  /** The pod UID in its canonical dashed form, when a path names the pod. */
  readonly podUid?: string;
  /** The 64-hex container ID (as written in the path, case preserved), when the process is in a container. */
  readonly containerId?: string;
}

/** The result of a locator: the location, or an error with the gRPC code it maps to. */
export type LocateResult =
  | { readonly ok: true; readonly value: ContainerLocation }
  | { readonly ok: false; readonly code: Code; readonly error: string };

// ASCII word boundaries, as Go's RE2 `\b`: `_` is a word character, `- . :` are not. JS `\b`
// without the `u`+`i` flags is ASCII-only too, so these match exactly what SPIRE matches.
const CONTAINER_ID = /\b([0-9a-fA-F]{64})\b/;
const POD_UID = /\bpod([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12})\b/;
const UNDERSCORES = /_/g;

const NOTHING: ContainerLocation = Object.freeze({});

/** What one path says: nothing, or a container ID with an optional pod UID. */
interface PathFacts {
  readonly podUid: string | undefined;
  readonly containerId: string;
}

/**
 * The pod UID and container ID in one cgroup path or mount root.
 *
 * Walks the `/`-separated segments from the last one backwards; the first segment holding
 * a 64-hex ID at word boundaries supplies the container ID. The pod UID is then searched in
 * what precedes the ID in that segment, then in earlier segments. An empty segment (the
 * leading `/`, a `//`, a trailing `/`) ends either walk, as `path.Split` does in SPIRE.
 */
function extractFromPath(path: string): PathFacts | undefined {
  const segments = path.split('/');
  let i = segments.length - 1;
  let containerId: string | undefined;
  let before = '';
  for (; i >= 0; i--) {
    const segment = segments[i] as string;
    if (segment === '') return undefined;
    const m = CONTAINER_ID.exec(segment);
    if (m !== null) {
      containerId = m[1] as string;
      before = segment.slice(0, m.index);
      break;
    }
  }
  if (containerId === undefined) return undefined;

  // The rest of the container's segment first (systemd may write `pod<uid>:<id>`), then
  // earlier segments, stopping at an empty one.
  let podUid: string | undefined;
  let segment = before !== '' ? before : (segments[--i] ?? '');
  while (segment !== '') {
    const m = POD_UID.exec(segment);
    if (m !== null) {
      podUid = (m[1] as string).replace(UNDERSCORES, '-');
      break;
    }
    segment = segments[--i] ?? '';
  }
  return { podUid, containerId };
}

/**
 * Combines what several paths say (lines of a cgroup file, or cgroup mount roots) into one
 * location, with SPIRE's precedence rules:
 * - a path with a pod UID overrides what earlier paths without one said (kind on macOS:
 *   `0::/docker/<node>/system.slice/containerd.service` next to the pod's real path);
 * - once a pod UID is known, paths without one are ignored;
 * - two different pod UIDs, or two different container IDs, are a conflict: the safe answer
 *   is none at all (FailedPrecondition).
 *
 * One deliberate difference from SPIRE: a path with no container ID at all (`11:rdma:/`)
 * adds nothing and conflicts with nothing. SPIRE counts it as a conflict when it comes
 * AFTER a pod-less container path, and not when it comes before, so its answer depends on
 * line order; here it never matters.
 */
export function combinePaths(paths: Iterable<string>): LocateResult {
  let podUid: string | undefined;
  let containerId: string | undefined;
  let previousPath: string | undefined;
  for (const path of paths) {
    // v1 files repeat the same path for every controller: decide it once.
    if (path === previousPath) continue;
    previousPath = path;
    const facts = extractFromPath(path);
    if (facts === undefined) continue;
    if (podUid !== undefined && facts.podUid === undefined) continue;
    if (podUid === undefined && facts.podUid !== undefined) {
      podUid = facts.podUid;
      containerId = facts.containerId;
      continue;
    }
    if (facts.podUid !== undefined && facts.podUid !== podUid) {
      return conflict(`multiple pod UIDs found (${quote(podUid)}, ${quote(facts.podUid)})`);
    }
    if (containerId !== undefined && facts.containerId !== containerId) {
      return conflict(`multiple container IDs found (${quote(containerId)}, ${quote(facts.containerId)})`);
    }
    containerId = facts.containerId;
  }
  if (containerId === undefined) return { ok: true, value: NOTHING };
  return { ok: true, value: podUid === undefined ? { containerId } : { podUid, containerId } };
}

/**
 * Locates the process described by the text of `/proc/<pid>/cgroup`.
 *
 * Each line is split at its first two colons (`SplitN(line, ":", 3)`); a line with fewer
 * than three fields is an error (Internal), as in SPIRE. The final newline is not a line.
 * `{}` (no container ID) means the process is not in a container.
 */
export function locateFromCgroup(text: string): LocateResult {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (body === '') return { ok: true, value: NOTHING };
  const lines = body.split('\n');
  const paths: string[] = new Array<string>(lines.length);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n] as string;
    const first = line.indexOf(':');
    const second = first < 0 ? -1 : line.indexOf(':', first + 1);
    if (second < 0) {
      const fields = first < 0 ? 1 : 2;
      return {
        ok: false,
        code: Code.INTERNAL,
        error: `cgroup entry contains ${fields} field${fields === 1 ? '' : 's'}, but expected at least 3: ${JSON.stringify(line)}`,
      };
    }
    paths[n] = line.slice(second + 1);
  }
  return combinePaths(paths);
}

function conflict(error: string): LocateResult {
  return { ok: false, code: Code.FAILED_PRECONDITION, error };
}

function quote(s: string | undefined): string {
  return JSON.stringify(s ?? '');
}
