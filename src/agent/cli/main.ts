/**
 * The `spiffe-agent` command line, mirroring `spire-agent`'s commands and flags.
 */
import { applyHeapFlags } from '../heap-flags.ts';
import { processIo, runCommands } from '../../common/command.ts';

// `run`: the agent's heap and malloc settings go in before the commands' modules are evaluated,
// which is why those are imported here and not statically (static imports are evaluated before
// any line of this module). See applyHeapFlags and applyMallocSettings.
if (process.argv[2] === 'run') {
  applyHeapFlags();
  (await import('../malloc-settings.ts')).applyMallocSettings();
}
const { agentApiCommands } = await import('./api-commands.ts');
const { healthcheckCommand } = await import('./healthcheck-command.ts');
const { runCommand } = await import('./run-command.ts');
const { debugCommands } = await import('./debug-commands.ts');

const code = await runCommands('spiffe-agent', [runCommand, ...agentApiCommands, healthcheckCommand, ...debugCommands()], process.argv.slice(2), processIo);
process.exitCode = code;
