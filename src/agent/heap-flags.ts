/**
 * The agent process's V8 heap settings (see memory-tuning.ts for what they do and why), kept
 * apart from the rest of the tuning so that `spiffe-agent run` can apply them before anything
 * else is loaded (src/agent/cli/main.ts): this module imports nothing but node:v8.
 */
import { setFlagsFromString } from 'node:v8';

/** The V8 flags applied by {@link applyHeapFlags}. */
export const HEAP_FLAGS: readonly string[] = ['--semi-space-growth-factor=1', '--heap-growing-percent=50'];

/**
 * Applies {@link HEAP_FLAGS} to this process (idempotent; process-wide).
 *
 * Why as early as possible: evaluating the agent's modules (grpc-js, protobufjs, the agent)
 * allocates enough to grow the young generation past its initial size, and V8 keeps grown
 * semi-spaces for the process's lifetime. Measured in the production layout (agent without
 * telemetry, idle RssAnon): 27.6–27.9 MiB with the flags set here first, 33.4 MiB when they
 * were set after the whole module graph (bench/idle-memory.ts). Given on the command line
 * instead, the growth factor does not have this effect (about 33 MiB).
 */
export function applyHeapFlags(): void {
  for (const flag of HEAP_FLAGS) setFlagsFromString(flag);
}
