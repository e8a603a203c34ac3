/**
 * HCL parsing in a short-lived child process.
 *
 * HashiCorp's parser is Go compiled to WebAssembly (@cdktf/hcl2json). Loading it into the
 * agent kept about 30 MiB of anonymous memory for the life of the process (measured: RssAnon
 * 9 → 38 MiB after one parse, two full GCs and malloc_trim; a worker thread that is terminated
 * afterwards keeps 29 MiB of it too), which is more than the rest of an idle agent. A child
 * process gives all of it back when it exits, and SPIRE users' agent.conf/server.conf are HCL.
 * JSON configs never get here.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The child's script, next to this module (.ts from the sources, .js from dist/). */
const CHILD = fileURLToPath(new URL(`./hcl-child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

/** A parse longer than this is abandoned (the parser itself takes about one second, mostly compiling WebAssembly). */
const PARSE_TIMEOUT_MS = 60_000;

/** More output than this is not a config file's JSON. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/**
 * Parses HCL text into hcl2json's JSON form (blocks as arrays of objects). Rejects with an
 * Error whose message is the parser's (e.g. `agent.conf:3,1-2: Argument or block definition required; …`).
 */
export function parseHcl(name: string, source: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, name], {
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: PARSE_TIMEOUT_MS,
      // The parent's heap flags and inspector options are not the child's business.
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_OUTPUT_BYTES) child.kill('SIGKILL');
      else out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => void (err.length < 64 && err.push(chunk)));
    child.once('error', (e) => reject(new Error(`the HCL parser process could not start: ${e.message}`)));
    child.once('close', (code, signal) => {
      const line = Buffer.concat(out).toString('utf8').trim();
      let answer: { ok: boolean; value?: unknown; error?: string } | undefined;
      try {
        answer = line === '' ? undefined : (JSON.parse(line) as { ok: boolean; value?: unknown; error?: string });
      } catch {
        answer = undefined;
      }
      if (answer?.ok === true) resolve(answer.value);
      else if (answer?.ok === false) reject(new Error(answer.error ?? 'unknown HCL parse error'));
      else {
        const how = signal !== null ? `was killed by ${signal}${signal === 'SIGTERM' ? ` (over ${PARSE_TIMEOUT_MS / 1000} s)` : ''}` : `exited with code ${code}`;
        const stderr = Buffer.concat(err).toString('utf8').trim().split('\n').slice(-3).join(' | ');
        reject(new Error(`the HCL parser process ${how} without an answer${stderr === '' ? '' : `: ${stderr}`}`));
      }
    });
    child.stdin.on('error', () => undefined); // the close handler reports what went wrong
    child.stdin.end(source);
  });
}
