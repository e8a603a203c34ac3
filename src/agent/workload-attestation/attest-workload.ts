/**
 * The fan-out over workload attestor plugins (SPIRE's `pkg/agent/attestor/workload/workload.go`):
 * every plugin attests the PID concurrently; the selectors of those that succeeded are
 * kept, failures are logged, and only a total failure is an error. This is the ONE place
 * where a plugin's values get their `<plugin name>:` type.
 *
 * It runs on every Workload API call, so it allocates little: one promise and one result
 * slot per plugin, and log fields only when the level is enabled.
 *
 * Each plugin's duration is also recorded, by status, when metrics are given.
 *
 * Log fields: `plugin`, `caller_pid` (not `pid`, which the logger's base already uses for
 * the agent's own PID), `duration_ms`, and `selectors` (a count) or `err`.
 */
import { ApiError, Code, toApiError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { CallRecorder } from '../../common/recorders.ts';
import type { Selector } from '../../common/selector.ts';
import type { AttestTrace, WorkloadAttestorPlugin } from '../../attestors/workload/workload-attestor-plugin.ts';
import type { AttestorReport, TraceStep, WorkloadAttestor } from './workload-attestor.ts';

/** Options of {@link createWorkloadAttestor}. */
export interface WorkloadAttestorOptions {
  /** The configured plugins, in configuration order (which is also the selector order). */
  plugins: readonly WorkloadAttestorPlugin[];
  logger: Logger;
  /** Monotonic milliseconds, for per-plugin durations in logs and metrics. Default `performance.now()`. */
  now?: () => number;
  /** Per-plugin recorders; nothing is recorded when absent. */
  metrics?: WorkloadAttestorMetrics;
}

/** What the fan-out records (SPIRE's `workload_api_workload_attestor{attestor}` call counter). */
export interface WorkloadAttestorMetrics {
  /** The recorder of one plugin's calls (seconds, by status); called once per plugin at creation. */
  attestor(name: string): CallRecorder;
}

/**
 * Creates the {@link WorkloadAttestor} over the given plugins.
 *
 * Results are in plugin order, not completion order, so a caller's selectors are stable.
 * With no plugins every PID has no selectors. If the signal aborts, it rejects with
 * CANCELLED once every plugin has settled (plugins honour the signal, so that is prompt).
 */
export function createWorkloadAttestor(options: WorkloadAttestorOptions): WorkloadAttestor {
  const plugins = options.plugins.slice();
  const { logger } = options;
  const now = options.now ?? (() => performance.now());
  const metrics = options.metrics;
  // Bound once per plugin, so recording on each call is a number update.
  const recorders = metrics === undefined ? undefined : plugins.map((p) => metrics.attestor(p.name));

  async function attest(pid: number, signal: AbortSignal): Promise<Selector[]> {
    if (plugins.length === 0) return [];
    if (signal.aborted) throw cancelled();
    const results = new Array<readonly string[] | undefined>(plugins.length);
    let failures = 0;

    const runs = plugins.map(async (plugin, i) => {
      const started = now();
      try {
        // `await` inside the try also catches a plugin that throws synchronously.
        const values = await plugin.attest(pid, signal);
        results[i] = values;
        recorders?.[i]?.record(Code.OK, (now() - started) / 1000);
        if (logger.isLevelEnabled('debug')) {
          logger.debug(
            { plugin: plugin.name, caller_pid: pid, duration_ms: now() - started, selectors: values.length },
            'workload attestor succeeded',
          );
        }
      } catch (err) {
        failures++;
        recorders?.[i]?.record(toApiError(err).code, (now() - started) / 1000);
        // A caller that went away makes every plugin fail; that is not worth a warning each.
        if (signal.aborted) return;
        logger.warn(
          { plugin: plugin.name, caller_pid: pid, duration_ms: now() - started, err },
          'workload attestor failed',
        );
      }
    });
    await Promise.all(runs);

    if (signal.aborted) throw cancelled();
    if (failures === plugins.length) throw new ApiError(Code.UNAVAILABLE, 'workload attestation failed');

    const selectors: Selector[] = [];
    for (let i = 0; i < plugins.length; i++) {
      const values = results[i];
      if (values === undefined) continue;
      const type = plugins[i]!.name;
      for (const value of values) selectors.push({ type, value });
    }
    return selectors;
  }

  /** One plugin's traced answer: its typed selectors or its error, with its steps. */
  async function traced(plugin: WorkloadAttestorPlugin, run: (trace: AttestTrace) => Promise<string[]>): Promise<AttestorReport> {
    const steps: TraceStep[] = [];
    const trace: AttestTrace = { now, step: (name, durationMs, detail = {}) => void steps.push({ name, durationMs, detail }) };
    const started = now();
    try {
      const values = await run(trace);
      return { plugin: plugin.name, durationMs: now() - started, selectors: values.map((value) => ({ type: plugin.name, value })), steps };
    } catch (err) {
      const { code, message } = toApiError(err);
      return { plugin: plugin.name, durationMs: now() - started, error: { code, message }, steps };
    }
  }

  /** The traced attestation: each plugin on its own, nothing logged or recorded. */
  function explain(pid: number, signal: AbortSignal): Promise<AttestorReport[]> {
    return Promise.all(plugins.map((plugin) => traced(plugin, (trace) => plugin.attest(pid, signal, trace))));
  }

  function explainPod(podUid: string, containerName: string | undefined, signal: AbortSignal): Promise<AttestorReport[]> {
    return Promise.all(
      plugins.flatMap((plugin) => {
        const { attestPod } = plugin;
        return attestPod === undefined ? [] : [traced(plugin, (trace) => attestPod.call(plugin, podUid, containerName, signal, trace))];
      }),
    );
  }

  return { attest, explain, explainPod };
}

function cancelled(): ApiError {
  return new ApiError(Code.CANCELLED, 'workload attestation cancelled');
}
