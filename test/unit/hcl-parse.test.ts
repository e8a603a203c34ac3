/**
 * HCL parsing runs HashiCorp's parser in a child process (src/common/hcl-parse.ts), so the
 * parser's WebAssembly memory never stays with the agent.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseHcl } from '../../src/common/hcl-parse.ts';
import { parseConfigText } from '../../src/common/config-file.ts';

const run = promisify(execFile);

describe('parseHcl', () => {
  it("returns hcl2json's form: blocks as arrays, labelled blocks keyed by label", async () => {
    const text = 'agent {\n  trust_domain = "example.org"\n  ports = [1, 2]\n}\nplugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n}\n';
    expect(await parseHcl('agent.conf', text)).toEqual({
      agent: [{ trust_domain: 'example.org', ports: [1, 2] }],
      plugins: [{ NodeAttestor: { join_token: [{ plugin_data: [{}] }] } }],
    });
  });

  it("rejects a syntax error with the parser's own message, naming the file and position", async () => {
    await expect(parseHcl('server.conf', 'server { trust_domain = }')).rejects.toThrow(
      'parse config: [server.conf:1,25-26: Invalid expression; Expected the start of an expression, but found an invalid expression token.]',
    );
  });

  it('carries text of any size through stdin (a 2 MiB plugin_data string)', async () => {
    const big = 'x'.repeat(2 * 1024 * 1024);
    expect(await parseHcl('big.conf', `a {\n  b = "${big}"\n}\n`)).toEqual({ a: [{ b: big }] });
  });

  it('leaves NODE_OPTIONS of the parent out of the child', async () => {
    const before = process.env['NODE_OPTIONS'];
    process.env['NODE_OPTIONS'] = '--this-flag-does-not-exist';
    try {
      expect(await parseHcl('a.conf', 'a = 1\n')).toEqual({ a: 1 });
    } finally {
      if (before === undefined) delete process.env['NODE_OPTIONS'];
      else process.env['NODE_OPTIONS'] = before;
    }
  });
});

describe('parseConfigText', () => {
  it("never loads HashiCorp's parser into the calling process", async () => {
    const script = `
      import { createRequire } from 'node:module';
      const { parseConfigText } = await import(${JSON.stringify(new URL('../../src/common/config-file.ts', import.meta.url).href)});
      const tree = await parseConfigText('agent.conf', 'agent {\\n  trust_domain = "example.org"\\n}\\n');
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('hcl2json'));
      process.stdout.write(JSON.stringify({ tree, loaded }));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
    expect(JSON.parse(stdout)).toEqual({ tree: { agent: { trust_domain: 'example.org' } }, loaded: [] });
  });

  it('names the file when HCL does not parse', async () => {
    await expect(parseConfigText('agent.conf', 'agent {')).rejects.toThrow(/^config: cannot parse agent\.conf: parse config: \[agent\.conf:1,7-8: Unclosed configuration block; /);
  });
});
