/**
 * Structured JSON logs (pino). Secrets never reach a log line: known secret-bearing
 * field names are redacted wherever they appear.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** Field names whose values are censored in every log line. */
export const REDACTED_FIELDS: readonly string[] = [
  'token',
  'join_token',
  'private_key',
  'privateKey',
  'key',
  'x509_svid_key',
  'svid',
  'authorization',
  'password',
];

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Where lines go; defaults to stderr so stdout stays free for program output. */
  destination?: NodeJS.WritableStream;
}

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

/** Normalises SPIRE's log_level spellings ("DEBUG", "info", "WARN") to pino levels. */
export function normaliseLogLevel(level: string): LevelWithSilent | undefined {
  const lower = level.toLowerCase();
  const mapped = lower === 'warning' ? 'warn' : lower;
  return LEVELS.has(mapped) ? (mapped as LevelWithSilent) : undefined;
}

/** Creates the process logger. */
export function createLogger(opts: LoggerOptions): Logger {
  const paths = REDACTED_FIELDS.flatMap((f) => [f, `*.${f}`]);
  return pino(
    {
      name: opts.name,
      level: normaliseLogLevel(opts.level ?? 'info') ?? 'info',
      base: { pid: process.pid, name: opts.name },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths, censor: '[redacted]' },
    },
    opts.destination ?? pino.destination({ dest: 2, sync: true }),
  );
}
