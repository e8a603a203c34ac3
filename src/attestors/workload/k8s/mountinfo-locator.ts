/**
 * The fallback locator over `/proc/<pid>/mountinfo` (SPIRE's `containerinfo/mountinfo.go`):
 * the roots of the process's `cgroup`/`cgroup2` mounts name its container when the cgroup
 * file does not (an agent outside the host cgroup namespace sees `0::/` there).
 *
 * Use it ONLY when `/proc/<pid>/cgroup` yields no container ID: a workload can bind-mount
 * another container's cgroup directory into its own mount namespace, so mountinfo can be
 * forged, while the kernel writes the cgroup file. Pure: no I/O.
 */
import { Code } from '../../../common/errors.ts';
import { combinePaths, type LocateResult } from './cgroup-locator.ts';

/**
 * Locates the process described by the text of `/proc/<pid>/mountinfo`.
 *
 * Each line is `id parent major:minor root mountpoint options [optional…] - fstype source super`
 * (proc(5)); it is split on single spaces so an empty mount source survives. Mounts of type
 * `cgroup` or `cgroup2` whose root is not `/` are combined with the cgroup-file rules
 * (a root of `/` says nothing, and would only add noise). A malformed line is an error (Internal).
 */
export function locateFromMountinfo(text: string): LocateResult {
  const roots: string[] = [];
  const lines = text.split('\n');
  for (const line of lines) {
    if (line === '') continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (sep < 0) return malformed(`missing separator in mountinfo line: ${JSON.stringify(line)}`);
    if (sep < 6) return malformed(`expected at least 6 fields before the separator in mountinfo line: ${JSON.stringify(line)}`);
    const fstype = fields[sep + 1];
    if (fstype === undefined || fstype === '') return malformed(`missing filesystem type in mountinfo line: ${JSON.stringify(line)}`);
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const root = fields[3] as string;
    if (root !== '/') roots.push(root);
  }
  return combinePaths(roots);
}

function malformed(error: string): LocateResult {
  return { ok: false, code: Code.INTERNAL, error };
}
