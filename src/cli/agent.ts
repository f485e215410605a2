// `tapir agent --config FILE`: runs the node agent in the current network namespace
// until SIGTERM or SIGINT.
import { flushCompileCache } from 'node:module';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { loadAgentConfig } from '../agent/config-file.ts';
import { createLogger, logCallback, type LogFormat } from '../agent/log.ts';
import { CliError } from './errors.ts';
import type { AgentConfig } from '../agent/config.ts';
import type { KubeAuth } from '../k8s/kube-api.ts';

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
  --kubernetes       cluster mode: Services, EndpointSlices and Nodes from the Kubernetes
                     API (as a pod: the service account's token and CA, KUBERNETES_SERVICE_HOST
                     and _PORT), with this node's address, interface and pod CIDR from its
                     Node object (NODE_NAME) where the config leaves them out
  --kubeconfig FILE  cluster mode from a kubeconfig file instead (implies --kubernetes)
  --remove-ports     on exit, remove pod TAPs instead of keeping them for the next agent
  --help             this help`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' }, 'remove-ports': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      v: { type: 'string', short: 'v' }, 'log-format': { type: 'string' },
      kubernetes: { type: 'boolean' }, kubeconfig: { type: 'string' },
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
  const kubeAuth: KubeAuth | null = values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : values.kubernetes === true ? { inCluster: true } : null;
  const config = kubeAuth === null ? loadAgentConfig(values.config) : await loadClusterConfig(values.config, kubeAuth);
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
  let fatal: Error | null = null;
  let wake: () => void = () => {};
  try {
    // CoreDNS exits on a forwarding loop; so does the agent (its restart probes again).
    agent = await Agent.start(config, { log, observer: observability.observer, onFatal: (err) => { fatal = err; wake(); } });
  } catch (err) {
    await observability.close();
    throw err;
  }
  observability.attach(agent);
  log(`ready, ${Math.round(performance.now())} ms after the process started`);
  // Node writes the compile cache (bin/tapir sets NODE_COMPILE_CACHE) at a clean exit; an
  // agent mostly ends with SIGKILL or a crash, so write it now: the next start needs it.
  flushCompileCache();
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log(`${signal}: stopping`);
      resolve();
    };
    wake = () => stop('fatal');
    if (fatal !== null) wake();
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await agent.stop({ removePorts: values['remove-ports'] === true });
  await observability.close();
  if (fatal !== null) throw fatal;
  log('stopped');
  return 0;
}

/**
 * Cluster mode's configuration: the file, with what it leaves out of this node's own
 * settings taken from the node's Node object (its InternalIP, the interface holding it
 * here, spec.podCIDR), so one ConfigMap serves every node.
 */
async function loadClusterConfig(file: string, auth: KubeAuth): Promise<AgentConfig> {
  const { KubeApi } = await import('../k8s/kube-api.ts');
  const { ip } = await import('../device/ip-command.ts');
  const { parseCidr, parseCidr6, parseIpv4, parseIpv6 } = await import('../wire/address.ts');
  const nodeName = (process.env.NODE_NAME ?? '').trim() || hostname().toLowerCase();
  const api = new KubeApi(auth);
  let node: { status?: { addresses?: { type: string; address: string }[] }; spec?: { podCIDR?: string; podCIDRs?: string[] } };
  try {
    node = await api.get(`/api/v1/nodes/${encodeURIComponent(nodeName)}`);
  } catch (err) {
    throw new CliError(`agent: cannot read Node ${nodeName} from ${api.server}: ${(err as Error).message}`, 1);
  }
  const internal = node.status?.addresses?.find((a) => a.type === 'InternalIP' && !a.address.includes(':'))?.address;
  const internal6 = node.status?.addresses?.find((a) => a.type === 'InternalIP' && a.address.includes(':'))?.address;
  const address = internal === undefined ? undefined : parseIpv4(internal);
  const cidrs = node.spec?.podCIDRs ?? (node.spec?.podCIDR === undefined ? [] : [node.spec.podCIDR]);
  const cidrText = cidrs.find((c) => !c.includes(':'));
  const cidr6Text = cidrs.find((c) => c.includes(':'));
  let iface: string | undefined;
  if (internal !== undefined) {
    const links = JSON.parse(await ip(['-j', '-4', 'addr', 'show'])) as { ifname: string; addr_info?: { local: string }[] }[];
    iface = links.find((l) => l.addr_info?.some((a) => a.local === internal))?.ifname;
  }
  const config = loadAgentConfig(file, {
    nodeName,
    node: {
      address, interface: iface, podCIDR: cidrText === undefined ? undefined : parseCidr(cidrText),
      podCIDRv6: cidr6Text === undefined ? undefined : parseCidr6(cidr6Text, true),
      address6: internal6 === undefined ? undefined : parseIpv6(internal6) ?? undefined,
    },
  });
  config.kubernetes = auth;
  return config;
}
