/**
 * Crash-safe file replacement.
 *
 * `writeFileAtomic` writes to a fresh temporary file in the target's directory (created with
 * the final mode, so a key is never readable by others even for an instant), fsyncs it,
 * renames it over the target and fsyncs the directory. A crash at any moment leaves either the
 * old file or the new one under the target name; at worst a stray `.<name>.tmp-*` file remains,
 * which no reader looks at and no later write collides with (temporary names are random).
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Options for {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /** File mode of the new file, applied exactly (not filtered by the umask). Default 0o644. */
  mode?: number;
}

/** The prefix of temporary files made by {@link writeFileAtomic} for a target named `name`. */
export function atomicTempPrefix(name: string): string {
  return `.${name}.tmp-`;
}

/**
 * Atomically replaces `path` with `data`: either the previous content or the new content is
 * visible under `path`, before and after a crash. The directory must exist.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const mode = options.mode ?? 0o644;
  const dir = dirname(path);
  const tmp = join(dir, `${atomicTempPrefix(basename(path))}${process.pid}-${randomBytes(6).toString('hex')}`);
  // 'wx': never follow or reuse an existing file at the temporary name.
  const fh = await open(tmp, 'wx', mode);
  let renamed = false;
  try {
    try {
      // The umask may have removed bits from `mode`; set it exactly before any data is written.
      await fh.chmod(mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    renamed = true;
    await fsyncDirectory(dir);
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}

/** Reads a whole file, or returns `undefined` when it does not exist. Other errors propagate. */
export async function readFileIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if (isErrnoException(err) && err.code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Flushes a directory's entries (a rename or unlink inside it) to stable storage. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string';
}
