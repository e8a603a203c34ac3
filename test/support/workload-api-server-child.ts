/**
 * A Workload API server in its own process (for tests that need it elsewhere, e.g. inside
 * another PID namespace). Prints "ready" once listening; closes on SIGTERM.
 *
 *   node workload-api-server-child.ts <socketPath>
 */
import { pino } from 'pino';
import { startWorkloadApi } from '../../src/agent/workload-api/workload-api.ts';
import { FakeIdentitySource, snapshot, uidAttestor } from './workload-api-fixtures.ts';

const [socketPath] = process.argv.slice(2);
if (socketPath === undefined) throw new Error('usage: workload-api-server-child.ts <socketPath>');
const server = await startWorkloadApi({
  socketPath,
  source: new FakeIdentitySource(snapshot('example.org')),
  attestor: uidAttestor(),
  logger: pino({ level: 'silent' }),
});
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
process.stdout.write('ready\n');
