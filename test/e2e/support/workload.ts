/** The go-spiffe workload program (test/e2e/workload) as the tests drive it. */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { kubectl, kubectlResult } from './kube.ts';

export interface FetchOut {
  x509?: { id: string; ids: string[]; svidCount: number; chainLength: number; bundleTrustDomains: string[]; notAfter: string };
  jwt?: { id: string; audience: string[]; expiry: string; validated: boolean };
  error?: string;
  code?: string;
  message?: string;
}

/** Runs the program's one-shot fetch (X509 and JWT) inside a workload container (namespace spiffe-e2e unless given). */
export async function fetchIn(deployment: string, audience: string, container = 'workload', namespace = 'spiffe-e2e'): Promise<FetchOut> {
  const r = await kubectlResult(['-n', namespace, 'exec', `deploy/${deployment}`, '-c', container, '--', '/e2e-workload', 'fetch', '-audience', audience]);
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as FetchOut;
  } catch {
    throw new Error(`fetch in ${deployment} printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

/** The JSON lines a pod logged (the watch's events, or the agent's log). */
export async function logLines(namespace: string, target: string, container?: string): Promise<Record<string, unknown>[]> {
  const out = await kubectl(['-n', namespace, 'logs', target, ...(container === undefined ? [] : ['-c', container])]);
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * The JSON lines a container wrote, read from the kubelet's log files on the host (CRI format:
 * "<time> stdout F <line>"): works while the kubelet does not list the container yet, when
 * `kubectl logs` cannot find it.
 */
export function hostLogLines(namespace: string, podPrefix: string, container: string): Record<string, unknown>[] {
  const dir = join(process.env['E2E_ROOT'] ?? '', 'run', 'pod-logs');
  const out: Record<string, unknown>[] = [];
  for (const pod of readdirSync(dir).filter((d) => d.startsWith(`${namespace}_${podPrefix}`))) {
    let files: string[] = [];
    try {
      files = readdirSync(join(dir, pod, container));
    } catch {
      continue;
    }
    for (const f of files) {
      for (const line of readFileSync(join(dir, pod, container, f), 'utf8').split('\n')) {
        const json = / stdout [FP] (\{.*)$/.exec(line)?.[1];
        if (json !== undefined) out.push(JSON.parse(json) as Record<string, unknown>);
      }
    }
  }
  return out;
}
