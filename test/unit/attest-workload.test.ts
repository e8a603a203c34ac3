import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createWorkloadAttestor } from '../../src/agent/workload-attestation/attest-workload.ts';
import type { WorkloadAttestorPlugin } from '../../src/attestors/workload/workload-attestor-plugin.ts';
import { ApiError, Code } from '../../src/common/errors.ts';
import { createLogger, type Logger } from '../../src/common/logger.ts';
import { selectorKey } from '../../src/common/selector.ts';

interface LogLine {
  level: string;
  msg: string;
  plugin?: string;
  caller_pid?: number;
  duration_ms?: number;
  selectors?: number;
  err?: { message: string };
}

function captureLogs(level = 'debug'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: createLogger({ name: 'test', level, destination }), lines };
}

/** A plugin driven by a table: values to return, or an error to throw. */
function fake(name: string, outcome: string[] | Error, delayMs = 0): WorkloadAttestorPlugin {
  return {
    name,
    async attest() {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (outcome instanceof Error) throw outcome;
      return outcome;
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<{ code: Code; message: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ApiError)) throw new Error(`expected an ApiError, got ${String(err)}`);
  return { code: err.code, message: err.message };
}

const signal = (): AbortSignal => new AbortController().signal;
const notFound = new ApiError(Code.NOT_FOUND, 'unix: process 7 not found');
const kubeletDown = new ApiError(Code.UNAVAILABLE, 'k8s: kubelet unreachable');

describe('createWorkloadAttestor', () => {
  const successes: Array<[string, WorkloadAttestorPlugin[], string[]]> = [
    ['yields no selectors without plugins', [], []],
    [
      'adds each plugin name as the selector type, once',
      [fake('unix', ['uid:1000', 'gid:1000']), fake('k8s', ['ns:default'])],
      ['unix:uid:1000', 'unix:gid:1000', 'k8s:ns:default'],
    ],
    [
      'keeps the selectors of the plugin that succeeded',
      [fake('unix', ['uid:0']), fake('k8s', kubeletDown)],
      ['unix:uid:0'],
    ],
    [
      'orders selectors by plugin, not by completion',
      [fake('slow', ['a:1'], 30), fake('fast', ['b:2'])],
      ['slow:a:1', 'fast:b:2'],
    ],
    ['counts a plugin that succeeds with no values as a success', [fake('k8s', []), fake('unix', notFound)], []],
  ];
  for (const [behaviour, plugins, expected] of successes) {
    it(behaviour, async () => {
      const { logger } = captureLogs();
      const selectors = await createWorkloadAttestor({ plugins, logger }).attest(7, signal());
      expect(selectors.map(selectorKey)).toEqual(expected);
    });
  }

  it('returns structured selectors whose value keeps its own colons', async () => {
    const { logger } = captureLogs();
    const attestor = createWorkloadAttestor({ plugins: [fake('unix', ['uid:1000'])], logger });
    expect(await attestor.attest(7, signal())).toEqual([{ type: 'unix', value: 'uid:1000' }]);
  });

  it('logs a failed plugin as a warning with its name, the pid and the error', async () => {
    const { logger, lines } = captureLogs('info');
    await createWorkloadAttestor({ plugins: [fake('unix', ['uid:0']), fake('k8s', kubeletDown)], logger }).attest(
      7,
      signal(),
    );
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'warn',
      msg: 'workload attestor failed',
      plugin: 'k8s',
      caller_pid: 7,
      err: { message: 'k8s: kubelet unreachable' },
    });
  });

  const allFail: Array<[string, WorkloadAttestorPlugin[]]> = [
    ['fails with UNAVAILABLE when the only plugin fails', [fake('unix', notFound)]],
    ['fails with UNAVAILABLE when every plugin fails', [fake('unix', notFound), fake('k8s', kubeletDown)]],
    [
      'counts a plugin that throws synchronously as failed',
      [
        {
          name: 'broken',
          attest: () => {
            throw new Error('boom');
          },
        },
      ],
    ],
  ];
  for (const [behaviour, plugins] of allFail) {
    it(behaviour, async () => {
      const { logger, lines } = captureLogs('info');
      expect(await rejection(createWorkloadAttestor({ plugins, logger }).attest(7, signal()))).toEqual({
        code: Code.UNAVAILABLE,
        message: 'workload attestation failed',
      });
      expect(lines.map((l) => [l.level, l.plugin])).toEqual(plugins.map((p) => ['warn', p.name]));
    });
  }

  it('runs the plugins concurrently', async () => {
    let started = 0;
    let releaseAll: () => void = () => {};
    const bothStarted = new Promise<void>((resolve) => (releaseAll = resolve));
    const waiter = (name: string): WorkloadAttestorPlugin => ({
      name,
      async attest() {
        if (++started === 2) releaseAll();
        await bothStarted; // deadlocks (test timeout) if plugins ran one after another
        return ['x:1'];
      },
    });
    const { logger } = captureLogs();
    const selectors = await createWorkloadAttestor({ plugins: [waiter('a'), waiter('b')], logger }).attest(7, signal());
    expect(selectors.map(selectorKey)).toEqual(['a:x:1', 'b:x:1']);
  });

  it('records each plugin duration at debug level', async () => {
    const { logger, lines } = captureLogs('debug');
    const ticks = [100, 100, 112.5, 130];
    const now = (): number => ticks.shift() ?? 0;
    await createWorkloadAttestor({ plugins: [fake('unix', ['uid:0']), fake('k8s', ['ns:a', 'ns:b'])], logger, now }).attest(
      7,
      signal(),
    );
    const fields = lines.map(({ level, msg, plugin, caller_pid, duration_ms, selectors }) => {
      return { level, msg, plugin, caller_pid, duration_ms, selectors };
    });
    expect(fields).toEqual([
      { level: 'debug', msg: 'workload attestor succeeded', plugin: 'unix', caller_pid: 7, duration_ms: 12.5, selectors: 1 },
      { level: 'debug', msg: 'workload attestor succeeded', plugin: 'k8s', caller_pid: 7, duration_ms: 30, selectors: 2 },
    ]);
  });

  it('logs nothing for successes at info level', async () => {
    const { logger, lines } = captureLogs('info');
    await createWorkloadAttestor({ plugins: [fake('unix', ['uid:0'])], logger }).attest(7, signal());
    expect(lines).toEqual([]);
  });

  it('passes the pid and the signal to every plugin', async () => {
    const seen: Array<[number, AbortSignal]> = [];
    const spy: WorkloadAttestorPlugin = {
      name: 'spy',
      async attest(pid, s) {
        seen.push([pid, s]);
        return [];
      },
    };
    const { logger } = captureLogs();
    const s = signal();
    await createWorkloadAttestor({ plugins: [spy, spy], logger }).attest(42, s);
    expect(seen).toEqual([
      [42, s],
      [42, s],
    ]);
  });

  it('fails with CANCELLED, without warnings, when the caller goes away', async () => {
    const controller = new AbortController();
    const waitsForAbort: WorkloadAttestorPlugin = {
      name: 'unix',
      attest: (_pid, s) =>
        new Promise((_resolve, reject) => {
          s.addEventListener('abort', () => reject(new ApiError(Code.CANCELLED, 'unix: attestation of process 7 cancelled')));
        }),
    };
    const { logger, lines } = captureLogs('info');
    const pending = createWorkloadAttestor({ plugins: [waitsForAbort, fake('k8s', ['ns:a'])], logger }).attest(
      7,
      controller.signal,
    );
    controller.abort();
    expect(await rejection(pending)).toEqual({ code: Code.CANCELLED, message: 'workload attestation cancelled' });
    expect(lines).toEqual([]);
  });

  it('does not start plugins for an already aborted signal', async () => {
    const controller = new AbortController();
    controller.abort();
    let calls = 0;
    const counter: WorkloadAttestorPlugin = {
      name: 'unix',
      async attest() {
        calls++;
        return [];
      },
    };
    const { logger } = captureLogs();
    const attestor = createWorkloadAttestor({ plugins: [counter], logger });
    expect(await rejection(attestor.attest(7, controller.signal))).toEqual({
      code: Code.CANCELLED,
      message: 'workload attestation cancelled',
    });
    expect(calls).toBe(0);
  });

  it('is not affected by later changes to the plugin array it was given', async () => {
    const plugins = [fake('unix', ['uid:0'])];
    const { logger } = captureLogs();
    const attestor = createWorkloadAttestor({ plugins, logger });
    plugins.push(fake('k8s', ['ns:a']));
    expect((await attestor.attest(7, signal())).map(selectorKey)).toEqual(['unix:uid:0']);
  });
});

describe('createWorkloadAttestor: explain', () => {
  it('gives every plugin its own report: typed selectors or the error, with the steps it traced', async () => {
    const traced: WorkloadAttestorPlugin = {
      name: 'k8s',
      async attest(_pid, _signal, trace) {
        trace?.step('cgroup', 0.5, { container_id: 'abc' });
        return ['ns:demo'];
      },
    };
    const { logger, lines } = captureLogs();
    const attestor = createWorkloadAttestor({ plugins: [fake('unix', notFound), traced], logger, now: () => 5 });
    const reports = await attestor.explain(7, signal());
    expect(reports).toEqual([
      { plugin: 'unix', durationMs: 0, error: { code: Code.NOT_FOUND, message: 'unix: process 7 not found' }, steps: [] },
      { plugin: 'k8s', durationMs: 0, selectors: [{ type: 'k8s', value: 'ns:demo' }], steps: [{ name: 'cgroup', durationMs: 0.5, detail: { container_id: 'abc' } }] },
    ]);
    // Explaining is not serving: nothing logged.
    expect(lines).toEqual([]);
  });
});
