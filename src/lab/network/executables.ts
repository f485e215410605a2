// This checkout's executables, as the lab runs them; the environment may name others
// (another build, a wrapper under strace): TAPIR_LAB_TAPIR_BIN runs as
// `BIN agent --config FILE`, TAPIR_LAB_CNI_BIN as the CNI plugin (its directory heads
// CNI_PATH).
import { fileURLToPath } from 'node:url';

export const TAPIR_BIN = process.env.TAPIR_LAB_TAPIR_BIN || fileURLToPath(new URL('../../../bin/tapir', import.meta.url));
export const TAPIR_CNI_BIN = process.env.TAPIR_LAB_CNI_BIN || fileURLToPath(new URL('../../../bin/tapir-cni', import.meta.url));

/** The node agent's command line: `lab up` starts it, the node daemon starts it again. Its log file is for people: plain lines. */
export function agentCommand(configFile: string): string[] {
  return [TAPIR_BIN, 'agent', '--config', configFile, '--log-format', 'text'];
}
