/**
 * Builds SPIRE's spire-server, spire-agent and oidc-discovery-provider (v1.13.3, from the Go
 * module proxy) before any test file runs, or reuses the cached binaries, and says which and
 * how long it took: a cold build is the slow part of this suite (6–21 minutes on 2 cores).
 */
import { ensureSpireBinaries } from '../../bench/support/spire-build.ts';

export default async function setup(): Promise<void> {
  const started = performance.now();
  const bins = await ensureSpireBinaries({ oidcDiscoveryProvider: true, log: (line) => console.log(line) });
  const s = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    bins.built
      ? `spire-build: built SPIRE ${bins.version} in ${s} s (${bins.dir})`
      : `spire-build: reused SPIRE ${bins.version} binaries from ${bins.dir} (${s} s; no build)`,
  );
}
