/**
 * A tiny command framework for the two CLIs: named subcommands with Go-style flags,
 * usage on error, exit codes scripts can rely on (0 ok, 1 failure, 2 usage error).
 */
import { flagUsage, parseFlags, type FlagSpecs, type FlagValues } from './flags.ts';
import { toApiError, Code } from './errors.ts';

/** Where a command writes. */
export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
}

/** One runnable subcommand. */
export interface Command {
  /** Space-separated path, e.g. "entry create". */
  readonly name: string;
  readonly summary: string;
  readonly flags: FlagSpecs;
  run(values: FlagValues, io: CommandIo): Promise<number>;
}

/** Exit codes. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The process's stdout/stderr. */
export const processIo: CommandIo = {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
};

/** Finds the command named by the leading words of argv and runs it. */
export async function runCommands(program: string, commands: readonly Command[], argv: readonly string[], io: CommandIo): Promise<number> {
  const byLength = [...commands].sort((a, b) => b.name.split(' ').length - a.name.split(' ').length);
  const command = byLength.find((c) => {
    const words = c.name.split(' ');
    return words.every((w, i) => argv[i] === w);
  });
  if (command === undefined) {
    const list = commands.map((c) => `  ${c.name.padEnd(18)} ${c.summary}`).join('\n');
    const unknown = argv.length === 0 ? '' : `unknown command "${argv.join(' ')}"\n`;
    io.err(`${unknown}Usage: ${program} <command> [flags]\n\nCommands:\n${list}`);
    return argv.length === 0 || argv[0] === 'help' || argv[0] === '-h' || argv[0] === '--help' ? EXIT_OK : EXIT_USAGE;
  }
  const rest = argv.slice(command.name.split(' ').length);
  if (rest.includes('-h') || rest.includes('-help') || rest.includes('--help')) {
    io.out(`Usage of ${program} ${command.name}:\n${flagUsage(command.flags)}`);
    return EXIT_OK;
  }
  const parsed = parseFlags(rest, command.flags);
  if (!parsed.ok) {
    io.err(`${parsed.error}\nUsage of ${program} ${command.name}:\n${flagUsage(command.flags)}`);
    return EXIT_USAGE;
  }
  try {
    return await command.run(parsed.value, io);
  } catch (err) {
    const apiError = toApiError(err);
    const code = Code[apiError.code] ?? String(apiError.code);
    io.err(apiError.code === Code.INVALID_ARGUMENT || apiError.code === Code.INTERNAL ? `Error: ${apiError.message}` : `Error: ${apiError.message} (${code})`);
    return EXIT_FAILURE;
  }
}
