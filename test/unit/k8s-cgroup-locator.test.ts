import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { locateFromCgroup, type LocateResult } from '../../src/attestors/workload/k8s/cgroup-locator.ts';
import { locateFromMountinfo } from '../../src/attestors/workload/k8s/mountinfo-locator.ts';
import { Code } from '../../src/common/errors.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'cgroups');
const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');

const POD = '2c48913c-b29f-11e7-9350-020968147796';
const KIND_POD = 'a2830d0d-b0f0-4ff0-81b5-0ee4e299cf80';
const CID = '9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961';
const CID2 = '7654321089abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const KIND_NODE = '93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26';

type Expected = { podUid?: string; containerId?: string } | { code: Code; message: string };

function check(result: LocateResult, expected: Expected): void {
  if ('code' in expected) {
    expect(result.ok, 'expected an error').toBe(false);
    if (!result.ok) {
      expect(result.code).toBe(expected.code);
      expect(result.error).toContain(expected.message);
    }
    return;
  }
  expect(result).toEqual({ ok: true, value: expected });
}

describe('cgroup locator over /proc/<pid>/cgroup fixtures', () => {
  const cases: Array<[string, Expected]> = [
    ['cgroupfs-v1-burstable.cgroup', { podUid: POD, containerId: CID }],
    ['cgroupfs-v1-guaranteed.cgroup', { podUid: POD, containerId: CID }],
    ['cgroupfs-v1-besteffort.cgroup', { podUid: POD, containerId: CID }],
    ['cgroupfs-v2.cgroup', { podUid: POD, containerId: CID }],
    ['systemd-v1-containerd.cgroup', { podUid: POD, containerId: CID }],
    ['systemd-v2-containerd.cgroup', { podUid: POD, containerId: CID }],
    ['systemd-v2-crio.cgroup', { podUid: POD, containerId: CID }],
    // conmon runs in its own scope named after the container it monitors (spire#4088).
    ['systemd-v2-crio-conmon.cgroup', { podUid: POD, containerId: CID }],
    ['systemd-v2-docker.cgroup', { podUid: POD, containerId: CID }],
    ['systemd-v2-guaranteed.cgroup', { podUid: POD, containerId: CID }],
    ['systemd-v2-kubelet-slice.cgroup', { podUid: POD, containerId: CID }],
    ['systemd-colon-separated.cgroup', { podUid: POD, containerId: CID }],
    // kind: the node container's ID comes first in the path; the LAST 64-hex segment wins,
    // and the pod line overrides the pod-less `0::/docker/<node>/system.slice/…` line.
    ['kind-nested.cgroup', { podUid: KIND_POD, containerId: CID }],
    ['kind-nested-v2-systemd.cgroup', { podUid: POD, containerId: CID }],
    ['pod-uid-override.cgroup', { podUid: KIND_POD, containerId: CID }],
    ['pod-uid-then-podless.cgroup', { podUid: KIND_POD, containerId: CID }],
    // cgroup namespace: no pod UID, the caller scans every pod for the container.
    ['crio-namespaced.cgroup', { containerId: CID }],
    ['hybrid-v1-v2.cgroup', { podUid: POD, containerId: CID }],
    ['docker-v1-no-pod.cgroup', { containerId: CID }],
    ['id-not-last-segment.cgroup', { podUid: POD, containerId: CID }],
    ['not-in-container.cgroup', {}],
    ['not-in-container-v2.cgroup', {}],
    ['this-machine.cgroup', {}],
    ['empty.cgroup', {}],
    // `_` is a word character: no boundary between it and the hex run.
    ['underscore-before-id.cgroup', {}],
    // 65 hex digits: no word boundary after the 64th.
    ['id-too-long.cgroup', {}],
    // the empty segment after the trailing slash ends the walk at once.
    ['trailing-slash.cgroup', {}],
    ['conflicting-containers.cgroup', { code: Code.FAILED_PRECONDITION, message: `multiple container IDs found ("${CID}", "${CID2}")` }],
    ['conflicting-pods.cgroup', { code: Code.FAILED_PRECONDITION, message: `multiple pod UIDs found ("${POD}", "${KIND_POD}")` }],
    ['malformed-line.cgroup', { code: Code.INTERNAL, message: 'cgroup entry contains 1 field, but expected at least 3: "broken-line"' }],
  ];

  for (const [name, expected] of cases) {
    it(name, () => check(locateFromCgroup(fixture(name)), expected));
  }

  it('the kind fixture really holds the node container ID before the pod path', () => {
    expect(fixture('kind-nested.cgroup')).toContain(`/docker/${KIND_NODE}/kubepods/`);
  });
});

