/**
 * Selector values of the `k8s` workload attestor, without the `k8s:` prefix (SPIRE's
 * `getSelectorValuesFromPodInfo` and `getSelectorValuesFromWorkloadContainerStatus`).
 * Pure functions of the immutable pod records.
 *
 * Pod-level: `sa`, `ns`, `node-name` (spec.nodeName), `pod-uid`, `pod-name`,
 * `pod-image-count` and `pod-init-image-count` (the number of statuses), `pod-image` and
 * `pod-init-image` (every distinct `image` AND `imageID`; an empty `imageID` yields an
 * empty value, as in SPIRE), `pod-label:<k>:<v>`, and per owner reference
 * `pod-owner:<Kind>:<name>` and `pod-owner-uid:<Kind>:<uid>`.
 * Container-level: `container-name`, `container-image` (distinct `image` and `imageID`).
 * Ephemeral containers contribute nothing.
 */
import type { ContainerStatusRecord, PodRecord } from './pod-list.ts';

/** The pod-level selector values of a pod, in SPIRE's order. */
export function podSelectorValues(pod: PodRecord): string[] {
  const values: string[] = [
    `sa:${pod.serviceAccountName}`,
    `ns:${pod.namespace}`,
    `node-name:${pod.nodeName}`,
    `pod-uid:${pod.uid}`,
    `pod-name:${pod.name}`,
    `pod-image-count:${pod.containerStatuses.length}`,
    `pod-init-image-count:${pod.initContainerStatuses.length}`,
  ];
  for (const image of imageIdentifiers(pod.containerStatuses)) values.push(`pod-image:${image}`);
  for (const image of imageIdentifiers(pod.initContainerStatuses)) values.push(`pod-init-image:${image}`);
  for (const [key, value] of pod.labels) values.push(`pod-label:${key}:${value}`);
  for (const owner of pod.owners) {
    values.push(`pod-owner:${owner.kind}:${owner.name}`, `pod-owner-uid:${owner.kind}:${owner.uid}`);
  }
  return values;
}

/** The container-level selector values of the workload's container. */
export function containerSelectorValues(status: ContainerStatusRecord): string[] {
  const values: string[] = [`container-name:${status.name}`];
  for (const image of imageIdentifiers([status])) values.push(`container-image:${image}`);
  return values;
}

/**
 * Every distinct `image` and `imageID` of the statuses, in order of appearance. Both are
 * emitted so entries can pin a digest (`…@sha256:…`) or name a tag before the digest is
 * known (spire#2026).
 */
function imageIdentifiers(statuses: readonly ContainerStatusRecord[]): Set<string> {
  const images = new Set<string>();
  for (const status of statuses) {
    images.add(status.image);
    images.add(status.imageId);
  }
  return images;
}
