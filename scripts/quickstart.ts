// `npm start`: a server on this machine with its data under ./.data/quickstart, ready for the CLI.
// (The agent joins this quickstart once it lands; see README.)
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseConfigText } from '../src/common/config-file.ts';
import { createLogger } from '../src/common/logger.ts';
import { parseServerConfig } from '../src/server/config.ts';
import { startServer } from '../src/server/server.ts';

const root = resolve(import.meta.dirname, '..', '.data', 'quickstart');
const socketPath = join(root, 'server', 'api.sock');
await mkdir(join(root, 'server'), { recursive: true, mode: 0o700 });
const configText = `server {
  trust_domain = "example.org"
  bind_address = "127.0.0.1"
  bind_port = 8081
  socket_path = "${socketPath}"
  data_dir = "${join(root, 'server', 'data')}"
  log_level = "INFO"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`;
const configPath = join(root, 'server', 'server.conf');
await writeFile(configPath, configText);
const config = parseServerConfig(await parseConfigText(configPath, configText));
const logger = createLogger({ name: 'spiffe-server', level: config.logLevel });
const server = await startServer({ config, logger });

const cli = `node_modules/.bin/node bin/spiffe-server.js`;
process.stdout.write(`
spiffe-server is running for trust domain example.org on 127.0.0.1:${server.port}
config: ${configPath}

Try, in another shell:
  ${cli} healthcheck -socketPath ${socketPath}
  ${cli} token generate -socketPath ${socketPath}
  ${cli} entry create -socketPath ${socketPath} -parentID spiffe://example.org/spire/agent/join_token/<token> -spiffeID spiffe://example.org/me -selector unix:uid:${process.getuid?.() ?? 0}
  ${cli} bundle show -socketPath ${socketPath}

Ctrl-C stops it.
`);

const stop = async (): Promise<void> => {
  await server.stop();
  process.exit(0);
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