describe('cgroup locator edge cases', () => {
  const cases: Array<[string, string, Expected]> = [
    ['pod UID with underscores becomes dashed', `0::/kubepods-pod${POD.replaceAll('-', '_')}.slice/${CID}\n`, { podUid: POD, containerId: CID }],
    ['mixed dash/underscore separators are accepted', `0::/pod2c48913c_b29f-11e7_9350-020968147796/${CID}`, { podUid: POD, containerId: CID }],
    ['no final newline', `0::/kubepods/pod${POD}/${CID}`, { podUid: POD, containerId: CID }],
    ['a path with a colon keeps it (split at the first two only)', `1:name=systemd:/x:y/pod${POD}/${CID}`, { podUid: POD, containerId: CID }],
    ['pod UID after the container is not the pod', `0::/${CID}/pod${POD}`, { containerId: CID }],
    ['an empty segment between pod and container hides the pod', `0::/kubepods/pod${POD}//${CID}`, { containerId: CID }],
    ['the pod UID needs a word boundary too', `0::/kubepods/xpod${POD}/${CID}`, { containerId: CID }],
    ['a 63-hex segment is not a container ID', `0::/kubepods/pod${POD}/${CID.slice(1)}`, {}],
    ['uppercase hex is a container ID (case preserved)', `0::/kubepods/pod${POD}/${CID.toUpperCase()}`, { podUid: POD, containerId: CID.toUpperCase() }],
    ['relative path with pod', `0::/../pod${POD}/${CID}`, { podUid: POD, containerId: CID }],
    ['same container on every line, pod-less lines before the pod line', `2:rdma:/\n1:cpu:/../crio-${CID}.scope\n0::/kubepods/pod${POD}/${CID}\n`, { podUid: POD, containerId: CID }],
    // Documented difference from SPIRE: an ID-less line after a pod-less container line is no conflict.
    ['an ID-less line after a pod-less container line is ignored', `1:cpu:/docker/${CID}\n0::/\n`, { containerId: CID }],
    ['two pod-less containers conflict', `1:cpu:/docker/${CID}\n0::/docker/${CID2}\n`, { code: Code.FAILED_PRECONDITION, message: 'multiple container IDs found' }],
    ['a line with two fields is an error', `0::/\n1:cpu\n`, { code: Code.INTERNAL, message: 'contains 2 fields' }],
    ['an empty line in the middle is an error', `0::/\n\n1:cpu:/\n`, { code: Code.INTERNAL, message: 'contains 1 field' }],
  ];
  for (const [name, text, expected] of cases) {
    it(name, () => check(locateFromCgroup(text), expected));
  }
});

describe('mountinfo locator (fallback)', () => {
  const cases: Array<[string, Expected]> = [
    ['k8s-v1.mountinfo', { podUid: POD, containerId: CID }],
    ['k8s-v2.mountinfo', { podUid: POD, containerId: CID }],
    ['cgroup-mounts-at-slash.mountinfo', {}],
    ['this-machine.mountinfo', {}],
    ['malformed.mountinfo', { code: Code.INTERNAL, message: 'missing separator' }],
  ];
  for (const [name, expected] of cases) {
    it(name, () => check(locateFromMountinfo(fixture(name)), expected));
  }

  it('keeps an empty mount source (tmpfs) without failing', () => {
    expect(fixture('k8s-v1.mountinfo')).toContain('tmpfs  rw');
  });

  it('ignores non-cgroup mounts whatever their root', () => {
    const text = `10 1 0:5 /kubepods/pod${POD}/${CID} /x rw - overlay overlay rw\n`;
    check(locateFromMountinfo(text), {});
  });

  it('reports conflicting cgroup mounts', () => {
    const text =
      `10 1 0:5 /kubepods/pod${POD}/${CID} /a rw - cgroup cgroup rw,cpu\n` +
      `11 1 0:6 /kubepods/pod${POD}/${CID2} /b rw - cgroup2 cgroup2 rw\n`;
    check(locateFromMountinfo(text), { code: Code.FAILED_PRECONDITION, message: 'multiple container IDs found' });
  });
});
