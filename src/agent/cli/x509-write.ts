/**
 * `api fetch x509 -write DIR`: the files spire-agent writes (`fetch_x509.go` writeResponse),
 * with the same names, order, messages and modes. Each file is replaced atomically.
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-file.ts';
import { certificatesToPem, toPem } from '../../common/pem.ts';
import { trustDomainId } from '../../common/spiffe-id.ts';
import type { X509Context } from '../workload-client/index.ts';

/** Mode of certificate files (diskutil.WritePubliclyReadableFile). */
export const PUBLIC_FILE_MODE = 0o644;
/** Mode of key files (diskutil.WritePrivateFile). */
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Writes `svid.N.pem` (leaf then intermediates), `svid.N.key` (PKCS#8 PEM, 0600),
 * `bundle.N.pem` and `federated_bundle.N.M.pem` (M in trust domain order) for every SVID N,
 * calling `say` before each file as spire-agent prints "Writing … to file …".
 */
export async function writeX509Context(dir: string, context: X509Context, say: (line: string) => void): Promise<void> {
  const federated = [...context.federatedBundles].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [i, svid] of context.svids.entries()) {
    const svidPath = join(dir, `svid.${i}.pem`);
    const keyPath = join(dir, `svid.${i}.key`);
    const bundlePath = join(dir, `bundle.${i}.pem`);
    say(`Writing SVID #${i} to file ${svidPath}.`);
    await writeFileAtomic(svidPath, certificatesToPem(svid.certificates), { mode: PUBLIC_FILE_MODE });
    say(`Writing key #${i} to file ${keyPath}.`);
    await writeFileAtomic(keyPath, toPem('PRIVATE KEY', svid.privateKey), { mode: PRIVATE_FILE_MODE });
    say(`Writing bundle #${i} to file ${bundlePath}.`);
    await writeFileAtomic(bundlePath, certificatesToPem(svid.bundle), { mode: PUBLIC_FILE_MODE });
    for (const [j, [td, certs]] of federated.entries()) {
      const path = join(dir, `federated_bundle.${i}.${j}.pem`);
      say(`Writing federated bundle #${j} for trust domain ${trustDomainId(td)} to file ${path}.`);
      await writeFileAtomic(path, certificatesToPem(certs), { mode: PUBLIC_FILE_MODE });
    }
  }
}
