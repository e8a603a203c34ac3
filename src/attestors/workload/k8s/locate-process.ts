/**
 * Reads where a process sits: its pod UID and container ID from procfs, through the pure
 * locators. procfs reads are synchronous on purpose: in-memory files, microseconds, on the
 * attestation hot path (a trip through libuv's thread pool costs more).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError, Code } from '../../../common/errors.ts';
import { locateFromCgroup, type ContainerLocation } from './cgroup-locator.ts';
import { locateFromMountinfo } from './mountinfo-locator.ts';

/**
 * The caller's pod UID and container ID: from `/proc/<pid>/cgroup`, and only if that names
 * no container, from `/proc/<pid>/mountinfo` (which the workload can influence). A process
 * that is gone reads as "not in a container", as in SPIRE. Throws ApiError
 * (FAILED_PRECONDITION on conflicting IDs, INTERNAL on unreadable or malformed files).
 */
export function locateProcess(procRoot: string, pid: number): ContainerLocation {
  const dir = join(procRoot, String(pid));
  const cgroup = readProcFile(join(dir, 'cgroup'), pid);
  if (cgroup !== undefined) {
    const fromCgroup = locateFromCgroup(cgroup);
    if (!fromCgroup.ok) throw new ApiError(fromCgroup.code, `k8s: process ${pid}: ${fromCgroup.error}`);
    if (fromCgroup.value.containerId !== undefined) return fromCgroup.value;
  }
  const mountinfo = readProcFile(join(dir, 'mountinfo'), pid);
  if (mountinfo === undefined) return {};
  const fromMounts = locateFromMountinfo(mountinfo);
  if (!fromMounts.ok) throw new ApiError(fromMounts.code, `k8s: process ${pid}: mountinfo: ${fromMounts.error}`);
  return fromMounts.value;
}

/** A procfs file's text; undefined when it (or the process) does not exist. */
function readProcFile(path: string, pid: number): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOENT' || code === 'ESRCH') return undefined;
    const reason = err instanceof Error ? err.message : String(err);
    throw new ApiError(Code.INTERNAL, `k8s: unable to read ${path} of process ${pid}: ${reason}`);
  }
}
