/**
 * The product image tarball the e2e suite imports (test/e2e/support/images.ts) against the
 * Dockerfile, the single source of truth: the final stage's COPY destinations are exactly
 * what the WORKDIR holds, USER, WORKDIR, ENV, EXPOSE, ENTRYPOINT and CMD are the image
 * config's, everything is owned by root, only production dependencies ship, and the tag is
 * the one the manifests deploy.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { containerPath, copyArgs, execForm, finalStage, lastOf, readDockerfile } from '../support/dockerfile.ts';
import { REPO } from '../support/server-process.ts';
import { E2E } from './support/kube.ts';

const FINAL = finalStage(readDockerfile());
const WORKDIR = lastOf(FINAL, 'WORKDIR')?.args as string;

interface Entry {
  mode: string;
  owner: string;
  path: string;
}

let manifest: { Config: string; RepoTags: string[]; Layers: string[] }[];
let config: { config: { User?: string; Entrypoint: string[]; Cmd: string[]; WorkingDir: string; Env: string[]; ExposedPorts?: Record<string, unknown> } };
let entries: Entry[];
const paths = (): Set<string> => new Set(entries.map((e) => e.path));

beforeAll(() => {
  const tar = join(E2E.images, 'product.tar');
  manifest = JSON.parse(execFileSync('tar', ['-xOf', tar, 'manifest.json'], { encoding: 'utf8' }));
  config = JSON.parse(execFileSync('tar', ['-xOf', tar, manifest[0]?.Config as string], { encoding: 'utf8' }));
  const layer = execFileSync('tar', ['-xOf', tar, manifest[0]?.Layers[0] as string], { maxBuffer: 1024 * 2 ** 20 });
  const listing = execFileSync('tar', ['-tvf', '-', '--numeric-owner'], { input: layer, maxBuffer: 256 * 2 ** 20, encoding: 'utf8' });
  entries = listing
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const cols = l.split(/\s+/);
      const raw = cols.slice(5).join(' ').split(' -> ')[0] as string;
      return { mode: cols[0] as string, owner: cols[1] as string, path: posix.normalize(`/${raw}`).replace(/\/$/, '') || '/' };
    });
});

describe('the e2e product image and the Dockerfile agree', () => {
  it('is one image, tagged as the manifests deploy it', () => {
    const kustomization = parseYaml(readFileSync(join(REPO, 'manifests/agent/kustomization.yaml'), 'utf8')) as { images: { name: string; newTag: string }[] };
    const image = kustomization.images.find((i) => i.name === 'spiffe-node-agent');
    expect(manifest).toHaveLength(1);
    expect(manifest[0]?.RepoTags).toEqual([`spiffe-node-agent:${image?.newTag}`]);
    expect(manifest[0]?.Layers).toHaveLength(1);
  });

  it('has the final stage USER, WORKDIR, ENTRYPOINT, CMD, ENV and EXPOSE in its config', () => {
    const c = config.config;
    expect(c.User).toBe(lastOf(FINAL, 'USER')?.args);
    expect(c.WorkingDir).toBe(WORKDIR);
    expect(c.Entrypoint).toEqual(execForm(lastOf(FINAL, 'ENTRYPOINT') ?? { keyword: 'ENTRYPOINT', args: 'null', line: 0 }));
    expect(c.Cmd).toEqual(execForm(lastOf(FINAL, 'CMD') ?? { keyword: 'CMD', args: 'null', line: 0 }));
    for (const env of FINAL.instructions.filter((i) => i.keyword === 'ENV')) expect(c.Env).toContain(env.args.replace(/^(\S+?)(?:=|\s+)/, '$1='));
    const exposed = FINAL.instructions.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/).map((p) => (p.includes('/') ? p : `${p}/tcp`)));
    expect(Object.keys(c.ExposedPorts ?? {}).sort()).toEqual(exposed.sort());
  });

  it('holds under WORKDIR exactly what the final stage COPYs there, owned by root', () => {
    // `COPY a b/` puts a inside b; `COPY a b` makes b.
    const dests = FINAL.instructions
      .filter((i) => i.keyword === 'COPY')
      .flatMap((i) => {
        const { sources, dest } = copyArgs(i);
        const base = containerPath(WORKDIR, dest);
        return dest.endsWith('/') || sources.length > 1 ? sources.map((s) => posix.join(base, posix.basename(s))) : [base];
      });
    const top = [...paths()].filter((p) => posix.dirname(p) === WORKDIR).sort();
    expect(top).toEqual([...new Set(dests)].sort());
    expect(entries.filter((e) => e.owner !== '0/0').map((e) => e.path)).toEqual([]);
    const tmp = entries.find((e) => e.path === '/tmp');
    expect(tmp?.mode).toBe('drwxrwxrwt');
  });

  it('runs its ENTRYPOINT: the Node binary and the agent script are there, and the server script the manifests name', () => {
    const [interpreter, script] = config.config.Entrypoint;
    expect(paths().has(interpreter as string)).toBe(true);
    expect(paths().has(script as string)).toBe(true);
    expect(paths().has('/opt/spiffe-node-agent/bin/spiffe-server.js')).toBe(true);
    expect(paths().has('/opt/spiffe-node-agent/dist/agent/cli/main.js')).toBe(true);
    expect(paths().has('/lib64/ld-linux-x86-64.so.2')).toBe(true);
  });

  it('ships production dependencies only, and no sources', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    // The lockfile marks the packages only development needs ("dev": true).
    const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([p, v]) => p !== '' && v.dev === true).map(([p]) => `${WORKDIR}/${p}`);
    for (const d of Object.keys(pkg.dependencies)) expect(paths().has(`${WORKDIR}/node_modules/${d}`), d).toBe(true);
    expect(devOnly.length).toBeGreaterThan(10);
    expect(devOnly.filter((p) => paths().has(p))).toEqual([]);
    expect([...paths()].filter((p) => p.startsWith(`${WORKDIR}/src`) || (p.startsWith(`${WORKDIR}/dist`) && p.endsWith('.ts') && !p.endsWith('.d.ts')))).toEqual([]);
  });
});
