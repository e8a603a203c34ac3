/**
 * Ownership of the Workload API socket file: make room for it (refusing a socket another agent
 * serves on, replacing only a stale one, never any other kind of file), listen, open it to
 * every local user (mode 0777, as SPIRE does: the guard is attestation, not file permissions),
 * and remove it on shutdown only if it is still the socket we created.
 *
 * The rules live in common/unix-socket-file.ts (shared with the server's admin socket); this
 * file fixes the agent's choices. Failures are PathErrors, which the agent reports as
 * `config: agent.socket_path: …`.
 */
import type { Server } from 'node:net';
import { claimSocketPath, publishSocket, removeSocketIfOwned, type SocketFileId } from '../../common/unix-socket-file.ts';

export type { SocketFileId } from '../../common/unix-socket-file.ts';

const OWNER = { role: 'agent' } as const;

/**
 * Creates the parent directory if missing (mode 0755, so workloads of other users can reach
 * the socket) and checks the path: free or a stale socket. Refuses (throws a PathError) if
 * another agent is serving there or something other than a socket is there.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  await claimSocketPath(path, { ...OWNER, dirMode: 0o755 });
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * Listens on the Unix socket `path` (published atomically, already connectable by everyone,
 * or with the given `mode`: the admin socket is 0770) and returns its identity. On failure the
 * server is closed and `path` is untouched.
 */
export async function listenOnSocket(server: Server, path: string, mode = 0o777): Promise<SocketFileId> {
  return publishSocket(path, {
    ...OWNER,
    mode,
    bind: (tempPath) => listen(server, tempPath),
    unbind: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

/** Removes the socket file if it is still the one identified by `id` (a restarted agent may own it now). */
export async function removeSocketFile(path: string, id: SocketFileId): Promise<void> {
  await removeSocketIfOwned(path, id);
}
