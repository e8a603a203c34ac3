/**
 * `spiffe-server run -config <file>`: starts the server and runs until SIGTERM/SIGINT.
 */
import type { Command } from '../../common/command.ts';
import { EXIT_OK } from '../../common/command.ts';
import { loadConfigFile } from '../../common/config-file.ts';
import { createLogger } from '../../common/logger.ts';
import { parseServerConfig } from '../config.ts';
import { startServer } from '../server.ts';

export const runCommand: Command = {
  name: 'run',
  summary: 'Runs the server',
  flags: {
    config: { kind: 'string', usage: 'Path to a SPIRE config file', default: 'conf/server/server.conf' },
    expandEnv: { kind: 'bool', usage: 'Expand environment variables in SPIRE config file' },
  },
  async run(v) {
    const tree = await loadConfigFile(v.strings.get('config') as string, { expandEnv: v.bools.get('expandEnv') === true });
    const config = parseServerConfig(tree);
    const logger = createLogger({ name: 'spiffe-server', level: config.logLevel });
    const server = await startServer({ config, logger });
    await new Promise<void>((resolve) => {
      const onSignal = (signal: NodeJS.Signals): void => {
        logger.info({ signal }, 'stopping');
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        resolve();
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });
    await server.stop();
    return EXIT_OK;
  },
};
