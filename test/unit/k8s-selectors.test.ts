import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { containerIdHost, findContainer, parsePodList, type PodList } from '../../src/attestors/workload/k8s/pod-list.ts';
import { containerSelectorValues, podSelectorValues } from '../../src/attestors/workload/k8s/selectors.ts';

const PODS_JSON = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'kubelet', 'pods.json'), 'utf8');

function podList(): PodList {
  const parsed = parsePodList(PODS_JSON);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

const NGINX_ID = 'docker.io/library/nginx@sha256:4c0fdaa8b6341bfdeca5f18f7837462c80cff90527ee35ef185571e1c327beac';
const PROXY_ID = 'docker.io/istio/proxyv2@sha256:9f6c4b1d2e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4';
const hex = (d: string): string => d.repeat(64);

describe('parsing a recorded /pods response', () => {
  it('keeps running and pending pods, drops terminal pods and pods without a UID', () => {
    const list = podList();
    expect([...list.pods.values()].map((p) => `${p.namespace}/${p.name}`)).toEqual([
      'demo/web-7d4b9c8f6-x2x7q',
      'spire/spire-agent-8xk2p',
      'kube-system/kube-apiserver-node-a',
      'demo/slow-start',
      'payments/api-0',
    ]);
    expect(list.terminalPods).toBe(2);
    expect(list.podsWithoutUid).toBe(1);
  });

  it('indexes containers by the URL host of containerID, init containers included, ephemeral not', () => {
    const list = podList();
    expect(list.containers.get(hex('3'))?.status.name).toBe('web');
    expect(list.containers.get(hex('1'))).toMatchObject({ init: true, status: { name: 'istio-init' } });
    expect(list.containers.get(hex('7'))?.pod.name).toBe('api-0'); // cri-o://
    expect(list.containers.has(hex('6'))).toBe(false); // Succeeded pod
    expect(list.containers.has(hex('8'))).toBe(false); // ephemeral
    expect(list.pods.get('7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910')?.ephemeralContainerIds).toEqual([hex('8')]);
    expect(list.duplicateContainerIds.size).toBe(0);
  });

  it('finds a container in a pod: regular containers, then init containers', () => {
    const pod = podList().pods.get('5ce4a6e2-1f07-4b7e-9a1c-3f5d2b8e9c10')!;
    expect(findContainer(pod, hex('2'))).toMatchObject({ init: false, status: { name: 'istio-proxy' } });
    expect(findContainer(pod, hex('1'))).toMatchObject({ init: true, status: { name: 'istio-init' } });
    expect(findContainer(pod, hex('4'))).toBeUndefined();
  });

  it('marks a container listed by two pods as a duplicate', () => {
    const doc = JSON.parse(PODS_JSON) as { items: Array<{ status: { containerStatuses?: Array<{ containerID?: string }> } }> };
    doc.items[1]!.status.containerStatuses![0]!.containerID = `containerd://${hex('3')}`;
    const parsed = parsePodList(JSON.stringify(doc));
    expect(parsed.ok && [...parsed.value.duplicateContainerIds]).toEqual([hex('3')]);
  });

  const bad: Array<[string, string, string]> = [
    ['not JSON', '{"items": [', 'unable to parse the kubelet response'],
    ['not an object', '[]', 'expected an object'],
    ['items not an array', '{"items": {}}', 'expected an items array'],
  ];
  for (const [name, text, error] of bad) {
    it(`rejects a response that is ${name}`, () => {
      const parsed = parsePodList(text);
      expect(parsed.ok).toBe(false);
      if (!parsed.ok) expect(parsed.error).toContain(error);
    });
  }

  it('accepts items: null (Go writes a nil slice so)', () => {
    const parsed = parsePodList('{"kind":"PodList","items":null}');
    expect(parsed.ok && parsed.value.pods.size).toBe(0);
  });
});

describe('containerIdHost', () => {
  const cases: Array<[string, string]> = [
    [`containerd://${hex('a')}`, hex('a')],
    [`docker://${hex('b')}`, hex('b')],
    [`cri-o://${hex('c')}`, hex('c')],
    ['containerd://abc/extra?x#y', 'abc'],
    ['containerd://user@abc', 'abc'],
    ['abc', ''],
    ['', ''],
  ];
  for (const [input, host] of cases) {
    it(`${JSON.stringify(input)} → ${JSON.stringify(host)}`, () => expect(containerIdHost(input)).toBe(host));
  }
});

describe('pod-level selectors', () => {
  const cases: Array<[string, string, string[]]> = [
    [
      'deployment pod with a sidecar and an init container',
      '5ce4a6e2-1f07-4b7e-9a1c-3f5d2b8e9c10',
      [
        'sa:web',
        'ns:demo',
        'node-name:node-a',
        'pod-uid:5ce4a6e2-1f07-4b7e-9a1c-3f5d2b8e9c10',
        'pod-name:web-7d4b9c8f6-x2x7q',
        'pod-image-count:2',
        'pod-init-image-count:1',
        'pod-image:docker.io/istio/proxyv2:1.24.0',
        `pod-image:${PROXY_ID}`,
        'pod-image:docker.io/library/nginx:1.27',
        `pod-image:${NGINX_ID}`,
        'pod-init-image:docker.io/istio/proxyv2:1.24.0',
        `pod-init-image:${PROXY_ID}`,
        'pod-label:app:web',
        'pod-label:pod-template-hash:7d4b9c8f6',
        'pod-label:security.istio.io/tlsMode:istio',
        'pod-owner:ReplicaSet:web-7d4b9c8f6',
        'pod-owner-uid:ReplicaSet:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
      ],
    ],
    [
      'static pod owned by its node, no service account',
      'e3b0c442-98fc-4c14-9afb-f4c8996fb924',
      [
        'sa:',
        'ns:kube-system',
        'node-name:node-a',
        'pod-uid:e3b0c442-98fc-4c14-9afb-f4c8996fb924',
        'pod-name:kube-apiserver-node-a',
        'pod-image-count:1',
        'pod-init-image-count:0',
        'pod-image:registry.k8s.io/kube-apiserver:v1.33.1',
        'pod-image:registry.k8s.io/kube-apiserver@sha256:1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef',
        'pod-label:component:kube-apiserver',
        'pod-label:tier:control-plane',
        'pod-owner:Node:node-a',
        'pod-owner-uid:Node:9d2f5c7e-0a1b-4c3d-8e5f-6a7b8c9d0e1f',
      ],
    ],
    [
      'pending pod: the empty imageID is a value, as in SPIRE',
      '1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5',
      [
        'sa:default',
        'ns:demo',
        'node-name:node-a',
        'pod-uid:1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5',
        'pod-name:slow-start',
        'pod-image-count:1',
        'pod-init-image-count:0',
        'pod-image:ghcr.io/example/slow:2.0',
        'pod-image:',
        'pod-label:app:slow',
      ],
    ],
    [
      'statefulset pod on CRI-O: the ephemeral container adds nothing',
      '7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910',
      [
        'sa:api',
        'ns:payments',
        'node-name:node-a',
        'pod-uid:7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910',
        'pod-name:api-0',
        'pod-image-count:1',
        'pod-init-image-count:0',
        'pod-image:quay.io/example/api:v3',
        'pod-image:quay.io/example/api@sha256:8888888888888888888888888888888888888888888888888888888888888888',
        'pod-label:app.kubernetes.io/name:api',
        'pod-label:statefulset.kubernetes.io/pod-name:api-0',
        'pod-owner:StatefulSet:api',
        'pod-owner-uid:StatefulSet:2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091',
      ],
    ],
  ];
  for (const [name, uid, expected] of cases) {
    it(name, () => {
      const pod = podList().pods.get(uid);
      expect(pod).toBeDefined();
      expect(podSelectorValues(pod!)).toEqual(expected);
    });
  }

  it('the same image in two containers is one pod-image value each for image and imageID', () => {
    const doc = JSON.parse(PODS_JSON) as { items: Array<{ status: { containerStatuses: Array<{ image: string; imageID: string }> } }> };
    const statuses = doc.items[0]!.status.containerStatuses;
    statuses[0]!.image = statuses[1]!.image;
    statuses[0]!.imageID = statuses[1]!.imageID;
    const parsed = parsePodList(JSON.stringify(doc));
    if (!parsed.ok) throw new Error(parsed.error);
    const values = podSelectorValues(parsed.value.pods.get('5ce4a6e2-1f07-4b7e-9a1c-3f5d2b8e9c10')!);
    expect(values.filter((v) => v.startsWith('pod-image:'))).toEqual(['pod-image:docker.io/library/nginx:1.27', `pod-image:${NGINX_ID}`]);
    expect(values).toContain('pod-image-count:2');
  });
});

describe('container-level selectors', () => {
  const cases: Array<[string, string, string[]]> = [
    ['app container', hex('3'), ['container-name:web', 'container-image:docker.io/library/nginx:1.27', `container-image:${NGINX_ID}`]],
    ['sidecar', hex('2'), ['container-name:istio-proxy', 'container-image:docker.io/istio/proxyv2:1.24.0', `container-image:${PROXY_ID}`]],
    ['init container', hex('1'), ['container-name:istio-init', 'container-image:docker.io/istio/proxyv2:1.24.0', `container-image:${PROXY_ID}`]],
  ];
  for (const [name, id, expected] of cases) {
    it(name, () => {
      const match = podList().containers.get(id);
      expect(match).toBeDefined();
      expect(containerSelectorValues(match!.status)).toEqual(expected);
    });
  }

  it('image equal to imageID yields one value', () => {
    expect(containerSelectorValues({ name: 'c', image: 'x@sha256:1', imageId: 'x@sha256:1', containerId: 'id' })).toEqual([
      'container-name:c',
      'container-image:x@sha256:1',
    ]);
  });
});
