// `tapir ingress`: the Ingress controller, one process with its own event loop (HTTP
// work never shares a thread with an agent's packet path), run as a pod: it reads
// Ingresses, IngressClasses, TLS Secrets, Services and EndpointSlices from the
// Kubernetes API (in-cluster credentials, or --kubeconfig) or a manifest directory, and
// serves them with the proxy on --http-port and --https-port; /healthz, /metrics and
// /status on --status-port. `tapir ingress status` prints a running controller's view.
import { parseArgs } from 'node:util';
import { createLogger, type LogFormat } from '../agent/log.ts';
import { CliError } from './errors.ts';
import type { KubeAuth } from '../k8s/kube-api.ts';
import type { ControllerStatus } from '../ingress/controller.ts';

const HELP = `Usage: tapir ingress [--kubeconfig FILE | --in-cluster | --manifests DIR] [options]
       tapir ingress status [--server URL] [--json]

Runs the Tapir Ingress controller: Ingresses of its class (IngressClass with
spec.controller tapir.dev/ingress-controller), served by its HTTP/HTTPS proxy straight
to the Services' ready endpoints.

Options:
  --in-cluster            objects from the Kubernetes API as a pod reads it (the default):
                          the service account's token and CA, KUBERNETES_SERVICE_HOST/_PORT
  --kubeconfig FILE       objects from the Kubernetes API through a kubeconfig
  --manifests DIR         objects from a directory of manifests (the lab's manifest mode)
  --class NAME            the IngressClass served (default tapir)
  --http-port N           default 80
  --https-port N          default 443
  --address IP            the proxy's one listen address, IPv4 or IPv6 (default every
                          address of both families: one [::] socket that takes IPv4
                          clients too; 0.0.0.0 where the kernel has no IPv6)
  --publish-service NS/NAME
                          the LoadBalancer Service in front of the controller: its
                          addresses go into status.loadBalancer.ingress of every Ingress
                          served (cluster mode), as ingress-nginx's --publish-service
  --status-port N         /healthz, /metrics, /status (default 10254)
  --log-format json|text  default text on a terminal, json otherwise
  --help                  this help

status: prints the Ingresses a running controller sees, their addresses and problems,
from its /status (default --server http://127.0.0.1:10254).`;

function port(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CliError(`ingress: --${flag} ${text}: give a port from 0 to 65535`, 2);
  return n;
}

