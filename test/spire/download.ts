/**
 * Downloads the Go modules of SPIRE's binaries into the build cache without compiling
 * (bench/support/spire-build.ts downloadSpireModules): .ci/run starts it in the background
 * while `npm test` runs, so `npm run test:spire` later only compiles.
 */
import { downloadSpireModules } from '../../bench/support/spire-build.ts';

await downloadSpireModules({ log: (line) => console.log(line) });
