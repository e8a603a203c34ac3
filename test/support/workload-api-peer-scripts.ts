/**
 * Dependency-free client scripts for Workload API peer tests, written into a temp dir so
 * processes running as another uid can read them. They speak gRPC over raw node:http2 (no
 * grpc-js), which also lets a process use a socket it inherited as a file descriptor.
 */
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * `node call.mjs <socketPath | fd:N> <Method> [pid to wait for]`: one Workload API call with
 * the security header; cancels after the first message. Prints one JSON line:
 * `{ status?, message?, messages, uid, pid }` (`status` absent when cancelled after data).
 */
const CALL_SCRIPT = `
import http2 from 'node:http2';
import net from 'node:net';
const [target, method, waitPid] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify({ ...o, uid: process.getuid(), pid: process.pid }) + '\\n');
const deadline = setTimeout(() => { out({ status: 'timeout' }); process.exit(2); }, 15000);
if (waitPid) {
  for (;;) {
    try { process.kill(Number(waitPid), 0); } catch { break; }
    await new Promise((r) => setTimeout(r, 10));
  }
}
const socket = target.startsWith('fd:') ? new net.Socket({ fd: Number(target.slice(3)), readable: true, writable: true }) : net.connect(target);
const session = http2.connect('http://localhost', { createConnection: () => socket });
session.on('error', (e) => { out({ status: 'session-error', message: e.message }); process.exit(3); });
const req = session.request({
  ':method': 'POST', ':path': '/SpiffeWorkloadAPI/' + method, 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true',
});
let result = {};
let messages = 0;
const take = (h) => {
  if (h['grpc-status'] !== undefined) result = { status: Number(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) };
};
req.on('response', take);
req.on('trailers', take);
req.on('data', () => { messages += 1; req.close(http2.constants.NGHTTP2_CANCEL); });
req.on('error', () => {});
req.on('close', () => { clearTimeout(deadline); out({ ...result, messages }); session.close(); socket.destroy(); });
req.end(Buffer.alloc(5));
`;

/**
 * `node reuse.mjs <socketPath> <call.mjs>`: connects, waits until the agent has surely
 * accepted, hands the connected socket to a child (as fd 3) and exits. The child waits until
 * this process is gone and then calls over the inherited socket, so the connection's
 * SO_PEERCRED PID is a dead process's.
 */
const REUSE_SCRIPT = `
import net from 'node:net';
import { spawn } from 'node:child_process';
const [socketPath, callScript] = process.argv.slice(2);
const sock = net.connect(socketPath);
// Paused before it connects, this process never reads: the agent's HTTP/2 preface stays in
// the socket for the child.
sock.pause();
sock.once('connect', () => {
  setTimeout(() => {
    spawn(process.execPath, [callScript, 'fd:3', 'FetchX509SVID', String(process.pid)], { stdio: ['ignore', 'inherit', 'inherit', sock] });
    process.exit(0);
  }, 300);
});
`;

/** Paths of the written scripts. */
export interface PeerScripts {
  readonly call: string;
  readonly reuse: string;
}

/** Writes the scripts into `dir` (made world-readable and traversable). */
export async function writePeerScripts(dir: string): Promise<PeerScripts> {
  await chmod(dir, 0o755);
  const call = join(dir, 'call.mjs');
  const reuse = join(dir, 'reuse.mjs');
  await writeFile(call, CALL_SCRIPT, { mode: 0o644 });
  await writeFile(reuse, REUSE_SCRIPT, { mode: 0o644 });
  return { call, reuse };
}