export async function run(args: string[]): Promise<number> {
  if (args[0] === 'status') return status(args.slice(1));
  const { values } = parseArgs({
    args,
    options: {
      'in-cluster': { type: 'boolean' }, kubeconfig: { type: 'string' }, manifests: { type: 'string' },
      class: { type: 'string' }, 'http-port': { type: 'string' }, 'https-port': { type: 'string' }, address: { type: 'string' },
      'publish-service': { type: 'string' }, 'status-port': { type: 'string' }, 'log-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const sources = [values['in-cluster'] === true, values.kubeconfig !== undefined, values.manifests !== undefined].filter(Boolean).length;
  if (sources > 1) throw new CliError('ingress: give one of --in-cluster, --kubeconfig FILE, --manifests DIR', 2);
  const publish = values['publish-service'] ?? null;
  if (publish !== null && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z]([-a-z0-9]*[a-z0-9])?$/.test(publish)) {
    throw new CliError(`ingress: --publish-service ${publish}: give NAMESPACE/NAME of a Service`, 2);
  }
  if (values.address !== undefined) {
    const { validListenAddress } = await import('../ingress/listen.ts');
    if (!validListenAddress(values.address)) throw new CliError(`ingress: --address ${values.address}: give one IPv4 or IPv6 address (an IPv6 one without brackets), or leave it out for every address of both families`, 2);
  }
  const format = values['log-format'] ?? (process.stderr.isTTY ? 'text' : 'json');
  if (format !== 'json' && format !== 'text') throw new CliError(`ingress: --log-format ${format}: give json or text`, 2);
  const className = values.class ?? 'tapir';
  const httpPort = port(values['http-port'], 80, 'http-port');
  const httpsPort = port(values['https-port'], 443, 'https-port');
  const statusPort = port(values['status-port'], 10254, 'status-port');
  const auth: KubeAuth = values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : { inCluster: true };

  const logger = createLogger({ verbosity: 0, format: format as LogFormat, base: { component: 'ingress', class: className } });
  const log = (level: string, message: string): void => {
    if (level === 'error') logger.error(message);
    else if (level === 'warn') logger.warn(message);
    else logger.info(message);
  };
  const { IngressController } = await import('../ingress/controller.ts');
  const { StatusServer } = await import('../ingress/status-server.ts');
  const { IngressProxy } = await import('../ingress/proxy.ts');
  const { generateDefaultCertificate } = await import('../ingress/tls.ts');
  // ingress-nginx's "Kubernetes Ingress Controller Fake Certificate", made fresh at each start.
  const proxy = new IngressProxy({ httpPort, httpsPort, ...(values.address === undefined ? {} : { address: values.address }), log: (m) => log('info', m), defaultCertificate: generateDefaultCertificate() });
  let listening = false;
  const controller = new IngressController({
    source: values.manifests !== undefined ? { manifests: values.manifests } : { kubernetes: auth },
    className,
    publishService: publish,
    sink: proxy,
    log,
    // One writer among the replicas (the pods of every node): the Lease's holder.
    election: { namespace: process.env.POD_NAMESPACE || (publish === null ? 'default' : publish.split('/')[0]!), name: `ingress-tapir-${className}` },
  });
  const statusServer = new StatusServer({ status: () => controller.status(), healthy: () => listening && controller.status().configAt > 0, proxyMetrics: () => proxy.metrics.metrics() });
  await statusServer.listen(statusPort);
  await proxy.start();
  listening = true;
  await controller.start();
  log('info', `serving class ${className} on :${httpPort} and :${httpsPort}; /healthz, /metrics, /status on :${statusPort}; ready ${Math.round(performance.now())} ms after the process started`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  log('info', 'stopping');
  await controller.stop();
  await proxy.stop();
  await statusServer.close();
  return 0;
}

async function status(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { server: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const server = (values.server ?? 'http://127.0.0.1:10254').replace(/\/+$/, '');
  let s: ControllerStatus;
  try {
    const r = await fetch(`${server}/status`, { signal: AbortSignal.timeout(10_000) });
    s = await r.json() as ControllerStatus;
  } catch (err) {
    throw new CliError(`ingress status: cannot read ${server}/status: ${(err as Error).message} (is \`tapir ingress\` running with --status-port there?)`, 1);
  }
  if (values.json) {
    console.log(JSON.stringify(s, null, 2));
    return 0;
  }
  console.log(formatStatus(s));
  return 0;
}

/** The plain-text status: one line per Ingress, its problems indented under it. */
export function formatStatus(s: ControllerStatus): string {
  const lines = [
    `class ${s.className}: ${s.synced ? 'synced' : 'not synced yet'}, configuration ${s.generation}${s.configAt === 0 ? '' : ` (${new Date(s.configAt).toISOString()})`}, ${s.hosts} hosts`,
    `address: ${s.addresses.join(', ') || '(none)'}${s.publishService === null ? '' : ` (Service ${s.publishService})`}`,
  ];
  const width = Math.max(7, ...s.ingresses.map((i) => i.name.length));
  lines.push(`${'INGRESS'.padEnd(width)}  SERVED  ADDRESS`);
  for (const i of s.ingresses) {
    lines.push(`${i.name.padEnd(width)}  ${(i.ours ? 'yes' : 'no').padEnd(6)}  ${i.addresses.join(',') || '-'}`);
    for (const p of i.problems) lines.push(`    ${p}`);
  }
  for (const p of s.inputProblems) lines.push(`invalid: ${p}`);
  return lines.join('\n');
}
