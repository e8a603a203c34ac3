/** The agent's `sds { … }` block: SPIRE's names and defaults, acted on (no longer a warning). */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../../src/common/config-file.ts';
import { parseAgentConfig } from '../../../src/agent/config.ts';
import { ApiError } from '../../../src/common/errors.ts';

const conf = (sds: string): string => `
agent {
  server_address = "spire-server"
  server_port = "8081"
  trust_bundle_path = "/run/spire/bundle/bundle.crt"
  trust_domain = "example.org"
  join_token = "abc"
  ${sds}
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`;

async function parse(sds: string): Promise<ReturnType<typeof parseAgentConfig>> {
  return parseAgentConfig(await parseConfigText('agent.conf', conf(sds)), '/w');
}

describe('agent.sds', () => {
  it.each([
    ['absent: SPIRE defaults', '', { defaultSvidName: 'default', defaultBundleName: 'ROOTCA', defaultAllBundlesName: 'ALL', disableSpiffeCertValidation: false }],
    ['empty block: SPIRE defaults', 'sds {}', { defaultSvidName: 'default', defaultBundleName: 'ROOTCA', defaultAllBundlesName: 'ALL', disableSpiffeCertValidation: false }],
    [
      'every setting',
      'sds {\n default_svid_name = "svid"\n default_bundle_name = "bundle"\n default_all_bundles_name = "bundles"\n disable_spiffe_cert_validation = true\n }',
      { defaultSvidName: 'svid', defaultBundleName: 'bundle', defaultAllBundlesName: 'bundles', disableSpiffeCertValidation: true },
    ],
  ])('%s', async (_name, block, sds) => {
    const config = await parse(block);
    expect(config.sds).toEqual(sds);
    expect(config.warnings).toEqual([]);
  });

  it('warns, as SPIRE, when the bundle and all-bundles names are equal', async () => {
    const config = await parse('sds {\n default_all_bundles_name = "ROOTCA"\n }');
    expect(config.warnings).toEqual(['agent.sds: default_bundle_name and default_all_bundles_name are both "ROOTCA": default_all_bundles_name is ignored; configure distinct values']);
  });

  it.each([
    ['an unknown key', 'sds {\n default_svid_nam = "x"\n }', 'config: agent.sds.default_svid_nam: unknown key (did you mean "default_svid_name"?)'],
    ['a non-boolean flag', 'sds {\n disable_spiffe_cert_validation = "maybe"\n }', 'config: agent.sds.disable_spiffe_cert_validation: must be true or false (got "maybe")'],
  ])('refuses %s', async (_name, block, message) => {
    const err = await parse(block).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).message).toBe(message);
  });
});
