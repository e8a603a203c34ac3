/** The go-spiffe workload program (test/e2e/workload) as the tests drive it. */
import { kubectl, kubectlResult } from './kube.ts';

export interface FetchOut {
  x509?: { id: string; ids: string[]; svidCount: number; chainLength: number; bundleTrustDomains: string[]; notAfter: string };
  jwt?: { id: string; audience: string[]; expiry: string; validated: boolean };
  error?: string;
  code?: string;
  message?: string;
}

/** Runs the program's one-shot fetch (X509 and JWT) inside a workload container of namespace spiffe-e2e. */
export async function fetchIn(deployment: string, audience: string): Promise<FetchOut> {
  const r = await kubectlResult(['-n', 'spiffe-e2e', 'exec', `deploy/${deployment}`, '-c', 'workload', '--', '/e2e-workload', 'fetch', '-audience', audience]);
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
