import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/common/config-file.ts';
import { parseServerConfig } from '../../src/server/config.ts';
import { ApiError } from '../../src/common/errors.ts';

const hcl = `
server {
  trust_domain = "example.org"
  bind_address = "127.0.0.1"
  bind_port = "8081"
  data_dir = "./data"
  log_level = "DEBUG"
  ca_ttl = "2h"
  default_x509_svid_ttl = "10m"
  ca_subject {
    country = ["DE"]
    organization = ["Acme"]
  }
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "./data/ds.sqlite3"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = "./data/keys.json"
    }
  }
}
`;

async function configError(text: string, name = 'server.conf'): Promise<string> {
  try {
    parseServerConfig(await parseConfigText(name, text), '/work');
  } catch (err) {
    if (err instanceof ApiError) return err.message;
    throw err;
  }
  return 'no error';
}

describe('parseServerConfig', () => {
  it('reads SPIRE server.conf in HCL', async () => {
    const config = parseServerConfig(await parseConfigText('server.conf', hcl), '/work');
    expect(config).toMatchObject({
      trustDomain: 'example.org',
      bindAddress: '127.0.0.1',
      bindPort: 8081,
      dataDir: '/work/data',
      datastorePath: '/work/data/ds.sqlite3',
      caTtlMs: 7_200_000,
      defaultX509SvidTtlMs: 600_000,
      agentTtlMs: 600_000,
      defaultJwtSvidTtlMs: 300_000,
      caSubject: { country: 'DE', organization: 'Acme', commonName: '' },
      caKeyType: 'ec-p256',
      jwtKeyType: 'ec-p256',
      jwtIssuer: undefined,
    });
    expect([...config.nodeAttestors.keys()]).toEqual(['join_token']);
  });

  it.each([
    { keys: 'ca_key_type = "rsa-2048"\n jwt_issuer = "https://oidc.example.org"', want: { caKeyType: 'rsa-2048', jwtKeyType: 'rsa-2048', jwtIssuer: 'https://oidc.example.org' } },
    { keys: 'ca_key_type = "ec-p384"\n jwt_key_type = "rsa-4096"', want: { caKeyType: 'ec-p384', jwtKeyType: 'rsa-4096', jwtIssuer: undefined } },
    { keys: 'jwt_key_type = "ec-p384"\n jwt_issuer = ""', want: { caKeyType: 'ec-p256', jwtKeyType: 'ec-p384', jwtIssuer: undefined } },
  ])('reads $keys (jwt_key_type defaults to ca_key_type)', async ({ keys, want }) => {
    const text = `server {\n trust_domain = "td"\n data_dir = "d"\n ${keys}\n}\nplugins {\n NodeAttestor "join_token" {\n plugin_data {}\n }\n}`;
    const config = parseServerConfig(await parseConfigText('server.conf', text), '/work');
    expect({ caKeyType: config.caKeyType, jwtKeyType: config.jwtKeyType, jwtIssuer: config.jwtIssuer }).toEqual(want);
  });

  it('reads the JSON form the SPIRE helm chart renders', async () => {
    const json = JSON.stringify({
      server: { trust_domain: 'example.org', data_dir: '/run/spire/data', bind_port: 8081 },
      plugins: { NodeAttestor: [{ join_token: [{ plugin_data: [{}] }] }] },
    });
    const config = parseServerConfig(await parseConfigText('server.json', json), '/work');
    expect(config.trustDomain).toBe('example.org');
    expect(config.nodeAttestors.has('join_token')).toBe(true);
  });

  const bad: Array<[string, string, string]> = [
    ['a misspelt key, suggesting the right one', 'server { trust_domian = "x" }', 'config: server.trust_domian: unknown key (did you mean "trust_domain"?)'],
    ['a missing trust domain', 'server { data_dir = "d" }\nplugins {\n NodeAttestor "join_token" {\n plugin_data {}\n }\n}', 'config: server.trust_domain: is required'],
    ['an invalid trust domain', 'server {\n trust_domain = "Example.org"\n data_dir = "d"\n}', 'config: server.trust_domain: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (example: "example.org")'],
    ['a bad port', 'server {\n trust_domain = "td"\n data_dir = "d"\n bind_port = 99999\n}', 'config: server.bind_port: must be between 0 and 65535 (got 99999)'],
    ['a bad duration', 'server {\n trust_domain = "td"\n data_dir = "d"\n ca_ttl = "soon"\n}', 'config: server.ca_ttl: "soon" is not a duration (examples: "90s", "1h30m", "500ms")'],
    ['no node attestor', 'server {\n trust_domain = "td"\n data_dir = "d"\n}', 'config: plugins.NodeAttestor: at least one node attestor is required (for example NodeAttestor "join_token" { plugin_data {} })'],
    ['an unsupported node attestor', 'server {\n trust_domain = "td"\n data_dir = "d"\n}\nplugins {\n NodeAttestor "aws_iid" {\n plugin_data {}\n }\n}', 'config: plugins.NodeAttestor.aws_iid: unsupported node attestor (supported: join_token, k8s_psat)'],
    ['an unknown ca_key_type', 'server {\n trust_domain = "td"\n data_dir = "d"\n ca_key_type = "ec-p521"\n}', 'config: server.ca_key_type: must be one of "ec-p256", "ec-p384", "rsa-2048", "rsa-4096" (got "ec-p521")'],
    ['an unknown jwt_key_type', 'server {\n trust_domain = "td"\n data_dir = "d"\n jwt_key_type = "rsa-1024"\n}', 'config: server.jwt_key_type: must be one of "ec-p256", "ec-p384", "rsa-2048", "rsa-4096" (got "rsa-1024")'],
    ['a jwt_issuer without a host', 'server {\n trust_domain = "td"\n data_dir = "d"\n jwt_issuer = "oidc.example.org"\n}', 'config: server.jwt_issuer: must be an absolute URL with a host, e.g. "https://oidc.example.org" (got "oidc.example.org")'],
    ['a bad log level', 'server {\n trust_domain = "td"\n data_dir = "d"\n log_level = "LOUD"\n}', 'config: server.log_level: must be one of DEBUG, INFO, WARN, ERROR (got "LOUD")'],
  ];
  for (const [name, text, message] of bad) {
    it(`rejects ${name}`, async () => expect(await configError(text)).toBe(message));
  }
  it('rejects unparsable HCL naming the file', async () => {
    expect(await configError('server { trust_domain = }')).toMatch(/^config: cannot parse server\.conf: /);
  });
});
