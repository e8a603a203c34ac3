/**
 * The `spiffe-agent` command line, mirroring `spire-agent`'s commands and flags.
 */
import { processIo, runCommands } from '../../common/command.ts';
import { agentApiCommands } from './api-commands.ts';
import { healthcheckCommand } from './healthcheck-command.ts';
import { runCommand } from './run-command.ts';

const code = await runCommands('spiffe-agent', [runCommand, ...agentApiCommands, healthcheckCommand], process.argv.slice(2), processIo);
process.exitCode = code;
