/**
 * Ownership of the Workload API socket file: make room for it (removing a stale socket but
 * never any other kind of file), listen, open it to every local user (mode 0777, as SPIRE
 * does: the guard is attestation, not file permissions), and remove it on shutdown only if it
 * is still the socket we created.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import type { Server } from 'node:net';
import { dirname } from 'node:path';

/** Identifies the socket file we created (device + inode). */
export interface SocketFileId {
  readonly dev: number;
  readonly ino: number;
}

/** lstat that answers undefined for a missing path. */
async function lstatOrUndefined(path: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Creates the parent directory if missing and removes a stale socket at `path`.
 * Refuses (throws) if something other than a socket is there.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const existing = await lstatOrUndefined(path);
  if (existing === undefined) return;
  if (!existing.isSocket()) {
    throw new Error(`workload api: refusing to replace "${path}": it exists and is not a socket`);
  }
  await unlink(path);
}

/** Listens on a Unix socket path, makes it connectable by everyone, and returns its identity. */
export async function listenOnSocket(server: Server, path: string): Promise<SocketFileId> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolve();
    });
  });
  await chmod(path, 0o777);
  const st = await lstat(path);
  return { dev: st.dev, ino: st.ino };
}

/** Removes the socket file if it is still the one identified by `id` (a restarted agent may own it now). */
export async function removeSocketFile(path: string, id: SocketFileId): Promise<void> {
  const st = await lstatOrUndefined(path);
  if (st === undefined || !st.isSocket() || st.dev !== id.dev || st.ino !== id.ino) return;
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
