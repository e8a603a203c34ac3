/**
 * The `spiffe-server` command line, mirroring `spire-server`'s commands and flags.
 */
import 'reflect-metadata';
import { processIo, runCommands } from '../../common/command.ts';
import { adminCommands } from './admin-commands.ts';
import { entryCommands } from './entry-command.ts';
import { mintCommands } from './mint-commands.ts';
import { runCommand } from './run-command.ts';

const commands = [runCommand, ...entryCommands, ...adminCommands, ...mintCommands];

const code = await runCommands('spiffe-server', commands, process.argv.slice(2), processIo);
process.exitCode = code;
