/**
 * Failures caused by a configured path, told in the operator's words: which config field,
 * what is wrong with the path, and how to fix it (`config: agent.socket_path: "/x" is not a
 * directory; …`), instead of a bare `EEXIST: file already exists, mkdir '/x'`.
 *
 * Components throw {@link PathError} (or let a Node errno error escape); the code that knows
 * which config field the path came from turns either into a config error with
 * {@link configPathError}. The sentences are built by a pure function, {@link describePathFailure}.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname, parse } from 'node:path';
import { ApiError, Code } from './errors.ts';

/** What the path is used as; it decides the wording of the fix. */
export type PathUse = 'directory' | 'read' | 'write' | 'socket';

/** One failure of a filesystem call on a configured path. */
export interface PathFailure {
  /** The Node errno code (`ENOTDIR`), when the failure came from a system call. */
  readonly code: string | undefined;
  /** The configured path. */
  readonly path: string;
  /** The nearest ancestor of `path` (or `path` itself) that exists but is not a directory, when one does. */
  readonly blocker?: string | undefined;
  /** The original error message, used when the code is not one we explain. */
  readonly message: string;
}

/**
 * A failure caused by a configured path. `detail` is the sentence without any prefix; the
 * message is `<context>: <detail>` (`ca: upstream key file: "/k.pem" does not exist`) until
 * {@link configPathError} names the config field instead.
 */
export class PathError extends ApiError {
  readonly detail: string;
  readonly path: string;

  constructor(path: string, detail: string, context = 'path') {
    super(Code.FAILED_PRECONDITION, `${context}: ${detail}`);
    this.name = 'PathError';
    this.path = path;
    this.detail = detail;
  }
}

const VERB: Record<PathUse, string> = {
  directory: 'create or write',
  read: 'read',
  write: 'write',
  socket: 'create a socket in',
};

/** The sentence (problem; fix) for a failed filesystem call on a configured path. Pure. */
export function describePathFailure(use: PathUse, failure: PathFailure): string {
  const p = JSON.stringify(failure.path);
  const { blocker } = failure;
  switch (failure.code) {
    case 'EEXIST':
    case 'ENOTDIR':
      if (blocker !== undefined && blocker === failure.path) {
        return use === 'directory'
          ? `${p} exists and is not a directory; remove it or choose another directory`
          : `${p} is not a directory`;
      }
      if (blocker !== undefined) {
        return `${JSON.stringify(blocker)} is a file, not a directory, so ${p} cannot be ${use === 'read' ? 'reached' : 'created below it'}; move that file away or choose a path outside it`;
      }
      return `a parent of ${p} is not a directory; choose a path whose parents are directories`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied on ${p}; run as a user that may ${VERB[use]} it, or choose another path`;
    case 'EROFS':
      return `${p} is on a read-only file system; choose a writable path`;
    case 'ENOENT':
      return use === 'read' ? `${p} does not exist` : `a parent directory of ${p} does not exist`;
    case 'EISDIR':
      return `${p} is a directory, not a file`;
    case 'ENOSPC':
    case 'EDQUOT':
      return `no space left on the file system holding ${p}`;
    case 'ELOOP':
      return `${p} has too many levels of symbolic links`;
    case 'ENAMETOOLONG':
      return `${p} is too long for the file system; choose a shorter path`;
    default:
      return `${p}: ${failure.message}`;
  }
}

/** True when `err` is a Node system-call error (it carries an errno code). */
function isErrnoError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

/**
 * The nearest ancestor of `path` (or `path` itself, when `includeSelf`) that exists and is not
 * a directory, searching from the root down: the file that blocks a mkdir or open below it.
 */
export async function findNonDirectory(path: string, includeSelf: boolean): Promise<string | undefined> {
  const chain: string[] = [];
  const root = parse(path).root;
  for (let p = includeSelf ? path : dirname(path); p !== root && p !== '.' && p !== ''; p = dirname(p)) chain.unshift(p);
  for (const p of chain) {
    try {
      if (!(await stat(p)).isDirectory()) return p;
    } catch {
      return undefined; // missing or unreadable: nothing below it is a "file in the way"
    }
  }
  return undefined;
}

/**
 * Turns an errno error from a filesystem call on `path` (or on a file below it, which the
 * sentence then names) into a {@link PathError}; any other error is returned unchanged.
 * Looks at the filesystem to name the file blocking a directory.
 */
export async function toPathError(err: unknown, path: string, use: PathUse, context?: string): Promise<unknown> {
  if (err instanceof PathError || !isErrnoError(err)) return err;
  const code = err.code;
  const below = typeof err.path === 'string' && err.path.startsWith(`${path}/`) ? err.path : undefined;
  const subject = below ?? path;
  const subjectUse = below === undefined ? use : use === 'directory' ? 'write' : use;
  const blocker = code === 'EEXIST' || code === 'ENOTDIR' ? await findNonDirectory(subject, subjectUse === 'directory') : undefined;
  return new PathError(path, describePathFailure(subjectUse, { code, path: subject, blocker, message: err.message }), context);
}

/**
 * Checks that a file could be opened or created for writing at `path` without creating
 * anything: no file stands in the way of its directory, it is not a directory itself, and the
 * nearest existing directory is writable. Throws a {@link PathError}.
 */
export async function checkWritableFile(path: string, context?: string): Promise<void> {
  const blocker = await findNonDirectory(path, false);
  if (blocker !== undefined) {
    throw new PathError(path, describePathFailure('write', { code: 'ENOTDIR', path, blocker, message: '' }), context);
  }
  let existing = path;
  for (;;) {
    try {
      const st = await stat(existing);
      if (existing === path && st.isDirectory()) throw new PathError(path, describePathFailure('write', { code: 'EISDIR', path, message: '' }), context);
      break;
    } catch (err) {
      if (err instanceof PathError) throw err;
      const parent = dirname(existing);
      if (parent === existing) return;
      existing = parent;
    }
  }
  try {
    await access(existing, constants.W_OK);
  } catch (err) {
    throw await toPathError(err, existing, 'write', context);
  }
}

/**
 * The config error (`config: <field>: …`, InvalidArgument) for a failure caused by the path in
 * config field `field` (its full name, e.g. `agent.data_dir`); other errors are returned unchanged.
 */
export async function configPathError(err: unknown, field: string, path: string, use: PathUse): Promise<unknown> {
  const described = await toPathError(err, path, use);
  if (!(described instanceof PathError)) return described;
  return new ApiError(Code.INVALID_ARGUMENT, `config: ${field}: ${described.detail}`);
}

/** Runs `fn`; a failure caused by the configured path becomes a config error naming `field`. */
export async function withConfigPath<T>(field: string, path: string, use: PathUse, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw await configPathError(err, field, path, use);
  }
}
