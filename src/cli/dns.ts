// `tapir dns --corefile FILE [--manifests DIR | --kubeconfig FILE | --kubernetes] [--node NAME]`:
// the cluster DNS server on its own (the agent embeds the same DnsServer). The Services
// view comes from the same ServiceController the agent's service sync uses, over a
// manifest directory or the Kubernetes API; nothing is served before its first sync.
// `reload` in the Corefile: the file is checked every interval (plus jitter) and, when its
// content changed and it reads cleanly, the server is replaced; a Corefile with errors
// is reported and the running one keeps serving.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { CliError } from './errors.ts';

const HELP = `Usage: tapir dns --corefile FILE [--manifests DIR | --kubeconfig FILE | --kubernetes] [--node NAME] [--bind ADDR] [--udp batch|dgram]

Serves cluster DNS as CoreDNS's Corefile says (docs/dns.md): the kubernetes zone from
the Services and endpoints of a manifest directory or the Kubernetes API, everything
else forwarded, with health, ready and Prometheus metrics where the Corefile asks.
Prints "tapir dns: serving ZONES on ADDR:PORT (udp, tcp)" once the first sync is in and
the sockets are bound; stops on SIGTERM or SIGINT (after health's lameduck).

Options:
  --corefile FILE    the Corefile (CoreDNS syntax; an unsupported plugin or option is an error)
  --manifests DIR    Services, EndpointSlices and Pods from YAML manifests in DIR
  --kubeconfig FILE  from the Kubernetes API, with this kubeconfig
  --kubernetes       from the Kubernetes API, as a pod (service account)
  --node NAME        the node the view is compiled for (default NODE_NAME, else the host name)
  --bind ADDR        listen here when a server block has no bind (default every IPv4 address)
  --udp batch|dgram  IPv4 UDP through the native addon's recvmmsg/sendmmsg socket (batch,
                     the default when the addon loads) or node's dgram
  --help             this help`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      corefile: { type: 'string' }, manifests: { type: 'string' }, kubeconfig: { type: 'string' }, kubernetes: { type: 'boolean' },
      node: { type: 'string' }, bind: { type: 'string', multiple: true }, udp: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.corefile === undefined) throw new CliError(`dns: --corefile FILE is required\n\n${HELP}`, 2);
  if (values.udp !== undefined && values.udp !== 'batch' && values.udp !== 'dgram') throw new CliError(`dns: --udp ${values.udp}: give batch or dgram`, 2);
  const sources = [values.manifests !== undefined, values.kubeconfig !== undefined, values.kubernetes === true].filter(Boolean).length;
  if (sources > 1) throw new CliError('dns: give one of --manifests, --kubeconfig, --kubernetes', 2);
  const corefilePath = values.corefile;
  const { readCorefile } = await import('../dns/corefile.ts');
  const { DnsServer } = await import('../dns/server.ts');
  // A bad Corefile at start is fatal (CorefileError lists every problem); at a reload it is not.
  let config = readCorefile(corefilePath);
  if (sources === 0 && config.servers.some((b) => b.kubernetes !== null)) {
    throw new CliError(`dns: ${corefilePath} has a kubernetes plugin: give --manifests DIR, --kubeconfig FILE or --kubernetes for its Services`, 2);
  }
  let checksum = sha(corefilePath);
  const log = (m: string): void => { console.log(`tapir dns: ${m}`); };
  const node = values.node ?? ((process.env.NODE_NAME ?? '').trim() || hostname().toLowerCase());
  const defaultBind = values.bind;
  const openBatchUdp = values.udp === 'dgram' ? undefined : await batchUdp(log);
  let fatal: Error | null = null;
  let wake: () => void = () => {};
  const newServer = (c: typeof config): InstanceType<typeof DnsServer> => new DnsServer({
    corefile: c, log, ...(defaultBind === undefined ? {} : { defaultBind }), ...(openBatchUdp === undefined ? {} : { openBatchUdp }),
    onFatal: (err) => { fatal = err; wake(); },
  });

  let server = newServer(config);
  // The heap a large view compile left behind goes back (as the agent's does).
  const { HeapTrim } = await import('../control/heap-trim.ts');
  const heapTrim = new HeapTrim({ log });
  const controller = await startViewSource(values, node, (view) => {
    server.setView(view);
    heapTrim.afterSync();
  }, log);
  try {
    await server.start();
  } catch (err) {
    controller?.stop();
    heapTrim.stop();
    throw err;
  }
  const announce = (s: InstanceType<typeof DnsServer>): void => {
    for (const a of s.addresses) console.log(`tapir dns: serving ${a.zones.join(' ')} on ${a.address}:${a.port} (udp, tcp)`);
  };
  announce(server);

  // `reload`: CoreDNS compares a checksum of the file every interval (+ jitter).
  let reloadTimer: NodeJS.Timeout | null = null;
  const scheduleReload = (): void => {
    const r = config.servers.find((b) => b.reload !== null)?.reload;
    if (r == null) return;
    reloadTimer = setTimeout(() => { void reload().finally(scheduleReload); }, r.intervalMs + Math.random() * r.jitterMs);
  };
  const reload = async (): Promise<void> => {
    const now = sha(corefilePath);
    if (now === checksum || now === '') return;
    checksum = now;
    let next: typeof config;
    try {
      next = readCorefile(corefilePath);
    } catch (err) {
      log(`[ERROR] Corefile changed but cannot be used, the running configuration stays: ${(err as Error).message}`);
      return;
    }
    log('Corefile changed: reloading');
    const view = controller?.view;
    await server.stop({ lameduck: false });
    // The new server takes the views from now on (one given before start() is kept for it).
    server = newServer(next);
    if (view !== undefined) server.setView(view);
    try {
      await server.start();
      config = next;
    } catch (err) {
      log(`[ERROR] the new Corefile cannot be served (${(err as Error).message}); back to the previous one`);
      server = newServer(config);
      if (view !== undefined) server.setView(view);
      try {
        await server.start();
      } catch (again) {
        fatal = again as Error;
        wake();
        return;
      }
    }
    announce(server);
  };
  scheduleReload();

  const signal = await new Promise<string>((resolve) => {
    wake = () => resolve('fatal');
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  if (reloadTimer !== null) clearTimeout(reloadTimer);
  log(`${signal}: stopping`);
  await server.stop({ lameduck: fatal === null });
  controller?.stop();
  heapTrim.stop();
  if (fatal !== null) throw fatal;
  return 0;
}

/** The native addon's batched UDP socket, or undefined (dgram) when the addon does not load. */
async function batchUdp(log: (m: string) => void): Promise<((address: string, port: number) => import('../device/udp.ts').UdpBatchSocket) | undefined> {
  try {
    const { UdpBatchSocket } = await import('../device/udp.ts');
    const { nativeAddon } = await import('../device/native.ts');
    nativeAddon();
    return (address, port) => UdpBatchSocket.open({ address, port, gso: false, gro: false });
  } catch (err) {
    log(`UDP through node's dgram: the native addon did not load (${(err as Error).message})`);
    return undefined;
  }
}

function sha(path: string): string {
  try {
    return createHash('sha512').update(readFileSync(path)).digest('hex');
  } catch {
    return '';
  }
}

/** The ServiceController that feeds the server, as src/agent/service-sync.ts builds it; null without a source. */
async function startViewSource(
  values: { manifests?: string | undefined; kubeconfig?: string | undefined; kubernetes?: boolean | undefined },
  node: string,
  onView: (view: import('../model/cluster-view.ts').ClusterView) => void,
  log: (m: string) => void,
): Promise<import('../control/service-controller.ts').ServiceController | null> {
  if (values.manifests === undefined && values.kubeconfig === undefined && values.kubernetes !== true) return null;
  const { ServiceController } = await import('../control/service-controller.ts');
  const { Kind } = await import('../k8s/objects.ts');
  let source: import('../k8s/object-source.ts').ObjectSource;
  const cluster = values.manifests === undefined;
  if (cluster) {
    const { KubernetesSource } = await import('../k8s/api-source.ts');
    // Every Service and EndpointSlice: DNS answers for headless Services and those of
    // other proxies too, which kube-proxy's selector leaves out.
    source = new KubernetesSource({
      api: values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : { inCluster: true },
      kinds: [{ kind: Kind.SERVICE }, { kind: Kind.ENDPOINT_SLICE }],
      log: (m) => log(`kubernetes: ${m}`),
    });
  } else {
    const { ManifestDir } = await import('../k8s/manifest-dir.ts');
    source = new ManifestDir({ dir: values.manifests! });
  }
  const controller = new ServiceController({
    source, cluster, node: { name: node },
    onError: (err) => log(`services: ${err.message}`),
  });
  controller.subscribe(onView);
  await controller.start();
  return controller;
}
