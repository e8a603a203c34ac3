/**
 * The child process that parses one HCL file with HashiCorp's parser (WebAssembly,
 * @cdktf/hcl2json) and exits: see hcl-parse.ts for why it runs apart from the agent.
 *
 * Protocol: the file name is argv[2]; the text arrives on stdin; one JSON line goes to stdout,
 * `{"ok":true,"value":…}` or `{"ok":false,"error":"…"}`. Exit code 0 either way (a parse error
 * is an answer, not a crash).
 */
import { text } from 'node:stream/consumers';

const name = process.argv[2] ?? 'config';
let answer: { ok: true; value: unknown } | { ok: false; error: string };
try {
  const source = await text(process.stdin);
  const { parse } = await import('@cdktf/hcl2json');
  answer = { ok: true, value: await parse(name, source) };
} catch (err) {
  answer = { ok: false, error: err instanceof Error ? err.message : String(err) };
}
process.stdout.write(`${JSON.stringify(answer)}\n`, () => process.exit(0));
