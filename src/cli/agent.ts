// `tapir agent --config FILE`: runs the node agent in the current network namespace
// until SIGTERM or SIGINT.
import { parseArgs } from 'node:util';
import { loadAgentConfig } from '../agent/config.ts';
import { CliError } from './errors.ts';

const HELP = `Usage: tapir agent --config FILE

Runs the Tapir node agent in this network namespace: the host TUN, the VXLAN
underlay socket and every pod port, with the control socket for tapir-cni.

Options:
  --config FILE   agent configuration (YAML or JSON; see docs/ARCHITECTURE.md)
  --remove-ports  on exit, remove pod TAPs instead of keeping them for the next agent
  --help          this help`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, 'remove-ports': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.config === undefined) throw new CliError(`agent: --config FILE is required\n\n${HELP}`, 2);
  // An AgentConfigError lists every problem of the file (exit status 2: nothing ran).
  const config = loadAgentConfig(values.config);
  const log = (m: string): void => { console.error(`${new Date().toISOString()} agent[${config.nodeName}]: ${m}`); };
  // Loaded here so that `tapir agent --help` needs no native addon.
  const { Agent } = await import('../agent/agent.ts');
  const agent = await Agent.start(config, { log });
  log(`ready, ${Math.round(performance.now())} ms after the process started`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log(`${signal}: stopping`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await agent.stop({ removePorts: values['remove-ports'] === true });
  log('stopped');
  return 0;
}
