// `tapir agent --config FILE`: runs the node agent in the current network namespace
// until SIGTERM or SIGINT.
import { parseArgs } from 'node:util';
import { loadAgentConfig } from '../agent/config.ts';
import { createLogger, logCallback, type LogFormat } from '../agent/log.ts';
import { CliError } from './errors.ts';

const HELP = `Usage: tapir agent --config FILE [--v N] [--log-format json|text]

Runs the Tapir node agent in this network namespace: the host TUN, the VXLAN
underlay socket and every pod port, with the control socket for tapir-cni,
/healthz and /livez on the healthz address, /metrics, /proxyMode and /configz
on the metrics address.

Options:
  --config FILE      agent configuration: a TapirAgentConfiguration and optionally a
                     KubeProxyConfiguration in one YAML file (docs/agent-config.md)
  --v N              log verbosity, as klog's: 0 (default), 2 more, 4 debug, 6 trace;
                     overrides the KubeProxyConfiguration's logging.verbosity
  --log-format F     json (one object per line) or text (one plain line per event);
                     default the config's logging.format, else text on a terminal, json otherwise
  --remove-ports     on exit, remove pod TAPs instead of keeping them for the next agent
  --help             this help`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' }, 'remove-ports': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      v: { type: 'string', short: 'v' }, 'log-format': { type: 'string' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.config === undefined) throw new CliError(`agent: --config FILE is required\n\n${HELP}`, 2);
  const flagVerbosity = values.v === undefined ? undefined : Number(values.v);
  if (flagVerbosity !== undefined && !(Number.isInteger(flagVerbosity) && flagVerbosity >= 0 && flagVerbosity <= 10)) {
    throw new CliError(`agent: --v ${values.v}: give a verbosity from 0 to 10 (0 default, 2 more, 4 debug)`, 2);
  }
  const flagFormat = values['log-format'];
  if (flagFormat !== undefined && flagFormat !== 'json' && flagFormat !== 'text') throw new CliError(`agent: --log-format ${flagFormat}: give json or text`, 2);
  // An AgentConfigError lists every problem of the file (exit status 2: nothing ran).
  const config = loadAgentConfig(values.config);
  const verbosity = flagVerbosity ?? config.kubeProxy.verbosity ?? 0;
  const format: LogFormat = flagFormat ?? (config.kubeProxy.logFormat || (process.stderr.isTTY ? 'text' : 'json'));
  const logger = createLogger({ verbosity, format, base: { node: config.nodeName } });
  const log = logCallback(logger);
  if (config.kubeProxy.ignored.length > 0) {
    logger.info({ ignored: config.kubeProxy.ignored }, `KubeProxyConfiguration fields that mean nothing for Tapir, ignored: ${config.kubeProxy.ignored.join(', ')}`);
  }
  // Loaded here so that `tapir agent --help` needs no native addon.
  const { Agent } = await import('../agent/agent.ts');
  const { AgentObservability } = await import('../agent/observability.ts');
  const observability = new AgentObservability(config, logger, { verbosity, format });
  await observability.listen();
  let agent;
  try {
    agent = await Agent.start(config, { log, observer: observability.observer });
  } catch (err) {
    await observability.close();
    throw err;
  }
  observability.attach(agent);
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
  await observability.close();
  log('stopped');
  return 0;
}
